"""DoRA (Venkataramanan et al., ICLR 2024, "Is ImageNet worth 1 video?") as a method module.

Per clip of T frames: the teacher sees one global view of the whole clip (same crop and flip on every
frame) once; the [CLS]->patch attention of k randomly chosen heads of its last block on frame 0 pools the
patch queries into k object prototypes; Sinkhorn-Knopp against frame 0's patch embeddings makes them
spatially distinct; each refined prototype is tracked through the T frames by cross-attention with the
keys of every frame; each track, thresholded at its mean, masks the global clip, and the student sees one
masked clip per object (all k clips in one batched forward) plus per-frame local crops. The loss is
DINO's centred, sharpened cross-entropy, per frame and object (see `dora_loss`).

``faithful: true`` reproduces the released code's quirks (see `dora_loss` and `object_masks`); the
default fixes them. Defaults follow the release's ViT-S/16 recipe: the pretraining command in the README of
the official code, github.com/shashankvkt/DoRA_ICLR24 (preset dora_vits16; the project README's "DoRA,
faithful vs fixed" lists the quirks).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import nn

from wtours.errors import WtoursError
from wtours.trainers.training.attention import last_block_attention
from wtours.trainers.training.config import BackboneConfig, TrainConfig
from wtours.trainers.training.methods import ScheduleShape, StepState
from wtours.trainers.training.self_distillation import (
    ColourOptions,
    HeadLossOptions,
    SelfDistillation,
    updated_center,
)
from wtours.trainers.training.sinkhorn import sinkhorn_knopp
from wtours.trainers.training.views import (
    ViewSpec,
    apply_photometric,
    apply_view,
    draw_photometric,
    draw_view_params,
    random_resized_crop_boxes,
    resized_crop,
)


class Options(HeadLossOptions, ColourOptions):
    """The ``dora:`` section of a config (head, loss and colour options as DINO's)."""

    norm_last_layer: bool = Field(False, description="True is slower to train but more stable")
    clip_crop_size: int = Field(300, ge=16, description="side of the crop first cut from the whole clip")
    clip_crop_scale: tuple[float, float] = (0.2, 1.0)
    global_crops_size: int = Field(224, ge=16, description="side of the global clip view (teacher and masks)")
    global_crops_scale: tuple[float, float] = (0.4, 1.0)
    local_crops_number: int = Field(6, ge=1, description="local crops per frame")
    local_crops_size: int = Field(112, ge=16)
    local_crops_scale: tuple[float, float] = (0.05, 0.4)
    n_objects: int = Field(3, ge=1, description="objects discovered per clip: at most the number of heads")
    sinkhorn_iterations: int = Field(30, ge=0)
    sinkhorn_epsilon: float = Field(0.05, gt=0, description="lower = harder assignment of patches to objects")
    faithful: bool = Field(
        False,
        description="reproduce the release's quirks (first local crop ignored, per-frame loss accumulated "
        "across objects, mask threshold shared by the batch) instead of the fixed behaviour",
    )

    @model_validator(mode="after")
    def _faithful_needs_two_local_crops(self) -> Options:
        if self.faithful and self.local_crops_number < 2:
            raise ValueError("faithful mode ignores the first local crop, so it needs local_crops_number >= 2")
        return self


@dataclass
class ClipViews:
    """One step's inputs for B clips of T frames."""

    global_clips: torch.Tensor  # [B, T, 3, G, G] normalised: one crop and flip per clip
    local_crops: list[torch.Tensor]  # local_crops_number tensors [B*T, 3, L, L], frame b*T+t
    heads: torch.Tensor  # [k] indices of the last block's heads that discover the objects


@dataclass
class DiscoveredObjects:
    """What the teacher found in B clips: k objects tracked over T frames on a rows x cols patch grid."""

    prototypes: torch.Tensor  # [B, k, D] refined object prototypes
    plan: torch.Tensor  # [B, P, k] Sinkhorn plan between frame 0's patches and the prototypes
    tracks: torch.Tensor  # [B, k, T, P] softmax attention of each prototype over each frame's patches
    patch_grid: tuple[int, int]


def clip_views(
    frames_uint8: torch.Tensor, options: Options, generator: torch.Generator
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """DoRA's views of uint8 clips [B, T, 3, H, W], as the release's ``DataAugmentationDINO``: the global clips
    [B, T, 3, G, G] and the local crops (``local_crops_number`` tensors [B*T, 3, L, L], frame t of clip b at
    b*T+t).

    1. ``RandomResizedCropVideo(clip_crop_size, clip_crop_scale)``: one box per clip, the same on every frame,
       bilinear without antialias (torchvision's ``_transforms_video``).
    2. ``RandomResizedCropVideo(global_crops_size, global_crops_scale)`` of that, again one box per clip, and
       ``RandomHorizontalFlipVideo``; then per frame colour jitter (p 0.8), grayscale (p 0.2) and blur (p 0.1);
       no solarization.
    3. ``local_crops_number`` local crops per frame, each an independent ``RandomResizedCrop`` (bicubic) of
       that frame of the clip crop, with per-frame jitter, grayscale and blur (p 0.5); the release flips no
       local crop (its flip is commented out).
    """
    n_clips, n_frames = frames_uint8.shape[:2]
    images = frames_uint8.flatten(0, 1).float().div_(255)
    height, width = images.shape[-2:]

    def per_clip(values: torch.Tensor) -> torch.Tensor:
        return values.repeat_interleave(n_frames, dim=0)

    side = options.clip_crop_size
    clip_boxes = random_resized_crop_boxes(n_clips, height, width, options.clip_crop_scale, generator)
    clip_crops = resized_crop(images, per_clip(clip_boxes), side, "bilinear")
    global_boxes = random_resized_crop_boxes(n_clips, side, side, options.global_crops_scale, generator)
    global_views = resized_crop(clip_crops, per_clip(global_boxes), options.global_crops_size, "bilinear")
    clip_flip = torch.rand(n_clips, generator=generator, dtype=torch.float64) < 0.5
    colour = dict(jitter_p=options.color_jitter_p, grayscale_p=options.grayscale_p)
    global_spec = ViewSpec(options.global_crops_size, flip_p=0.0, blur_p=0.1, **colour)
    photometric = draw_photometric(len(global_views), global_spec, generator)
    photometric.flip = per_clip(clip_flip)
    global_views = apply_photometric(global_views, photometric)

    local_spec = ViewSpec(options.local_crops_size, options.local_crops_scale, flip_p=0.0, blur_p=0.5, **colour)
    local_crops = []
    for _ in range(options.local_crops_number):
        params = draw_view_params(len(clip_crops), side, side, local_spec, generator)
        local_crops.append(apply_view(clip_crops, params, local_spec))
    return global_views.unflatten(0, (n_clips, n_frames)), local_crops


def object_prototypes(cls_attention: torch.Tensor, queries: torch.Tensor, heads: torch.Tensor) -> torch.Tensor:
    """k prototypes [B, k, D]: the patch queries [B, P, D] (all heads concatenated) pooled by the
    [CLS]->patch attention [B, H, P] of the chosen ``heads`` [k], one prototype per head."""
    return torch.einsum("bkp,bpd->bkd", cls_attention[:, heads.to(cls_attention.device)], queries)


def refine_prototypes(
    prototypes: torch.Tensor, patch_embeddings: torch.Tensor, *, iterations: int, epsilon: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Spatially distinct prototypes: the Sinkhorn plan [B, P, k] between the L2-normalised patch embeddings
    [B, P, D] and ``prototypes`` [B, k, D], then each refined prototype = plan^T x normalised embeddings."""
    normalised = F.normalize(patch_embeddings.float(), dim=-1)
    plan = sinkhorn_knopp(normalised @ prototypes.float().transpose(-2, -1), iterations=iterations, epsilon=epsilon)
    return plan.transpose(-2, -1) @ normalised, plan


def track_objects(prototypes: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """Cross-attention of each prototype [B, k, D] to every frame's patch keys [B, T, P, D] (all heads
    concatenated): softmax over patches of prototype . key / sqrt(D). Returns [B, k, T, P]."""
    logits = torch.einsum("bkd,btpd->bktp", prototypes.float(), keys.float()) / math.sqrt(prototypes.shape[-1])
    return logits.softmax(dim=-1)


def object_masks(
    tracks: torch.Tensor,
    patch_grid: tuple[int, int],
    size: int | tuple[int, int],
    *,
    threshold_per_clip: bool = True,
) -> torch.Tensor:
    """Binary masks [B, k, T, height, width] from tracks [B, k, T, P]: each map L2-normalised over its patches,
    kept where above the mean, then upsampled (nearest) from the patch grid to ``size`` (a side or
    (height, width)).

    ``threshold_per_clip`` compares each map with its own mean; False reproduces the release, whose mean
    is taken over the whole batch of clips for each object and frame (so a clip's mask depends on which
    clips share its batch).
    """
    maps = F.normalize(tracks.float(), dim=-1)
    mean_dims = (-1,) if threshold_per_clip else (0, -1)
    keep = (maps > maps.mean(dim=mean_dims, keepdim=True)).float()
    n_clips, n_objects, n_frames, _ = keep.shape
    grids = keep.reshape(n_clips * n_objects * n_frames, 1, *patch_grid)
    height, width = (size, size) if isinstance(size, int) else size
    upsampled = F.interpolate(grids, size=(height, width), mode="nearest")
    return upsampled.reshape(n_clips, n_objects, n_frames, height, width)


@torch.no_grad()
def discover_and_track(
    vit: nn.Module, global_clips: torch.Tensor, heads: torch.Tensor, *, iterations: int, epsilon: float
) -> tuple[DiscoveredObjects, torch.Tensor]:
    """Run ``vit`` once over the global clips [B, T, 3, G, G]; discover objects on frame 0 and track them.

    Returns the objects and the final tokens [B*T, N, D] (for the teacher's [CLS] output).
    """
    n_clips, n_frames = global_clips.shape[:2]
    attention = last_block_attention(vit, global_clips.flatten(0, 1))
    prefix = vit.num_prefix_tokens
    n_heads = attention.q.shape[1]

    def concat_heads(tensor: torch.Tensor) -> torch.Tensor:  # [B*T, H, N, d] -> [B, T, P, H*d]
        patches = tensor[:, :, prefix:].permute(0, 2, 1, 3).flatten(2)
        return patches.unflatten(0, (n_clips, n_frames))

    queries, keys = concat_heads(attention.q), concat_heads(attention.k)
    cls_attention = attention.cls_to_patches.unflatten(0, (n_clips, n_frames))[:, 0].float()
    if len(heads) > n_heads:
        raise WtoursError(f"{len(heads)} objects need as many heads of the last block; it has {n_heads} heads")
    prototypes = object_prototypes(cls_attention, queries[:, 0].float(), heads)
    patch_embeddings = attention.tokens[:, prefix:].unflatten(0, (n_clips, n_frames))[:, 0]
    refined, plan = refine_prototypes(prototypes, patch_embeddings, iterations=iterations, epsilon=epsilon)
    tracks = track_objects(refined, keys)
    return DiscoveredObjects(refined, plan, tracks, attention.patch_grid), attention.tokens


def dora_loss(
    teacher_logits: torch.Tensor,
    masked_logits: torch.Tensor,
    local_logits: torch.Tensor,
    center: torch.Tensor,
    *,
    student_temp: float,
    teacher_temp: float,
    faithful: bool = False,
) -> torch.Tensor:
    """DoRA's loss from logits: teacher [T, B, O] (unmasked global clip), student masked [k, T, B, O] (one
    clip per object), student local [T, L, B, O] (L local crops per frame).

    With CE(a, b) = batch mean of H(softmax((a - center) / teacher_temp), softmax(b / student_temp)), the
    term of object j and frame t is

        f[j, t] = 0.5 * (CE(teacher[t], masked[j, t]) + mean over counted crops c of CE(teacher[t], local[t, c]))

    Fixed (default): every local crop counts and ``loss = mean over j and t of f[j, t]``.

    Faithful (the release): local crop 0 is skipped (DINO's "same view" skip, meaningless here), and the
    per-frame accumulator A is not reset between objects: A_0 = S_0 / T, A_j = (A_{j-1} + S_j) / T with
    S_j = sum over t of f[j, t], and ``loss = mean over j of A_j``. In closed form, with m_j the mean over
    frames of f[j, t],

        loss = (1 / k) * sum_j m_j * sum_{n=0}^{k-1-j} T^(-n),

    so object j weighs 1 + 1/T + ... + 1/T^(k-1-j): earlier objects count more, by (k - j) when T = 1 and
    by about T / (T - 1) for the first object when T = 8.
    """
    teacher_probs = F.softmax((teacher_logits.float() - center) / teacher_temp, dim=-1).detach()
    masked_log_probs = F.log_softmax(masked_logits.float() / student_temp, dim=-1)
    local_log_probs = F.log_softmax(local_logits.float() / student_temp, dim=-1)
    masked_ce = -(teacher_probs.unsqueeze(0) * masked_log_probs).sum(-1).mean(-1)  # [k, T]
    local_ce = -(teacher_probs.unsqueeze(1) * local_log_probs).sum(-1).mean(-1)  # [T, L]
    if faithful:
        local_ce = local_ce[:, 1:]
    per_object_frame = 0.5 * (masked_ce + local_ce.mean(dim=1))  # [k, T]
    if not faithful:
        return per_object_frame.mean()
    n_frames = per_object_frame.shape[1]
    accumulator = per_object_frame.new_zeros(())
    total = per_object_frame.new_zeros(())
    for frame_sum in per_object_frame.sum(dim=1):
        accumulator = (accumulator + frame_sum) / n_frames
        total = total + accumulator
    return total / len(per_object_frame)


class Config(TrainConfig):
    """A DoRA run: the shared sections and ``dora:``."""

    method: Literal["dora"] = "dora"
    dora: Options = Options()


class Dora(SelfDistillation):
    def __init__(self, backbone: BackboneConfig, options: Options, shape: ScheduleShape) -> None:
        super().__init__(backbone, options, shape)
        self.options = options
        n_heads = self.student.backbone.blocks[-1].attn.num_heads
        if options.n_objects > n_heads:
            raise WtoursError(
                f"dora.n_objects={options.n_objects}: objects come from distinct heads of the last block, "
                f"and this backbone has {n_heads}"
            )
        self.n_heads = n_heads

    def views(self, batch: dict[str, Any], generator: torch.Generator) -> ClipViews:
        global_clips, local_crops = clip_views(batch["frames"], self.options, generator)
        # One draw of heads per step for the whole batch, as in the release.
        heads = torch.randperm(self.n_heads, generator=generator)[: self.options.n_objects]
        return ClipViews(global_clips, local_crops, heads)

    def training_step(
        self, views: ClipViews, step: StepState, student: nn.Module
    ) -> tuple[torch.Tensor, dict[str, float]]:
        options = self.options
        global_clips = views.global_clips
        n_clips, n_frames = global_clips.shape[:2]
        with torch.no_grad():
            objects, tokens = discover_and_track(
                self.teacher.backbone,
                global_clips,
                views.heads,
                iterations=options.sinkhorn_iterations,
                epsilon=options.sinkhorn_epsilon,
            )
            teacher_logits = self.teacher.head(self.teacher.backbone.forward_head(tokens))
            masks = object_masks(
                objects.tracks, objects.patch_grid, global_clips.shape[-1], threshold_per_clip=not options.faithful
            )
            # [B, k, T, 1, G, G] x [B, 1, T, 3, G, G] -> k masked clips, object-major: [k*B*T, 3, G, G]
            masked = (masks.unsqueeze(3).to(global_clips.dtype) * global_clips.unsqueeze(1)).transpose(0, 1)
        student_logits = student([masked.flatten(0, 2), *views.local_crops])
        n_masked = masked.shape[0] * n_clips * n_frames
        out_dim = student_logits.shape[-1]
        masked_logits = student_logits[:n_masked].view(-1, n_clips, n_frames, out_dim).transpose(1, 2)
        local_logits = student_logits[n_masked:].view(-1, n_clips, n_frames, out_dim).permute(2, 0, 1, 3)
        teacher_temp = self.teacher_temp(step)
        loss = dora_loss(
            teacher_logits.view(n_clips, n_frames, out_dim).transpose(0, 1),
            masked_logits,
            local_logits,
            self.center,
            student_temp=options.student_temp,
            teacher_temp=teacher_temp,
            faithful=options.faithful,
        )
        self.center.copy_(updated_center(self.center, teacher_logits, options.center_momentum))
        return loss, {"teacher_temp": teacher_temp, "mask_area": float(masks.mean())}



def build(backbone: BackboneConfig, options: Options, shape: ScheduleShape) -> Dora:
    return Dora(backbone, options, shape)
