"""Image encoders: timm Vision Transformers built offline, ready for multi-crop (any input size).

A ViT trained at 224 px meets other sizes everywhere: 96/112 px local crops in DINO and DoRA, 480 px frames in
DAVIS and attention maps. How its 14 x 14 position embedding is resized to another patch grid changes every
token, so it is a property of the encoder (``BackboneSpec.pos_embed``), written beside the exported weights:

- ``dino`` (DINO, DoRA, and every encoder they train): the official `interpolate_pos_encoding` — bicubic with
  an explicit scale factor of (g + 0.1) / sqrt(N) per axis, no antialias, [CLS] position kept;
- ``timm``: timm's own ``resample_abs_pos_embed`` (bicubic to the exact size, antialiased);
- ``sinusoid``: VideoMAE's fixed table recomputed for the new grid (one 1-D sinusoid over the flattened index).

The weights are a plain timm ViT's either way: ``timm.create_model(name, **kwargs)`` loads them, and at the
training size (224 px) every rule gives the same network.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from wtours.trainers.training.config import BackboneConfig

PosEmbedResize = Literal["dino", "timm", "sinusoid"]
POS_EMBED_RULES: tuple[str, ...] = ("dino", "timm", "sinusoid")


def dino_resample_pos_embed(pos_embed: torch.Tensor, grid: tuple[int, int], num_prefix_tokens: int = 1) -> torch.Tensor:
    """DINO's ``interpolate_pos_encoding``: [1, prefix + N, C] -> [1, prefix + rows * cols, C].

    The square N-patch table is resized bicubically with ``scale_factor = ((rows + 0.1) / sqrt(N),
    (cols + 0.1) / sqrt(N))`` (the 0.1 keeps the floor of the output size at rows and cols), no antialias,
    no align_corners; the prefix ([CLS]) positions are kept as they are.
    """
    prefix, patches = pos_embed[:, :num_prefix_tokens], pos_embed[:, num_prefix_tokens:]
    side = math.sqrt(patches.shape[1])
    rows, cols = grid
    if rows * cols == patches.shape[1] and rows == cols:
        return pos_embed
    dim = patches.shape[-1]
    table = patches.reshape(1, int(side), int(side), dim).permute(0, 3, 1, 2)
    resized = F.interpolate(table, scale_factor=((rows + 0.1) / side, (cols + 0.1) / side), mode="bicubic")
    if resized.shape[-2:] != (rows, cols):
        raise ValueError(f"position embedding resized to {tuple(resized.shape[-2:])}, expected {grid}")
    return torch.cat([prefix, resized.permute(0, 2, 3, 1).reshape(1, rows * cols, dim)], dim=1)


def sinusoid_table(n_positions: int, dim: int) -> torch.Tensor:
    """The transformer sinusoid table [n_positions, dim] as VideoMAE builds it: channel j of position p is
    p / 10000^(2 * (j // 2) / dim), sine on even channels and cosine on odd ones (interleaved)."""
    positions = torch.arange(n_positions, dtype=torch.float64).unsqueeze(1)
    exponents = 2 * (torch.arange(dim) // 2).to(torch.float64) / dim
    angles = positions / torch.pow(10000.0, exponents)
    table = torch.empty_like(angles)
    table[:, 0::2], table[:, 1::2] = angles[:, 0::2].sin(), angles[:, 1::2].cos()
    return table.float()


def _resized_pos_embed(vit: nn.Module, grid: tuple[int, int]) -> torch.Tensor:
    """The encoder's position table for a ``grid`` of patches, by its ``pos_embed_resize`` rule."""
    from timm.layers import resample_abs_pos_embed

    prefix = 0 if vit.no_embed_class else vit.num_prefix_tokens
    rule = vit.pos_embed_resize
    if rule == "sinusoid":
        if prefix:
            raise ValueError("the sinusoid position rule is for encoders without a [CLS] position")
        table = sinusoid_table(grid[0] * grid[1], vit.pos_embed.shape[-1])
        return table.unsqueeze(0).to(vit.pos_embed.device, vit.pos_embed.dtype)
    if tuple(grid) == tuple(vit.patch_embed.grid_size):
        return vit.pos_embed
    if rule == "dino":
        return dino_resample_pos_embed(vit.pos_embed, grid, prefix)
    return resample_abs_pos_embed(
        vit.pos_embed, new_size=grid, old_size=vit.patch_embed.grid_size, num_prefix_tokens=prefix
    )


class ResizableViT(VisionTransformer):
    """timm's VisionTransformer whose position table follows ``pos_embed_resize`` at other input sizes: the
    same parameters and state dict, only `_pos_embed` differs. Made from a timm model by `with_pos_embed_resize`."""

    pos_embed_resize: str = "dino"

    def _pos_embed(self, x: torch.Tensor) -> torch.Tensor:
        if not self.dynamic_img_size or self.pos_embed is None:
            return super()._pos_embed(x)
        batch, rows, cols, dim = x.shape
        pos_embed = _resized_pos_embed(self, (rows, cols))
        x = x.view(batch, -1, dim)
        to_cat = []
        if self.cls_token is not None:
            to_cat.append(self.cls_token.expand(batch, -1, -1))
        if self.reg_token is not None:
            to_cat.append(self.reg_token.expand(batch, -1, -1))
        if self.no_embed_class:  # position table without prefix entries: add, then prepend [CLS]
            x = torch.cat([*to_cat, x + pos_embed], dim=1)
        else:
            x = torch.cat([*to_cat, x], dim=1) + pos_embed
        return self.pos_drop(x)


def with_pos_embed_resize(vit: nn.Module, rule: str) -> nn.Module:
    """Give a timm VisionTransformer the position-table ``rule`` (see the module docstring), in place."""
    if rule not in POS_EMBED_RULES:
        raise ValueError(f"unknown position-embedding rule {rule!r} (one of {', '.join(POS_EMBED_RULES)})")
    if type(vit) not in (VisionTransformer, ResizableViT):
        raise TypeError(f"{type(vit).__name__} is not a timm VisionTransformer")
    vit.__class__ = ResizableViT  # a subclass that adds no state: the module stays a VisionTransformer
    vit.pos_embed_resize = rule
    return vit


def timm_vit_name(arch: str, patch_size: int) -> str:
    """timm's registry name for a ViT size and patch size; timm registers no tiny/8, so that one is the
    tiny/16 entry (to be given ``patch_size=8``), the same network."""
    if arch == "vit_tiny" and patch_size != 16:
        return "vit_tiny_patch16_224"
    return f"{arch}_patch{patch_size}_224"


@dataclass(frozen=True)
class BackboneSpec:
    """Everything timm needs to rebuild the encoder (a registry name plus keyword overrides) and the rule
    that resizes its position table at other input sizes."""

    timm_name: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    pos_embed: str = "dino"

    @classmethod
    def from_config(cls, config: BackboneConfig) -> BackboneSpec:
        overrides = {
            key: value
            for key, value in (
                ("embed_dim", config.embed_dim),
                ("depth", config.depth),
                ("num_heads", config.num_heads),
            )
            if value is not None
        }
        name = timm_vit_name(config.arch, config.patch_size)
        if not name.endswith(f"patch{config.patch_size}_224"):
            overrides["patch_size"] = config.patch_size
        return cls(name, overrides, config.pos_embed_resize)

    def create(self, *, drop_path_rate: float = 0.0, dynamic_img_size: bool = True) -> nn.Module:
        """A randomly initialised encoder without classifier (``num_classes=0``): forward gives [CLS]; at
        other input sizes its position table follows ``pos_embed`` (see `with_pos_embed_resize`)."""
        import timm

        model = timm.create_model(
            self.timm_name,
            pretrained=False,
            num_classes=0,
            dynamic_img_size=dynamic_img_size,
            drop_path_rate=drop_path_rate,
            **self.kwargs,
        )
        return with_pos_embed_resize(model, self.pos_embed)


def embed_dim(backbone: nn.Module) -> int:
    return int(backbone.num_features)


def export_encoder(backbone: nn.Module, spec: BackboneSpec, path: Path) -> None:
    """Write the encoder's weights as safetensors plus ``<path>.json`` naming its timm architecture.

    ``timm.create_model(spec.timm_name, num_classes=0, **spec.kwargs).load_state_dict(load_file(path))``
    then reproduces it exactly at its training size; `wtours.trainers.evaluation.features.load_encoder` also applies the
    position-table rule (metadata ``pos_embed``) at other sizes.
    """
    from safetensors.torch import save_file

    from wtours.store import atomic_path, atomic_write_json

    state = {
        name: tensor.detach().to("cpu", torch.float32).contiguous()
        for name, tensor in backbone.state_dict().items()
    }
    with atomic_path(path) as tmp:
        save_file(
            state,
            str(tmp),
            metadata={"timm_name": spec.timm_name, "kwargs": json.dumps(spec.kwargs), "pos_embed": spec.pos_embed},
        )
    atomic_write_json(path.with_suffix(".json"), asdict(spec))
