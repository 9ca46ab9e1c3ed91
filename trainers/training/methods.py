"""What a pretraining method must provide so that the one engine can train it.

A method module (``wtours.trainers.training.dino``; later ``dora``, ``videomae``) exposes:

- ``Options``: a pydantic model of its own config section (``dino:`` in the YAML);
- ``build(config, options, schedule) -> Method``.

The engine owns everything else: data order, optimizer and schedules, precision, distribution,
checkpoints, logging. Adding a method never touches the loop.
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
    from wtours.trainers.training.config import TrainConfig

METHODS = {
    "dino": "wtours.trainers.training.dino",
    "dora": "wtours.trainers.training.dora",
    "videomae": "wtours.trainers.training.videomae",
}


def method_module(name: str) -> ModuleType:
    if name not in METHODS:
        raise WtoursError(f"unknown method {name!r} (available: {', '.join(sorted(METHODS))})")
    return importlib.import_module(METHODS[name])


@dataclass(frozen=True)
class ScheduleShape:
    """How long the run is, so that a method can precompute its own per-step schedules."""

    epochs: int
    steps_per_epoch: int

    @property
    def total_steps(self) -> int:
        return self.epochs * self.steps_per_epoch


@dataclass(frozen=True)
class StepState:
    """Where the loop is: the step being taken (0-based, global) and the scheduled values at it."""

    step: int
    epoch: int
    lr: float
    weight_decay: float
    momentum: float


class Method(nn.Module):
    """A student (trained by the optimizer), optionally a teacher (updated by `teacher_update`), and the
    method's loss state as buffers (so they land in checkpoints)."""

    student: nn.Module
    teacher: nn.Module | None
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

    @torch.no_grad()
    def teacher_update(self, momentum: float) -> None:
        """teacher <- momentum * teacher + (1 - momentum) * student, parameter by parameter."""
        if self.teacher is None:
            return
        student_params = [p.detach() for p in self.student.parameters()]
        teacher_params = list(self.teacher.parameters())
        torch._foreach_mul_(teacher_params, momentum)
        torch._foreach_add_(teacher_params, student_params, alpha=1 - momentum)

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

    def encoder_spec(self, config: TrainConfig) -> BackboneSpec:
        """How timm rebuilds `encoder()`, written beside the exported weights. DINO and DoRA export the
        configured backbone; a method whose encoder differs (VideoMAE as an image encoder) overrides this."""
        from wtours.trainers.training.backbones import BackboneSpec

        return BackboneSpec.from_config(config.backbone)
