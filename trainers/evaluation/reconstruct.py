"""`wtours eval reconstruct`: what a VideoMAE run fills in — one clip as an image grid of three rows,
the original frames, the frames as the encoder sees them (hidden tubes in grey), and the reconstruction
(visible tubelets kept, hidden ones predicted)::

    write_reconstruction(Path("runs/videomae-vits16"), Path("data/videos/venice.mp4"), Path("venice.png"),
                         start_frame=3600)

The clip is the one the run trained on (its ``data.frames_per_clip`` frames at ``data.stride``), the
central square of the frames resized to the run's crop size; the mask is drawn from ``seed``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from wtours.errors import WtoursError


def load_videomae_run(run_dir: Path):
    """The trained VideoMAE method of ``run_dir`` (its checkpoint and the config saved inside it), in eval mode."""
    from wtours.store import RunDir
    from wtours.trainers.training.checkpoint import load_method

    checkpoint_path = RunDir(Path(run_dir)).checkpoint_path
    if not checkpoint_path.is_file():
        raise WtoursError(f"{run_dir}: no {checkpoint_path.name} here; is it a `wtours pretrain` run folder?")
    method, config = load_method(checkpoint_path)
    if config.method != "videomae":
        raise WtoursError(f"{run_dir}: a {config.method} run; reconstruction needs a videomae run")
    return method, config


def reconstruction_grid(rows: list[torch.Tensor], gap: int = 2) -> np.ndarray:
    """Rows of frames [T, 3, S, S] in [0, 1] -> one uint8 RGB image, frames side by side, white gaps."""
    time, _, height, width = rows[0].shape
    grid = np.full((len(rows) * (height + gap) - gap, time * (width + gap) - gap, 3), 255, dtype=np.uint8)
    for row_number, frames in enumerate(rows):
        pixels = (frames.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
        for column, frame in enumerate(pixels):
            top, left = row_number * (height + gap), column * (width + gap)
            grid[top : top + height, left : left + width] = frame
    return grid


def write_reconstruction(
    run_dir: Path, video: Path, out_path: Path, *, start_frame: int = 0, seed: int = 0
) -> dict[str, float]:
    """Write the grid PNG of one clip (see the module docstring); returns the clip's masked-token loss and
    its mask ratio."""
    from PIL import Image

    from wtours.store import atomic_path
    from wtours.trainers.evaluation.clips import read_clip
    from wtours.trainers.training.videomae import masked_reconstruction_loss, pixels_from_clip, reconstruct

    method, config = load_videomae_run(run_dir)
    crop_size = method.options.crop_size
    frames = read_clip(
        video,
        start_frame=start_frame,
        frames_per_clip=config.data.frames_per_clip,
        stride=config.data.stride,
        short_side=crop_size,
    )
    pixels = pixels_from_clip(frames.unsqueeze(0), crop_size)
    result = reconstruct(method, pixels, torch.Generator().manual_seed(seed))
    grid = reconstruction_grid([result[name][0] for name in ("original", "masked", "reconstructed")])
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_path) as tmp:
        Image.fromarray(grid).save(tmp, format="PNG")
    return {
        "loss": float(masked_reconstruction_loss(result["prediction"], result["targets"], result["mask"])),
        "mask_ratio": float(result["mask"].float().mean()),
    }
