"""Attention maps as DINO's `visualize_attention.py` makes them: the last block's [CLS] -> patch attention of every
head, upsampled (nearest) to the image, one row per image and one column per head, optionally thresholded to the
patches that hold a given share of the attention mass (DINO's figures keep 60%).

As DINO: each image is resized to ``image_size`` x ``image_size`` (its default ``--image_size (480, 480)``;
torchvision's bilinear Resize of the PIL image), normalised with ImageNet's mean and std, then cropped at the top
left to a multiple of the patch size; at 480 px a ViT trained at 224 px resizes its position table by DINO's
`interpolate_pos_encoding` (`wtours.trainers.evaluation.features.load_encoder`). The threshold keeps a patch when the
attention of it and of every weaker patch adds up to more than 1 - mass (DINO's ascending cumulative sum).

Only the drawing differs: DINO saves one file per head and overlays a thresholded mask in a random colour with its
contour; here one grid shows every head, a thresholded tile showing the image inside the kept patches and dimmed
outside. DINO's single-number form (``--image_size 480``: the short side to 480, aspect kept) is not offered: the
grid needs one tile size.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from wtours.errors import WtoursError

# Outside the kept patches a thresholded tile shows the image at this brightness.
DIMMED_BRIGHTNESS = 0.25


def attention_mass_mask(attention: torch.Tensor, mass: float = 0.6) -> torch.Tensor:
    """True for the patches DINO's threshold keeps along the last dimension ((heads, patches) gives one set per
    head): sorted ascending and normalised, those whose cumulative attention exceeds 1 - ``mass``, i.e. the
    fewest strongest patches holding more than ``mass`` of it. The arithmetic is DINO's, so boundary cases
    round as there."""
    if not 0.0 < mass <= 1.0:
        raise WtoursError(f"attention mass must be in (0, 1], got {mass}")
    ranked, order = torch.sort(attention, dim=-1)
    ranked = ranked / torch.sum(ranked, dim=-1, keepdim=True)
    keep_ranked = torch.cumsum(ranked, dim=-1) > (1 - mass)
    return torch.zeros_like(keep_ranked).scatter(-1, order, keep_ranked)


def cls_attention_maps(model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    """(batch, heads, rows, cols) [CLS] -> patch attention of the last block of a timm ViT."""
    from wtours.trainers.training.attention import last_block_attention

    with torch.no_grad():
        result = last_block_attention(model, images)
    rows, cols = result.patch_grid
    return result.cls_to_patches.reshape(*result.cls_to_patches.shape[:2], rows, cols)


def colorize(values: np.ndarray, colormap: str = "viridis") -> np.ndarray:
    """A 2-D map rescaled to [0, 1] and coloured: (h, w) -> (h, w, 3) uint8."""
    from matplotlib import colormaps

    low, high = float(values.min()), float(values.max())
    scaled = (values - low) / (high - low) if high > low else np.zeros_like(values)
    return (colormaps[colormap](scaled)[..., :3] * 255).round().astype(np.uint8)


def render_attention_grid(
    images: np.ndarray, maps: torch.Tensor, patch_size: int, mass: float | None = None
) -> np.ndarray:
    """Compose the grid: images (batch, H, W, 3) uint8 and maps (batch, heads, H/p, W/p) -> one uint8 RGB
    array (batch*H, (heads+1)*W, 3): each row the image, then one tile per head. Without ``mass`` a tile is
    the coloured attention map; with it, the image with the patches outside the kept mass dimmed."""
    batch, heads = maps.shape[:2]
    height, width = images.shape[1:3]
    grid = np.zeros((batch * height, (heads + 1) * width, 3), dtype=np.uint8)
    keep = attention_mass_mask(maps.flatten(2), mass).reshape(maps.shape) if mass is not None else None
    block = np.ones((patch_size, patch_size))
    for row in range(batch):
        top = row * height
        grid[top : top + height, :width] = images[row]
        for head in range(heads):
            left = (head + 1) * width
            if keep is None:
                tile = colorize(np.kron(maps[row, head].float().cpu().numpy(), block))
            else:
                kept = np.kron(keep[row, head].cpu().numpy(), block).astype(bool)[..., None]
                tile = np.where(kept, images[row], (images[row] * DIMMED_BRIGHTNESS).astype(np.uint8))
            grid[top : top + height, left : left + width] = tile
    return grid


def load_square_image(path: Path, size: int, patch_size: int = 1) -> tuple[torch.Tensor, np.ndarray]:
    """An image as DINO's `visualize_attention.py` prepares it: resized to size x size (torchvision's bilinear
    Resize of the PIL image), normalised, cropped at the top left to a multiple of ``patch_size``. Returns the
    (3, H, W) tensor and the uint8 RGB pixels (H, W, 3) it was made from."""
    from PIL import Image, UnidentifiedImageError
    from torchvision import transforms

    from wtours.trainers.training.views import IMAGENET_MEAN, IMAGENET_STD

    try:
        with Image.open(path) as image:
            resized = transforms.Resize((size, size))(image.convert("RGB"))
    except (FileNotFoundError, UnidentifiedImageError, OSError) as err:
        raise WtoursError(f"{path}: not a readable image ({err.__class__.__name__})") from None
    tensor = transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)(transforms.ToTensor()(resized))
    side = size - size % patch_size
    return tensor[:, :side, :side], np.asarray(resized)[:side, :side]


def write_attention_grid(
    weights: Path,
    image_paths: Sequence[Path],
    out: Path,
    *,
    arch: str | None = None,
    image_size: int = 480,
    mass: float | None = None,
    device: str = "auto",
) -> list[Path]:
    """Load the encoder (safetensors, or a run folder holding its exported encoder), draw the attention grid
    of ``image_paths`` (each prepared by `load_square_image`; tiles of ``image_size`` rounded down to the patch
    size) and write it as ``out`` with the suffixes ``.png`` and ``.pdf``, atomically. Returns the two paths."""
    from PIL import Image

    from wtours.store import atomic_write_bytes
    from wtours.trainers.evaluation.features import load_encoder, patch_size_of, pick_device

    if not image_paths:
        raise WtoursError("give at least one image")
    model = load_encoder(arch, weights)
    patch_size = patch_size_of(model)
    if image_size < patch_size:
        raise WtoursError(f"--image-size {image_size} is smaller than one patch ({patch_size} px)")
    torch_device = pick_device(device)
    model = model.to(torch_device)
    pixels, maps = [], []
    for path in image_paths:  # one image at a time: a 480 px ViT-B forward fits anywhere
        tensor, rgb = load_square_image(Path(path), image_size, patch_size)
        maps.append(cls_attention_maps(model, tensor[None].to(torch_device)).cpu())
        pixels.append(rgb)
    grid = Image.fromarray(render_attention_grid(np.stack(pixels), torch.cat(maps), patch_size, mass))
    written = []
    out = Path(out)
    for path, image_format in ((out.with_suffix(".png"), "PNG"), (out.with_suffix(".pdf"), "PDF")):
        buffer = io.BytesIO()
        grid.save(buffer, format=image_format)
        atomic_write_bytes(path, buffer.getvalue())
        written.append(path)
    return written
