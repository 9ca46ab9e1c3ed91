"""The position-embedding rules of `wtours.trainers.training.backbones`, held against their official definitions."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from wtours.trainers.training.backbones import BackboneSpec, sinusoid_table, with_pos_embed_resize


def official_dino_interpolate_pos_encoding(pos_embed, n_tokens, w, h, patch_size):
    """facebookresearch/dino vision_transformer.py `VisionTransformer.interpolate_pos_encoding` (Apache-2.0),
    transcribed: ``w`` and ``h`` are the input's dims 2 and 3 as DINO names them."""
    npatch = n_tokens - 1
    N = pos_embed.shape[1] - 1
    if npatch == N and w == h:
        return pos_embed
    class_pos_embed = pos_embed[:, 0]
    patch_pos_embed = pos_embed[:, 1:]
    dim = pos_embed.shape[-1]
    w0 = w // patch_size
    h0 = h // patch_size
    w0, h0 = w0 + 0.1, h0 + 0.1
    patch_pos_embed = F.interpolate(
        patch_pos_embed.reshape(1, int(math.sqrt(N)), int(math.sqrt(N)), dim).permute(0, 3, 1, 2),
        scale_factor=(w0 / math.sqrt(N), h0 / math.sqrt(N)),
        mode="bicubic",
    )
    patch_pos_embed = patch_pos_embed.permute(0, 2, 3, 1).view(1, -1, dim)
    return torch.cat((class_pos_embed.unsqueeze(0), patch_pos_embed), dim=1)


def dino_reference_tokens(vit, images):
    """DINO's ``prepare_tokens`` + blocks + norm, with the official interpolation."""
    tokens = vit.patch_embed(images).flatten(1, 2)
    tokens = torch.cat([vit.cls_token.expand(len(images), -1, -1), tokens], dim=1)
    tokens = tokens + official_dino_interpolate_pos_encoding(
        vit.pos_embed, tokens.shape[1], images.shape[2], images.shape[3], vit.patch_embed.patch_size[0]
    )
    for block in vit.blocks:
        tokens = block(tokens)
    return vit.norm(tokens)


@pytest.fixture(scope="module")
def vit_pair():
    torch.manual_seed(0)
    dino = BackboneSpec("vit_small_patch16_224", {"depth": 2}).create().eval()
    torch.nn.init.normal_(dino.pos_embed, std=0.02)  # as trained tables look: not timm's near-zero init
    plain = BackboneSpec("vit_small_patch16_224", {"depth": 2}, pos_embed="timm").create().eval()
    plain.load_state_dict(dino.state_dict())
    return dino, plain


@pytest.mark.parametrize("size", [(96, 96), (112, 112), (480, 832), (224, 224)])
def test_dino_rule_equals_the_official_interpolation(vit_pair, size):
    dino, plain = vit_pair
    images = torch.randn(2, 3, *size)
    with torch.no_grad():
        reference = dino_reference_tokens(dino, images)
        assert (dino.forward_features(images) - reference).abs().max() <= 1e-6
        timm_gap = (plain.forward_features(images)[:, 0] - reference[:, 0]).abs().max()
    # timm's antialiased resize is another network at local-crop sizes; at 224 px they are the same.
    if size in ((96, 96), (112, 112)):
        assert timm_gap > 1e-2
    elif size == (224, 224):
        assert timm_gap <= 1e-6


def test_state_dict_stays_a_plain_timm_vits():
    import timm

    vit = BackboneSpec("vit_tiny_patch16_224", {"depth": 1}).create()
    plain = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0, depth=1)
    assert isinstance(vit, type(plain)) and vit.pos_embed_resize == "dino"
    plain.load_state_dict(vit.state_dict())  # strict: the same keys and shapes
    with pytest.raises(ValueError, match="unknown position-embedding rule"):
        with_pos_embed_resize(plain, "bilinear")


def official_videomae_sinusoid(n_position, d_hid):
    """MCG-NJU/VideoMAE `get_sinusoid_encoding_table`, as its paper defines it: angle p / 10000^(2*(j//2)/d),
    sine on even channels, cosine on odd ones."""
    table = np.array([[p / np.power(10000, 2 * (j // 2) / d_hid) for j in range(d_hid)] for p in range(n_position)])
    table[:, 0::2] = np.sin(table[:, 0::2])
    table[:, 1::2] = np.cos(table[:, 1::2])
    return torch.tensor(table, dtype=torch.float32)


def test_sinusoid_table_and_rule_follow_videomae():
    assert torch.allclose(sinusoid_table(50, 24), official_videomae_sinusoid(50, 24), atol=1e-6)
    vit = BackboneSpec(
        "vit_tiny_patch16_224",
        {"embed_dim": 24, "depth": 1, "num_heads": 2, "class_token": False, "global_pool": "avg", "img_size": 32},
        pos_embed="sinusoid",
    ).create()
    vit.pos_embed.data.copy_(sinusoid_table(4, 24).unsqueeze(0))
    captured = {}
    vit.pos_drop.register_forward_hook(lambda module, args, out: captured.update(tokens=out))
    images = torch.randn(1, 3, 48, 64)  # a 3 x 4 grid: the table of 12 positions, not a resized 2 x 2 one
    vit(images)
    patches = vit.patch_embed(images).flatten(1, 2)
    assert torch.allclose(captured["tokens"], patches + sinusoid_table(12, 24), atol=1e-6)
