"""Attention-map grids: the mass threshold on known vectors, maps at 480 px against DINO's
`visualize_attention.py` (transcribed in tests/trainers/dino_official.py), and a grid drawn from a tiny ViT."""

from __future__ import annotations

import json
from pathlib import Path

import dino_official as official
import numpy as np
import pytest
import torch
from PIL import Image

from wtours.errors import WtoursError
from wtours.trainers.evaluation.attention_maps import (
    DIMMED_BRIGHTNESS,
    attention_mass_mask,
    cls_attention_maps,
    load_square_image,
    render_attention_grid,
    write_attention_grid,
)
from wtours.trainers.evaluation.features import load_encoder

TINY_VIT = {"embed_dim": 32, "depth": 2, "num_heads": 2, "patch_size": 8}


def test_mass_mask_keeps_the_fewest_patches_reaching_the_mass():
    attention = torch.tensor([0.1, 0.5, 0.1, 0.3])
    assert attention_mass_mask(attention, 0.6).tolist() == [False, True, False, True]  # 0.5 alone is short
    assert attention_mass_mask(attention, 0.45).tolist() == [False, True, False, False]
    assert attention_mass_mask(attention, 1.0).all()
    with pytest.raises(WtoursError):
        attention_mass_mask(attention, 0.0)


def test_mass_mask_is_dino_threshold_bit_for_bit():
    """Many heads whose masses sit on the threshold: DINO's ascending cumulative sum decides, rounding included."""
    generator = torch.Generator().manual_seed(0)
    attention = torch.rand(64, 200, generator=generator).pow(4).softmax(dim=-1)
    attention[:8] = torch.full((8, 200), 1 / 200)  # equal patches: a cumulative sum crossing 1 - mass in steps
    for mass in (0.3, 0.6, 0.9, 1.0):
        expected = official.threshold_attention(attention.clone(), mass)
        assert torch.equal(attention_mass_mask(attention, mass), expected), mass


def test_mass_mask_keeps_the_stated_mass_per_head():
    attention = torch.rand(3, 4, 49, generator=torch.Generator().manual_seed(0)).softmax(dim=-1)
    keep = attention_mass_mask(attention, 0.6)
    share = attention / attention.sum(dim=-1, keepdim=True)
    kept_mass = (share * keep).sum(dim=-1)
    smallest_kept = torch.where(keep, share, torch.inf).amin(dim=-1)
    assert (kept_mass >= 0.6 - 1e-6).all()
    assert (kept_mass - smallest_kept < 0.6).all()  # none of the kept patches could be spared


def write_tiny_vit(path: Path, model: torch.nn.Module | None = None, overrides: dict | None = None) -> Path:
    import timm
    from safetensors.torch import save_file

    overrides = overrides or TINY_VIT
    model = model or timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0, **overrides)
    metadata = {"timm_name": "vit_tiny_patch16_224", "kwargs": json.dumps(overrides)}
    save_file({name: tensor.contiguous() for name, tensor in model.state_dict().items()}, str(path), metadata)
    return path


def write_images(folder: Path) -> list[Path]:
    folder.mkdir()
    rng = np.random.default_rng(0)
    paths = []
    for index, (height, width) in enumerate([(40, 60), (50, 30)]):  # sizes differ: both become 32x32
        path = folder / f"{index}.jpg"
        Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def test_attention_grid_png_and_pdf_have_one_tile_per_image_and_head(tmp_path):
    weights = write_tiny_vit(tmp_path / "vit.safetensors")
    images = write_images(tmp_path / "images")
    png, pdf = write_attention_grid(weights, images, tmp_path / "grid.png", image_size=32, device="cpu")
    with Image.open(png) as grid:
        assert grid.size == ((2 + 1) * 32, 2 * 32)  # columns: image + 2 heads; rows: 2 images
    assert pdf.suffix == ".pdf" and pdf.read_bytes().startswith(b"%PDF")


def test_thresholded_grid_keeps_the_image_exactly_on_the_kept_mass(tmp_path):
    weights = write_tiny_vit(tmp_path / "vit.safetensors")
    model = load_encoder(None, weights)
    tensor, pixels = load_square_image(write_images(tmp_path / "images")[0], 32)
    maps = cls_attention_maps(model, tensor[None])
    assert maps.shape == (1, 2, 4, 4)
    assert torch.all(maps.flatten(2).sum(dim=-1) <= 1.0 + 1e-5)  # a share of the softmax over all tokens

    grid = render_attention_grid(pixels[None], maps, patch_size=8, mass=0.6)
    keep = attention_mass_mask(maps.flatten(2), 0.6).reshape(maps.shape)
    for head in range(2):
        tile = grid[:, (head + 1) * 32 : (head + 2) * 32]
        kept = np.kron(keep[0, head].numpy(), np.ones((8, 8))).astype(bool)
        assert np.array_equal(tile[kept], pixels[kept])
        assert np.array_equal(tile[~kept], (pixels[~kept] * DIMMED_BRIGHTNESS).astype(np.uint8))
        assert 0 < kept.sum() < kept.size
    assert np.array_equal(grid[:, :32], pixels)


def test_sizes_off_the_patch_grid_are_cropped_as_dino_does(tmp_path):
    weights = write_tiny_vit(tmp_path / "vit.safetensors")
    png, _ = write_attention_grid(weights, write_images(tmp_path / "images"), tmp_path / "grid.png", image_size=30)
    with Image.open(png) as grid:
        assert grid.size == ((2 + 1) * 24, 2 * 24)  # 30 px -> the top-left 24 px: three whole 8-px patches


def test_attention_at_480_px_equals_dino_visualize_attention(tmp_path):
    """A ViT trained at 224 px on a 480 x 480 input: DINO's transform, position-table resize, last-block attention
    and 60 % threshold, against wtours' maps and masks."""
    import timm

    torch.manual_seed(0)
    overrides = {"embed_dim": 64, "depth": 2, "num_heads": 4}  # patch 16: a 30 x 30 grid from a 14 x 14 table
    timm_model = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0, **overrides).eval()
    weights = write_tiny_vit(tmp_path / "vit.safetensors", timm_model, overrides)
    rng = np.random.default_rng(1)
    coarse = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    path = tmp_path / "photo.jpg"
    Image.fromarray(coarse).resize((700, 500), Image.BICUBIC).save(path, quality=90)

    with Image.open(path) as image:
        img = official.attention_transform((480, 480))(image.convert("RGB"))
    with torch.no_grad():
        expected_maps, expected_keep = official.visualize_attention(
            official.dino_vit_from_timm(timm_model), img, 16, threshold=0.6
        )
    tensor, _ = load_square_image(path, 480, 16)
    assert torch.equal(tensor, img)
    maps = cls_attention_maps(load_encoder(None, weights), tensor[None])[0]
    assert maps.shape == (4, 30, 30)
    assert torch.allclose(maps, expected_maps, rtol=1e-4, atol=1e-7)
    keep = attention_mass_mask(maps.flatten(1), 0.6).reshape(maps.shape)
    assert torch.equal(keep, expected_keep)
    assert 0 < keep.sum() < keep.numel()


def test_bad_inputs_are_one_line_errors(tmp_path):
    weights = write_tiny_vit(tmp_path / "vit.safetensors")
    with pytest.raises(WtoursError, match="not a readable image"):
        write_attention_grid(weights, [tmp_path / "missing.jpg"], tmp_path / "grid.png", image_size=32)
    with pytest.raises(WtoursError, match="smaller than one patch"):
        write_attention_grid(weights, write_images(tmp_path / "images"), tmp_path / "grid.png", image_size=6)
    assert not (tmp_path / "grid.png").exists()
