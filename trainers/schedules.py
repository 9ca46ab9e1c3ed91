"""Per-iteration schedules, precomputed as arrays (as in DINO): resuming at step k only needs k."""

from __future__ import annotations

import numpy as np


def cosine_schedule(
    base_value: float,
    final_value: float,
    total_steps: int,
    warmup_steps: int = 0,
    warmup_start_value: float = 0.0,
) -> np.ndarray:
    """Linear warm-up from ``warmup_start_value`` to ``base_value``, then a half cosine to ``final_value``.

    One value per step; the cosine reaches ``final_value`` at the last step.
    """
    if total_steps < 1:
        raise ValueError("a schedule needs at least one step")
    warmup_steps = min(warmup_steps, total_steps)
    warmup = np.linspace(warmup_start_value, base_value, warmup_steps, endpoint=False)
    decay_steps = total_steps - warmup_steps
    progress = np.arange(decay_steps) / max(decay_steps - 1, 1)
    decay = final_value + 0.5 * (base_value - final_value) * (1 + np.cos(np.pi * progress))
    return np.concatenate([warmup, decay]).astype(np.float64)


def linear_warmup_then_constant(
    start_value: float, value: float, total_steps: int, warmup_steps: int
) -> np.ndarray:
    """DINO's teacher temperature: linear from ``start_value`` to ``value`` over the warm-up, then flat."""
    warmup_steps = min(warmup_steps, total_steps)
    warmup = np.linspace(start_value, value, warmup_steps)
    return np.concatenate([warmup, np.full(total_steps - warmup_steps, value)]).astype(np.float64)
