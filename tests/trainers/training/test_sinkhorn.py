"""Sinkhorn-Knopp on small score matrices: marginals, prototype permutation, sharpness, stability."""

from __future__ import annotations

import torch

from wtours.trainers.training.sinkhorn import sinkhorn_knopp


def _scores(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def test_plan_has_the_expected_marginals() -> None:
    n_patches, n_prototypes = 49, 3
    scores = _scores(2, n_patches, n_prototypes) * 0.3  # cosine-like magnitudes, as in DoRA
    plan = sinkhorn_knopp(scores, iterations=30, epsilon=0.05)
    assert plan.shape == (2, n_patches, n_prototypes) and plan.dtype == torch.float32
    assert torch.all(plan >= 0)
    assert torch.allclose(plan.sum(dim=-1), torch.ones(2, n_patches), atol=1e-5)
    assert torch.allclose(plan.sum(dim=-2), torch.full((2, n_prototypes), n_patches / n_prototypes), rtol=1e-2)


def test_more_iterations_balance_the_prototypes_better() -> None:
    scores = _scores(40, 4, seed=1)
    scores[:, 0] += 2.0  # one prototype is everybody's favourite before balancing

    def imbalance(iterations: int) -> float:
        return float((sinkhorn_knopp(scores, iterations=iterations, epsilon=0.5).sum(0) - 10).abs().max())

    assert imbalance(30) < imbalance(3) < imbalance(0)


def test_permuting_prototypes_permutes_the_plan() -> None:
    scores = _scores(3, 30, 5, seed=2)
    order = torch.tensor([3, 0, 4, 1, 2])
    plan = sinkhorn_knopp(scores)
    permuted = sinkhorn_knopp(scores[..., order])
    assert torch.allclose(permuted, plan[..., order], atol=1e-6)


def test_balancing_splits_a_shared_favourite() -> None:
    # Every patch prefers prototype 0, yet half of them must end up with prototype 1: the ones that
    # like prototype 1 relatively most.
    preference_for_1 = torch.linspace(-1, 1, 10)
    scores = torch.stack([torch.ones(10), 0.5 + 0.2 * preference_for_1], dim=1)
    plan = sinkhorn_knopp(scores, iterations=100, epsilon=0.05)
    assignment = plan.argmax(dim=1)
    assert assignment[:5].eq(0).all() and assignment[5:].eq(1).all()


def test_large_scores_stay_finite_and_half_precision_is_computed_in_float32() -> None:
    scores = (_scores(16, 3, seed=3) * 1e3).to(torch.bfloat16)
    plan = sinkhorn_knopp(scores, epsilon=0.01)
    assert plan.dtype == torch.float32 and torch.isfinite(plan).all()


def test_equals_the_direct_rescaling_of_the_release_where_that_is_finite() -> None:
    scores = _scores(2, 12, 3, seed=4)
    plan = torch.exp(scores.double() / 0.5)
    plan = plan / plan.sum(dim=(-2, -1), keepdim=True)
    for _ in range(7):
        plan = plan / plan.sum(dim=-2, keepdim=True) / 3
        plan = plan / plan.sum(dim=-1, keepdim=True) / 12
    assert torch.allclose(sinkhorn_knopp(scores, iterations=7, epsilon=0.5).double(), plan * 12, atol=1e-5)
