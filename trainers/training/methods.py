"""What a pretraining method must provide so that the one engine can train it.

A method module (``wtours.trainers.training.dino``, ``dora``, ``videomae``) exposes:

- ``Options``: a pydantic model of its own config section (``dino:`` in the YAML);
- ``Config``: its run config, a `TrainConfig` with ``method: Literal["dino"]`` and ``dino: Options`` (the
  members of the union `config.config_union` validates YAML against);
- ``build(backbone, options, schedule) -> Method``: the backbone section, its own options, and the run's
  `ScheduleShape`: nothing else of the config.

The engine owns everything else: data order, optimizer and its lr / weight-decay schedules, precision,
distribution, checkpoints, logging. What only some methods do in a step (DINO's last-layer freeze, a teacher's
EMA) is the method's, behind the `Method.before_optimizer_step` / `Method.after_optimizer_step` hooks: the
engine names no method, and adding one never touches the loop.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from wtours.errors import WtoursError

if TYPE_CHECKING:
    from wtours.trainers.training.backbones import BackboneSpec
    from wtours.trainers.training.config import OptimConfig

METHODS = {
    "dino": "wtours.trainers.training.dino",
    "dora": "wtours.trainers.training.dora",
    "videomae": "wtours.trainers.training.videomae",
}


def check_method(name: str) -> None:
    """Raise WtoursError naming the registered methods unless ``name`` is one."""
    if name not in METHODS:
        raise WtoursError(f"unknown method {name!r} (available: {', '.join(sorted(METHODS))})")


def method_module(name: str) -> ModuleType:
    check_method(name)
    return importlib.import_module(METHODS[name])


@dataclass(frozen=True)
class ScheduleShape:
    """How long the run is, so that a method can precompute its own per-step schedules, and the settings of
    the ``optim`` section that only such a method schedules (main_dino.py's arguments, where DINO has them): a
    teacher's EMA momentum at step 0 and at the last step (a cosine; 1 in DINO) and the epochs a head's last
    layer stays frozen. The engine passes them on without reading them."""

    epochs: int
    steps_per_epoch: int
    momentum_teacher: float = 0.996
    freeze_last_layer: float = 0.0
    momentum_teacher_end: float = 1.0

    @classmethod
    def of(cls, optim: OptimConfig, steps_per_epoch: int) -> ScheduleShape:
        return cls(optim.epochs, steps_per_epoch, optim.momentum_teacher, optim.freeze_last_layer,
                   optim.momentum_teacher_end)

    @property
    def total_steps(self) -> int:
        return self.epochs * self.steps_per_epoch


@dataclass(frozen=True)
class StepState:
    """Where the loop is: the step being taken (0-based, global) and the engine's scheduled values at it."""

    step: int
    epoch: int
    lr: float
    weight_decay: float


class Method(nn.Module):
    """A student (trained by the optimizer), optionally a teacher (the method updates it in
    `after_optimizer_step`), and the method's loss state as buffers (so they land in checkpoints)."""

    student: nn.Module
    teacher: nn.Module | None  # a submodule, or None: set in __init__ (a class default would hide the module)
    # VideoMAE scales min_lr by batch / 256 like lr; DINO and DoRA keep min_lr as given.
    scales_min_lr: bool = False

    def views(self, batch: dict[str, Any], generator: torch.Generator) -> Any:
        """Turn a loader batch (``frames``: uint8 [B, T, 3, H, W] on the device) into model inputs."""
        raise NotImplementedError

    def training_step(
        self, views: Any, step: StepState, student: nn.Module
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """The loss for one batch, and extra metrics to log. ``student`` is ``self.student`` possibly
        wrapped for distribution or compilation: call it rather than ``self.student``."""
        raise NotImplementedError

    def before_optimizer_step(self, step: StepState) -> None:
        """Called with the student's gradients unscaled and clipped, before the optimizer uses them: e.g. DINO
        drops the gradient of its head's last layer during the first epochs."""

    def after_optimizer_step(self, step: StepState) -> dict[str, float]:
        """Called after the optimizer updated the student: e.g. a teacher's EMA. Returns values to log."""
        return {}

    def no_weight_decay(self) -> frozenset[str]:
        """Names of student parameters (as ``named_parameters`` gives them) exempt from weight decay besides
        biases and 1-D parameters, which never decay."""
        return frozenset()

    def lr_batch_size(self, clips_per_step: int, frames_per_clip: int) -> int:
        """The batch size that ``optim.lr`` (given per 256) scales with: clips by default (DoRA counts
        clips); a method that treats every frame as an image (DINO) counts frames."""
        return clips_per_step

    def encoder(self) -> nn.Module:
        """The backbone to export and evaluate (DINO and DoRA: the teacher's)."""
        raise NotImplementedError

    def encoder_spec(self) -> BackboneSpec:
        """How timm rebuilds `encoder()`, written beside the exported weights."""
        raise NotImplementedError
