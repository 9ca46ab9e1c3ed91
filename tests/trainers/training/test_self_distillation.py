"""DINO's loss, centre and head on small tensors, against direct computations."""

from __future__ import annotations

import math

import torch

from wtours.trainers.training.self_distillation import DinoHead, MultiCropNetwork, dino_loss, updated_center


def _direct_loss(student, teacher, center, n_views, student_temp, teacher_temp):
    batch = len(teacher) // 2
    total, pairs = 0.0, 0
    for i in range(2):
        for v in range(n_views):
            if v == i:
                continue
            for b in range(batch):
                t = teacher[i * batch + b]
                s = student[v * batch + b]
                p = torch.exp((t - center[0]) / teacher_temp)
                p = p / p.sum()
                log_q = s / student_temp - torch.logsumexp(s / student_temp, dim=0)
                total += float(-(p * log_q).sum()) / batch
            pairs += 1
    return total / pairs


def test_loss_equals_a_direct_computation() -> None:
    generator = torch.Generator().manual_seed(0)
    n_views, batch, dim = 4, 3, 5
    student = torch.randn(n_views * batch, dim, generator=generator, dtype=torch.float64)
    teacher = torch.randn(2 * batch, dim, generator=generator, dtype=torch.float64)
    center = torch.randn(1, dim, generator=generator, dtype=torch.float64)
    loss = dino_loss(
        student, teacher, center.float(), n_views=n_views, n_global=2, student_temp=0.1, teacher_temp=0.04
    )
    expected = _direct_loss(student, teacher, center, n_views, 0.1, 0.04)
    assert math.isclose(float(loss), expected, rel_tol=1e-5)


def test_loss_is_low_when_student_matches_a_sharp_teacher() -> None:
    teacher = torch.tensor([[10.0, 0.0, 0.0], [0.0, 10.0, 0.0]]).repeat(2, 1)  # 2 globals x batch 2
    matching = dino_loss(
        teacher.repeat(2, 1),
        teacher,
        torch.zeros(1, 3),
        n_views=4,
        n_global=2,
        student_temp=0.1,
        teacher_temp=0.04,
    )
    swapped = dino_loss(
        teacher.flip(1).repeat(2, 1),
        teacher,
        torch.zeros(1, 3),
        n_views=4,
        n_global=2,
        student_temp=0.1,
        teacher_temp=0.04,
    )
    assert float(matching) < 1e-3 < float(swapped)


def test_center_is_an_ema_of_the_teacher_batch_mean() -> None:
    center = torch.tensor([[1.0, -1.0]])
    teacher = torch.tensor([[2.0, 0.0], [4.0, 2.0]])
    updated = updated_center(center, teacher, momentum=0.9)
    assert torch.allclose(updated, 0.9 * center + 0.1 * torch.tensor([[3.0, 1.0]]))


def test_head_output_and_frozen_norm() -> None:
    head = DinoHead(in_dim=8, out_dim=32, hidden_dim=16, bottleneck_dim=4, norm_last_layer=True)
    out = head(torch.randn(5, 8))
    assert out.shape == (5, 32)
    magnitude = head.last_layer.parametrizations.weight.original0
    assert not magnitude.requires_grad and torch.all(magnitude == 1)
    # With unit row norms and a normalised bottleneck, every logit is a cosine: within [-1, 1].
    assert out.abs().max() <= 1 + 1e-5


def test_multi_crop_network_runs_each_size_once() -> None:
    calls = []

    class Recorder(torch.nn.Module):
        def forward(self, images):
            calls.append(tuple(images.shape))
            return images.mean(dim=(2, 3))

    network = MultiCropNetwork(Recorder(), torch.nn.Identity())
    views = [torch.ones(2, 3, 8, 8), torch.ones(2, 3, 8, 8), torch.zeros(2, 3, 4, 4), torch.zeros(2, 3, 4, 4)]
    out = network(views)
    assert calls == [(4, 3, 8, 8), (4, 3, 4, 4)]
    assert out.shape == (8, 3) and torch.all(out[:4] == 1) and torch.all(out[4:] == 0)
