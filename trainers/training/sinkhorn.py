"""Sinkhorn-Knopp: an entropic optimal-transport plan between the patches of an image and k prototypes.

DoRA uses it to make the k object prototypes spatially distinct: every patch distributes one unit of mass
over the prototypes, and every prototype receives the same share (P/k) of the image, so two prototypes
cannot both claim the same region.
"""

from __future__ import annotations

import math

import torch


def sinkhorn_knopp(scores: torch.Tensor, *, iterations: int = 30, epsilon: float = 0.05) -> torch.Tensor:
    """Transport plan for ``scores`` [..., P patches, K prototypes] (higher = more similar).

    Starts from ``exp(scores / epsilon)`` and alternately rescales prototypes (each to total mass 1/K) and
    patches (each to 1/P), ``iterations`` times, as the DoRA release does; the plan is then scaled by P.
    Returns [..., P, K] in float32 whose rows (patches) each sum to 1 exactly and whose columns
    (prototypes) each sum to P/K once the iterations have converged. Lower ``epsilon`` gives a harder,
    more one-hot assignment; more ``iterations`` brings the prototype sums closer to P/K.
    """
    if scores.ndim < 2:
        raise ValueError(f"scores must be [..., patches, prototypes], got shape {tuple(scores.shape)}")
    n_patches, n_prototypes = scores.shape[-2:]
    log_plan = scores.detach().float() / epsilon
    # The release rescales exp(scores / epsilon) directly; with a small epsilon a prototype that every
    # patch scores far below the best underflows to an all-zero column and 0/0 gives NaN. The same
    # rescalings done on logarithms (log-sum-exp) give the same plan without underflow.
    log_plan = log_plan - torch.logsumexp(log_plan, dim=(-2, -1), keepdim=True)
    for _ in range(iterations):
        log_plan = log_plan - torch.logsumexp(log_plan, dim=-2, keepdim=True) - math.log(n_prototypes)
        log_plan = log_plan - torch.logsumexp(log_plan, dim=-1, keepdim=True) - math.log(n_patches)
    return torch.exp(log_plan) * n_patches
