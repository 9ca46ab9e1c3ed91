"""``wtours eval tracks``: the objects DoRA's teacher discovers on a clip's first frame and tracks through it.

Runs exactly the training-time discovery (`wtours.trainers.training.dora.discover_and_track`) on T frames of a
video, then draws the k object masks over the T frames: a PNG strip (row 0 the frames, row j the frames
with object j kept and the rest dimmed) and an animated GIF (all objects overlaid in colour, one frame
per clip frame). Works with any run's checkpoint (any step) or an exported encoder.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from wtours.errors import WtoursError

# Distinct, colour-blind-friendly object colours (Okabe-Ito), RGB.
OBJECT_COLOURS = [(230, 159, 0), (86, 180, 233), (0, 158, 115), (240, 228, 66), (0, 114, 178), (213, 94, 0)]


@dataclass
class ClipTracks:
    """One clip's discovered objects: the frames as the encoder saw them and a mask per object and frame."""

    frames: torch.Tensor  # uint8 [T, 3, H, W]
    masks: torch.Tensor  # bool [k, T, H, W]
    heads: list[int]  # the last block's heads whose [CLS] attention seeded each object


def load_teacher_encoder(weights: Path) -> nn.Module:
    """The encoder to track with: a run folder (its checkpoint's teacher, else its exported encoder), a
    ``checkpoint.pt`` (the teacher's backbone at that step) or an exported ``encoder.safetensors``."""
    from wtours.store import RunDir
    from wtours.trainers.training.checkpoint import load_method

    weights = Path(weights)
    if weights.is_dir():
        run = RunDir(weights)
        found = [path for path in (run.checkpoint_path, run.encoder_path) if path.is_file()]
        if not found:
            raise WtoursError(
                f"{weights}: neither {run.checkpoint_path.name} nor {run.encoder_path.name} in this folder"
            )
        weights = found[0]
    if weights.suffix == ".safetensors":
        from wtours.trainers.evaluation.features import load_encoder

        return load_encoder(None, weights)
    method, config = load_method(weights)
    if method.teacher is None:
        raise WtoursError(f"{weights}: a {config.method} checkpoint has no teacher to track with")
    return method.encoder().eval()


@torch.no_grad()
def track_clip(
    encoder: nn.Module,
    frames_uint8: torch.Tensor,
    *,
    n_objects: int = 3,
    heads: list[int] | None = None,
    seed: int = 0,
    sinkhorn_iterations: int = 30,
    sinkhorn_epsilon: float = 0.05,
) -> ClipTracks:
    """Discover ``n_objects`` on frame 0 of ``frames_uint8`` [T, 3, H, W] and track them (as in training,
    with per-clip mask thresholds). ``heads`` picks the seeding heads; by default ``seed`` draws them."""
    from wtours.trainers.training.dora import discover_and_track, object_masks
    from wtours.trainers.training.views import normalize

    n_heads = encoder.blocks[-1].attn.num_heads
    if heads is None:
        if n_objects > n_heads:
            raise WtoursError(f"--objects {n_objects}: the encoder's last block has only {n_heads} heads")
        heads = torch.randperm(n_heads, generator=torch.Generator().manual_seed(seed))[:n_objects].tolist()
    if not heads or any(not 0 <= head < n_heads for head in heads):
        raise WtoursError(f"--heads {heads}: each must be a head of the last block, 0..{n_heads - 1}")
    device = next(encoder.parameters()).device
    images = normalize(frames_uint8.to(device).float() / 255).unsqueeze(0)
    objects, _ = discover_and_track(
        encoder, images, torch.tensor(heads), iterations=sinkhorn_iterations, epsilon=sinkhorn_epsilon
    )
    masks = object_masks(objects.tracks, objects.patch_grid, tuple(frames_uint8.shape[-2:]))[0]
    return ClipTracks(frames_uint8.cpu(), masks.bool().cpu(), list(heads))


def _colour(index: int) -> np.ndarray:
    return np.array(OBJECT_COLOURS[index % len(OBJECT_COLOURS)], dtype=np.float32)


def strip_image(tracks: ClipTracks) -> np.ndarray:
    """RGB uint8 grid: T columns; row 0 the frames, row 1 + j the frames with object j in its colour and
    everything else dimmed to a third."""
    frames = tracks.frames.permute(0, 2, 3, 1).numpy().astype(np.float32)  # [T, H, W, 3]
    rows = [frames]
    for j, masks in enumerate(tracks.masks.numpy()):
        keep = masks[..., None]
        tinted = 0.6 * frames + 0.4 * _colour(j)
        rows.append(np.where(keep, tinted, frames / 3))
    grid = np.concatenate([np.concatenate(list(row), axis=1) for row in rows], axis=0)
    return grid.clip(0, 255).astype(np.uint8)


def overlay_frames(tracks: ClipTracks) -> list[np.ndarray]:
    """One RGB uint8 image per frame with every object's mask blended in its colour."""
    frames = tracks.frames.permute(0, 2, 3, 1).numpy().astype(np.float32)
    for j, masks in enumerate(tracks.masks.numpy()):
        frames = np.where(masks[..., None], 0.55 * frames + 0.45 * _colour(j), frames)
    return [frame.clip(0, 255).astype(np.uint8) for frame in frames]


def write_tracks(tracks: ClipTracks, out_dir: Path, *, name: str = "tracks", frame_ms: int = 500) -> tuple[Path, Path]:
    """``<out_dir>/<name>.png`` (the strip) and ``<out_dir>/<name>.gif`` (looping overlay), written atomically."""
    from PIL import Image

    from wtours.store import atomic_path

    strip_path, gif_path = out_dir / f"{name}.png", out_dir / f"{name}.gif"
    with atomic_path(strip_path) as tmp:
        Image.fromarray(strip_image(tracks)).save(tmp, format="PNG")
    pictures = [Image.fromarray(frame) for frame in overlay_frames(tracks)]
    with atomic_path(gif_path) as tmp:
        pictures[0].save(tmp, format="GIF", save_all=True, append_images=pictures[1:], duration=frame_ms, loop=0)
    return strip_path, gif_path


def eval_tracks(
    weights: Path,
    video: Path,
    out_dir: Path,
    *,
    start_frame: int = 0,
    frames_per_clip: int = 8,
    stride: int = 60,
    height: int = 224,
    n_objects: int = 3,
    heads: list[int] | None = None,
    seed: int = 0,
    device: str = "auto",
    name: str = "tracks",
) -> tuple[Path, Path, ClipTracks]:
    """Body of ``wtours eval tracks``: load the encoder, read the clip, discover and track, draw both pictures."""
    from wtours.trainers.evaluation.clips import read_clip
    from wtours.trainers.evaluation.features import patch_size_of, pick_device

    encoder = load_teacher_encoder(weights).to(pick_device(device))
    patch_size = patch_size_of(encoder)
    clip = read_clip(
        video, start_frame=start_frame, frames_per_clip=frames_per_clip, stride=stride, height=height,
        min_width=patch_size,
    )  # fmt: skip
    clip = clip[..., : clip.shape[-2] // patch_size * patch_size, : clip.shape[-1] // patch_size * patch_size]
    tracks = track_clip(encoder, clip, n_objects=n_objects, heads=heads, seed=seed)
    strip_path, gif_path = write_tracks(tracks, out_dir, name=name)
    return strip_path, gif_path, tracks
