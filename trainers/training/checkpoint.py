"""Checkpoints: one file holding everything a run needs to continue exactly where it stopped.

Contents: the method's modules and buffers (student, teacher, e.g. the DINO center), the optimizer,
the fp16 loss scaler, the number of steps done, the data position, and the config. Randomness needs
no saved state: the engine reseeds every step from (seed, rank, step). Written atomically (temp file
+ rename), read with ``torch.load(weights_only=True)`` — no pickled code runs on load.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from wtours.errors import WtoursError
from wtours.store import atomic_path

FORMAT_VERSION = 1


REQUIRED_KEYS = ("step", "method")


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    # Through a Python file object: a full disk is then an OSError naming the path (ENOSPC), where
    # torch's own file writer would raise an unexplained RuntimeError.
    with atomic_path(path) as tmp, open(tmp, "wb") as stream:
        try:
            torch.save({"format": FORMAT_VERSION, **payload}, stream)
        except RuntimeError as err:
            if isinstance(err.__context__, OSError):  # torch closing its archive after the failed write
                raise err.__context__ from None
            raise


def load_checkpoint(path: Path) -> dict[str, Any]:
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a truncated or foreign file: say which and why, in one line
        raise WtoursError(f"{path}: not a readable wtours checkpoint ({err.__class__.__name__})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT_VERSION:
        raise WtoursError(f"{path}: not a wtours checkpoint of format {FORMAT_VERSION}")
    missing = [key for key in REQUIRED_KEYS if key not in payload]
    if missing or not isinstance(payload["step"], int) or not isinstance(payload["method"], dict):
        raise WtoursError(f"{path}: a damaged wtours checkpoint (no valid {', '.join(missing or REQUIRED_KEYS)})")
    return payload


def load_method(path: Path) -> tuple[Any, Any]:
    """The method a checkpoint holds, rebuilt from the config saved inside it and loaded, in eval mode, with
    that config: how evaluations read a run at any step (DoRA's teacher for tracks, VideoMAE's decoder for
    reconstructions), the one loader of a checkpoint besides --resume."""
    import json

    from wtours.trainers.training.config import config_from_tree
    from wtours.trainers.training.methods import ScheduleShape, method_module

    state = load_checkpoint(path)
    if not isinstance(state.get("config"), str):
        raise WtoursError(f"{path}: the checkpoint records no config (an older wtours); it cannot be rebuilt")
    config = config_from_tree(json.loads(state["config"]), source=str(path))
    method = method_module(config.method).build(config.backbone, config.options, ScheduleShape(1, 1))
    try:
        method.load_state_dict(state["method"])
    except RuntimeError as err:
        first = str(err).strip().splitlines()[0]
        raise WtoursError(f"{path}: its weights do not fit a {config.method} model ({first[:200]})") from None
    return method.eval(), config
