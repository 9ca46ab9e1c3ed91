"""What the engine trains on: a map-style dataset whose items hold ``frames`` (uint8 [T, 3, H, W]).

The curated path is ``wtours.pipelines.clipdata.ClipDataset`` (clips of the curated proxies); the
small-data path (tests, the demo, a quick look at a few videos) decodes frames straight into memory.
The order of items, split across processes and resumable mid-epoch, is ``ClipSampler``'s in both cases.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from wtours.trainers.config import DataConfig


class FramesDataset(Dataset):
    """Clips held in memory (tests, the demo): ``frames`` uint8 [N, T, 3, H, W]."""

    def __init__(self, frames: torch.Tensor):
        if frames.dtype != torch.uint8 or frames.ndim != 5:
            raise ValueError("frames must be uint8 [N, T, 3, H, W]")
        self.frames = frames

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {"frames": self.frames[index], "clip": index}


def decode_frames(
    video_paths: list[Path],
    *,
    every: int = 30,
    short_side: int = 96,
    frames_per_clip: int = 1,
    max_frames: int = 2048,
) -> FramesDataset:
    """Every ``every``-th frame of the videos, resized to ``short_side``, held in memory and grouped into
    clips of ``frames_per_clip`` consecutive sampled frames (so frames of a clip are ``every`` apart).

    The small-data path (tests, the demo, runs without a curated clip index): ``max_frames`` bounds the
    memory whatever the videos' length.
    """
    import av

    from wtours.errors import WtoursError

    clips: list[torch.Tensor] = []
    total = 0
    for path in video_paths:
        try:
            container = av.open(str(path))
        except (OSError, av.error.FFmpegError) as err:
            raise WtoursError(f"{path}: cannot open video ({err.__class__.__name__})") from None
        frames: list[torch.Tensor] = []
        with container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for index, frame in enumerate(container.decode(stream)):
                if index % every:
                    continue
                scale = short_side / min(frame.width, frame.height)
                width, height = round(frame.width * scale / 2) * 2, round(frame.height * scale / 2) * 2
                rgb = frame.reformat(width=width, height=height, format="rgb24").to_ndarray()
                frames.append(torch.from_numpy(rgb).permute(2, 0, 1))
                total += 1
                if total >= max_frames:
                    break
        usable = len(frames) - len(frames) % frames_per_clip
        clips += [torch.stack(frames[i : i + frames_per_clip]) for i in range(0, usable, frames_per_clip)]
        if total >= max_frames:
            break
    if not clips:
        names = ", ".join(str(p) for p in video_paths) or "no videos"
        raise WtoursError(f"no clip of {frames_per_clip} frame(s) every {every} frames decoded from {names}")
    return FramesDataset(torch.stack(clips))


def clip_dataset(config: DataConfig, seed: int) -> Dataset:
    """The curated clips of ``config.data_dir`` (run ``wtours curate`` first)."""
    from wtours.pipelines.clipdata import ClipDataset

    return ClipDataset(
        config.data_dir,
        config.video_ids,
        frames_per_clip=config.frames_per_clip,
        stride=config.stride,
        proxy_short_side=config.proxy_short_side,
        mode=config.mode,
        filters=config.filters,
        seed=seed,
    )
