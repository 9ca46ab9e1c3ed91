"""The last block's attention, recomputed explicitly, matches the fused forward pass of timm."""

from __future__ import annotations

import timm
import torch

from wtours.trainers.training.attention import last_block_attention


def test_explicit_attention_matches_the_fused_model() -> None:
    torch.manual_seed(0)
    vit = timm.create_model(
        "vit_tiny_patch16_224", num_classes=0, dynamic_img_size=True, embed_dim=48, depth=2, num_heads=3
    ).eval()
    assert vit.blocks[-1].attn.fused_attn  # the model itself uses SDPA
    images = torch.randn(2, 3, 48, 64)
    with torch.no_grad():
        result = last_block_attention(vit, images)
        expected_tokens = vit.forward_features(images)
        # The attention, applied to the block's values, must give the fused attention's output.
        attn = vit.blocks[-1].attn
        normed = vit.blocks[-1].norm1(result.block_input)
        values = attn.qkv(normed).reshape(2, -1, 3, 3, 16).permute(2, 0, 3, 1, 4)[2]
        explicit_out = attn.proj((result.attention @ values).transpose(1, 2).reshape(2, -1, 48))
        fused_out = attn(normed)
    assert result.patch_grid == (3, 4)
    assert result.cls_to_patches.shape == (2, 3, 12)
    assert result.q.shape == result.k.shape == (2, 3, 13, 16)
    assert torch.allclose(result.attention.sum(dim=-1), torch.ones(2, 3, 13), atol=1e-5)
    assert torch.allclose(result.tokens, expected_tokens, atol=1e-5)
    assert torch.allclose(explicit_out, fused_out, atol=1e-5)
