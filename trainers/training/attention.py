"""Explicit attention of a timm ViT's last block, for attention maps and DoRA's object discovery.

Training runs fused attention (SDPA), which never materialises the attention matrix. This helper runs
the blocks before the last one as usual, then recomputes the last block's attention from its qkv
projection: the same numbers SDPA uses, now visible.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class LastBlockAttention:
    """For a batch of B images with N tokens (prefix tokens first, then P patches), H heads of size d."""

    cls_to_patches: torch.Tensor  # [B, H, P] softmax attention of [CLS] to every patch, per head
    attention: torch.Tensor  # [B, H, N, N] full attention of the last block
    q: torch.Tensor  # [B, H, N, d] queries of the last block (after its q-norm)
    k: torch.Tensor  # [B, H, N, d] keys of the last block (after its k-norm)
    block_input: torch.Tensor  # [B, N, D] output of the second-last block
    tokens: torch.Tensor  # [B, N, D] final normed tokens, as forward_features returns
    patch_grid: tuple[int, int]  # (rows, cols) of patches, to reshape P into a map


def last_block_attention(vit: nn.Module, images: torch.Tensor) -> LastBlockAttention:
    """Run ``vit`` (a timm VisionTransformer) on ``images`` and expose its last block's attention."""
    tokens = vit.patch_embed(images)
    tokens = vit._pos_embed(tokens)
    tokens = vit.patch_drop(tokens)
    tokens = vit.norm_pre(tokens)
    for block in vit.blocks[:-1]:
        tokens = block(tokens)
    block_input = tokens
    last = vit.blocks[-1]
    attn = last.attn
    batch, n_tokens, _ = block_input.shape
    qkv = attn.qkv(last.norm1(block_input)).reshape(batch, n_tokens, 3, attn.num_heads, attn.head_dim)
    q, k, _ = qkv.permute(2, 0, 3, 1, 4).unbind(0)
    q, k = attn.q_norm(q), attn.k_norm(k)
    attention = ((q * attn.scale) @ k.transpose(-2, -1)).softmax(dim=-1)
    final = vit.norm(last(block_input))
    prefix = vit.num_prefix_tokens
    height, width = images.shape[-2:]
    patch_h, patch_w = vit.patch_embed.patch_size
    return LastBlockAttention(
        cls_to_patches=attention[:, :, 0, prefix:],
        attention=attention,
        q=q,
        k=k,
        block_input=block_input,
        tokens=final,
        patch_grid=(height // patch_h, width // patch_w),
    )
