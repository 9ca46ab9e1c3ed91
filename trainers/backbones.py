"""Image encoders: timm Vision Transformers built offline, ready for multi-crop (any input size)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from wtours.trainers.config import BackboneConfig


@dataclass(frozen=True)
class BackboneSpec:
    """Everything timm needs to rebuild the encoder: a registry name plus keyword overrides."""

    timm_name: str
    kwargs: dict[str, Any] = field(default_factory=dict)

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
        if config.arch == "vit_tiny" and config.patch_size == 8:
            # timm registers no tiny/8; the tiny/16 entry with patch_size overridden is the same network.
            overrides["patch_size"] = 8
            return cls("vit_tiny_patch16_224", overrides)
        return cls(f"{config.arch}_patch{config.patch_size}_224", overrides)

    def create(self, *, drop_path_rate: float = 0.0, dynamic_img_size: bool = True) -> nn.Module:
        """A randomly initialised encoder without classifier (``num_classes=0``): forward gives [CLS]."""
        import timm

        return timm.create_model(
            self.timm_name,
            pretrained=False,
            num_classes=0,
            dynamic_img_size=dynamic_img_size,
            drop_path_rate=drop_path_rate,
            **self.kwargs,
        )


def embed_dim(backbone: nn.Module) -> int:
    return int(backbone.num_features)


def export_encoder(backbone: nn.Module, spec: BackboneSpec, path: Path) -> None:
    """Write the encoder's weights as safetensors plus ``<path>.json`` naming its timm architecture.

    ``timm.create_model(spec.timm_name, num_classes=0, **spec.kwargs).load_state_dict(load_file(path))``
    then reproduces it exactly (see `wtours.trainers.features.load_encoder`).
    """
    from safetensors.torch import save_file

    from wtours.store import atomic_path, atomic_write_json

    state = {
        name: tensor.detach().to("cpu", torch.float32).contiguous()
        for name, tensor in backbone.state_dict().items()
    }
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata={"timm_name": spec.timm_name, "kwargs": json.dumps(spec.kwargs)})
    atomic_write_json(path.with_suffix(".json"), asdict(spec))
