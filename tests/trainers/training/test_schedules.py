"""Schedules and the teacher EMA give the expected values."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from wtours.trainers.training.engine import clip_per_parameter, param_groups
from wtours.trainers.training.schedules import cosine_schedule, linear_warmup_then_constant
from wtours.trainers.training.self_distillation import ema_update


def official_cosine_scheduler(base_value, final_value, epochs, niter_per_ep, warmup_epochs=0, start_warmup_value=0):
    """facebookresearch/dino utils.py `cosine_scheduler` (Apache-2.0), transcribed."""
    warmup_schedule = np.array([])
    warmup_iters = warmup_epochs * niter_per_ep
    if warmup_epochs > 0:
        warmup_schedule = np.linspace(start_warmup_value, base_value, warmup_iters)
    iters = np.arange(epochs * niter_per_ep - warmup_iters)
    schedule = final_value + 0.5 * (base_value - final_value) * (1 + np.cos(np.pi * iters / len(iters)))
    schedule = np.concatenate((warmup_schedule, schedule))
    assert len(schedule) == epochs * niter_per_ep
    return schedule


@pytest.mark.parametrize(
    ("base", "final", "epochs", "per_epoch", "warmup"),
    [(5e-4 * 2, 1e-6, 100, 10, 10), (0.04, 0.4, 3, 10, 0), (0.996, 1.0, 1, 10, 0), (1.0, 0.1, 5, 3, 2)],
)
def test_cosine_schedule_equals_dinos_cosine_scheduler(base, final, epochs, per_epoch, warmup) -> None:
    ours = cosine_schedule(base, final, epochs * per_epoch, warmup * per_epoch)
    assert np.array_equal(ours, official_cosine_scheduler(base, final, epochs, per_epoch, warmup))


def test_warmup_ends_on_the_peak_and_the_cosine_stops_short_of_the_end_value() -> None:
    values = cosine_schedule(1.0, 0.0, total_steps=10, warmup_steps=4)
    assert values[3] == 1.0 and values[4] == 1.0  # the warm-up's last step is the peak, as DINO's linspace
    assert values[-1] == pytest.approx(0.5 * (1 + np.cos(np.pi * 5 / 6)))  # > 0: i / n never reaches 1


def test_momentum_schedule_rises_towards_one() -> None:
    values = cosine_schedule(0.996, 1.0, total_steps=100)
    assert values[0] == pytest.approx(0.996) and 0.9999 < values[-1] < 1.0
    assert np.all(np.diff(values) >= 0)


def test_teacher_temperature_is_per_epoch_as_dino() -> None:
    official = np.concatenate((np.linspace(0.04, 0.07, 30), np.ones(300 - 30) * 0.07))  # DINOLoss.__init__
    assert np.array_equal(linear_warmup_then_constant(0.04, 0.07, total=300, warmup=30), official)
    # A run shorter than the warm-up keeps the official values of its epochs.
    assert np.array_equal(linear_warmup_then_constant(0.04, 0.07, total=2, warmup=30), official[:2])


def test_teacher_update_is_an_ema() -> None:
    student, teacher = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    with torch.no_grad():
        student.weight.fill_(1.0)
        teacher.weight.fill_(3.0)
    ema_update(teacher, student, 0.9)
    assert torch.allclose(teacher.weight, torch.full((2, 2), 0.9 * 3.0 + 0.1 * 1.0))
    ema_update(teacher, student, 1.0)
    assert torch.allclose(teacher.weight, torch.full((2, 2), 2.8))


def test_no_weight_decay_on_biases_and_norms() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LayerNorm(4))
    decayed, plain = param_groups(model)
    assert decayed["decay"] and not plain["decay"]
    assert [p.shape for p in decayed["params"]] == [torch.Size([4, 3])]
    assert len(plain["params"]) == 3  # linear bias, norm weight, norm bias


def test_clipping_caps_each_parameter() -> None:
    model = torch.nn.Linear(2, 2)
    model.weight.grad = torch.full((2, 2), 10.0)  # norm 20
    model.bias.grad = torch.tensor([0.3, 0.4])  # norm 0.5
    clip_per_parameter(model, 3.0)
    assert float(model.weight.grad.norm()) == pytest.approx(3.0, rel=1e-4)
    assert torch.allclose(model.bias.grad, torch.tensor([0.3, 0.4]))
