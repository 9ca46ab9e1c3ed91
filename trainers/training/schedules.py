"""Schedules precomputed as arrays, one value per step (or per epoch), as DINO does: resuming at step k only
needs k, and the values equal the official code's."""

from __future__ import annotations

import numpy as np


def cosine_schedule(
    base_value: float,
    final_value: float,
    total_steps: int,
    warmup_steps: int = 0,
    warmup_start_value: float = 0.0,
) -> np.ndarray:
    """DINO's ``utils.cosine_scheduler`` (VideoMAE uses the same): ``linspace(warmup_start_value, base_value,
    warmup_steps)`` (the warm-up's last step is the base value), then for i in 0..n-1 over the remaining n
    steps ``final + 0.5 (base - final)(1 + cos(pi i / n))`` — the cosine approaches ``final_value`` and never
    quite reaches it."""
    if total_steps < 1:
        raise ValueError("a schedule needs at least one step")
    warmup_steps = min(warmup_steps, total_steps)
    warmup = np.linspace(warmup_start_value, base_value, warmup_steps)
    steps = np.arange(total_steps - warmup_steps)
    decay = final_value + 0.5 * (base_value - final_value) * (1 + np.cos(np.pi * steps / max(len(steps), 1)))
    return np.concatenate([warmup, decay]).astype(np.float64)


def linear_warmup_then_constant(start_value: float, value: float, total: int, warmup: int) -> np.ndarray:
    """DINO's teacher temperature, one value per epoch: ``linspace(start_value, value, warmup)``, then
    ``value``. A warm-up longer than the run keeps the official values of the epochs that exist."""
    ramp = np.linspace(start_value, value, warmup)[:total]
    return np.concatenate([ramp, np.full(total - len(ramp), value)]).astype(np.float64)
