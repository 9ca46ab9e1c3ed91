"""DINO (Caron et al., ICCV 2021, arXiv:2104.14294) as a method module: multi-crop views of every frame, the
teacher on the two global views, the student on all, paired by `dino_loss` (the head, loss, center and EMA
teacher are `wtours.trainers.training.self_distillation`, shared with DoRA). Defaults follow
the official ViT-S/16 recipe: the defaults of main_dino.py in github.com/facebookresearch/dino (the presets
dino_vits16_* name the exact commands)."""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import Field
from torch import nn

from wtours.trainers.training.config import BackboneConfig, TrainConfig
from wtours.trainers.training.methods import ScheduleShape, StepState
from wtours.trainers.training.self_distillation import (
    ColourOptions,
    HeadLossOptions,
    SelfDistillation,
    dino_loss,
    updated_center,
)
from wtours.trainers.training.views import ViewSpec, multi_crop


class Options(HeadLossOptions, ColourOptions):
    """The ``dino:`` section of a config."""

    global_crops_size: int = Field(224, ge=16)
    global_crops_scale: tuple[float, float] = (0.4, 1.0)
    local_crops_number: int = Field(8, ge=0)
    local_crops_size: int = Field(96, ge=16)
    local_crops_scale: tuple[float, float] = (0.05, 0.4)


class Config(TrainConfig):
    """A DINO run: the shared sections and ``dino:``."""

    method: Literal["dino"] = "dino"
    dino: Options = Options()


class Dino(SelfDistillation):
    def __init__(self, backbone: BackboneConfig, options: Options, shape: ScheduleShape) -> None:
        super().__init__(backbone, options, shape)
        self.options = options
        # DINO's DataAugmentationDINO: RandomResizedCrop (bicubic), flip, ColorJitter(0.4, 0.4, 0.2, 0.1) p 0.8,
        # grayscale p 0.2 on every view; blur p 1.0 / 0.1 + solarize p 0.2 on the two globals, blur p 0.5 locally.
        colour = dict(jitter_p=options.color_jitter_p, grayscale_p=options.grayscale_p)
        self.view_specs = [
            ViewSpec(options.global_crops_size, options.global_crops_scale, blur_p=1.0, **colour),
            ViewSpec(options.global_crops_size, options.global_crops_scale, blur_p=0.1, solarize_p=0.2, **colour),
        ] + [ViewSpec(options.local_crops_size, options.local_crops_scale, blur_p=0.5, **colour)] * (
            options.local_crops_number
        )

    def views(self, batch: dict[str, Any], generator: torch.Generator) -> list[torch.Tensor]:
        frames = batch["frames"]
        images = frames.flatten(0, 1)  # every frame of every clip is one image for DINO
        return multi_crop(images, self.view_specs, generator)

    def training_step(
        self, views: list[torch.Tensor], step: StepState, student: nn.Module
    ) -> tuple[torch.Tensor, dict[str, float]]:
        with torch.no_grad():
            teacher_logits = self.teacher(views[:2])
        student_logits = student(views)
        teacher_temp = self.teacher_temp(step)
        loss = dino_loss(
            student_logits,
            teacher_logits,
            self.center,
            n_views=len(views),
            n_global=2,
            student_temp=self.options.student_temp,
            teacher_temp=teacher_temp,
        )
        self.center.copy_(updated_center(self.center, teacher_logits, self.options.center_momentum))
        return loss, {"teacher_temp": teacher_temp}

    def lr_batch_size(self, clips_per_step: int, frames_per_clip: int) -> int:
        return clips_per_step * frames_per_clip


def build(backbone: BackboneConfig, options: Options, shape: ScheduleShape) -> Dino:
    return Dino(backbone, options, shape)
