"""Schedules and the teacher EMA give the expected values."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from wtours.trainers.engine import clip_per_parameter, param_groups
from wtours.trainers.methods import Method
from wtours.trainers.schedules import cosine_schedule, linear_warmup_then_constant


def test_cosine_with_warmup() -> None:
    values = cosine_schedule(1.0, 0.1, total_steps=12, warmup_steps=2)
    assert len(values) == 12
    assert values[0] == 0.0 and values[1] == pytest.approx(0.5)
    assert values[2] == pytest.approx(1.0)  # peak right after the warm-up
    assert values[-1] == pytest.approx(0.1)  # ends at the final value
    middle = 2 + (10 - 1) / 2  # halfway through the cosine part
    assert np.interp(middle, np.arange(12), values) == pytest.approx(0.55, abs=0.02)
    assert np.all(np.diff(values[2:]) <= 0)


def test_momentum_schedule_rises_to_one() -> None:
    values = cosine_schedule(0.996, 1.0, total_steps=100)
    assert values[0] == pytest.approx(0.996) and values[-1] == pytest.approx(1.0)
    assert np.all(np.diff(values) >= 0)


def test_teacher_temperature_warmup() -> None:
    values = linear_warmup_then_constant(0.04, 0.07, total_steps=10, warmup_steps=4)
    assert list(np.round(values, 4)) == [0.04, 0.05, 0.06, 0.07, 0.07, 0.07, 0.07, 0.07, 0.07, 0.07]


def test_teacher_update_is_an_ema() -> None:
    method = Method()
    method.student = torch.nn.Linear(2, 2)
    method.teacher = torch.nn.Linear(2, 2)
    with torch.no_grad():
        method.student.weight.fill_(1.0)
        method.teacher.weight.fill_(3.0)
    method.teacher_update(0.9)
    assert torch.allclose(method.teacher.weight, torch.full((2, 2), 0.9 * 3.0 + 0.1 * 1.0))
    method.teacher_update(1.0)
    assert torch.allclose(method.teacher.weight, torch.full((2, 2), 2.8))


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
