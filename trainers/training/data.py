"""What the engine trains on: a map-style dataset whose items hold ``frames`` (uint8 [T, 3, H, W]).

The curated path is ``wtours.pipelines.clipdata.ClipDataset`` (clips of the curated proxies); the
small-data path (tests, the demo, a quick look at a few videos) decodes frames straight into memory.
The order of items, split across processes and resumable mid-epoch, is ``ClipSampler``'s in both cases.
Clips of different sizes (a 16:9 and a 2.39:1 source, a portrait phone video) batch together: ``collate_clips``
crops them to the batch's common size.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset, default_collate

from wtours.trainers.training.config import DataConfig, TrainConfig


def collate_clips(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Batch dataset items whose ``frames`` may differ in height and width: each clip is cropped, centred, to
    the smallest height and the smallest width in the batch, then stacked as uint8 [B, T, 3, H, W].

    Centred, not random: the views that follow (random resized crops, flips) are where randomness belongs,
    seeded per step, so a resumed run stays bit-exact; a crop drawn here, inside a loader worker, would
    depend on the worker's seed. Cropped, not resized: objects keep their scale and shape. The cost is the
    borders of the wider clips in a mixed batch (a 2.39:1 clip beside 16:9 ones loses a quarter of its
    width, a portrait clip beside landscape ones is cut to a square); a batch of one shape is untouched.
    """
    heights = {item["frames"].shape[-2] for item in items}
    widths = {item["frames"].shape[-1] for item in items}
    if len(heights) > 1 or len(widths) > 1:
        height, width = min(heights), min(widths)
        items = [{**item, "frames": center_crop(item["frames"], height, width)} for item in items]
    return default_collate(items)


def center_crop(frames: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """The centred ``height`` x ``width`` window of ``frames`` [..., H, W] (a view, no copy)."""
    top = (frames.shape[-2] - height) // 2
    left = (frames.shape[-1] - width) // 2
    return frames[..., top : top + height, left : left + width]


class FramesDataset(Dataset):
    """Clips held in memory (tests, the demo): ``frames`` uint8 [N, T, 3, H, W], or a list of uint8
    [T, 3, H, W] clips whose sizes differ (several videos of different aspect ratios)."""

    def __init__(self, frames: torch.Tensor | Sequence[torch.Tensor]):
        clips = frames if isinstance(frames, torch.Tensor) else list(frames)
        if isinstance(clips, torch.Tensor):
            valid = clips.dtype == torch.uint8 and clips.ndim == 5
        else:
            valid = all(clip.dtype == torch.uint8 and clip.ndim == 4 for clip in clips)
        if not valid:
            raise ValueError("frames must be uint8 [N, T, 3, H, W] or a list of uint8 [T, 3, H, W]")
        self.frames = clips

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
            if not container.streams.video:
                raise WtoursError(f"{path}: no video stream (an audio file?)")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            try:
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
            except av.error.FFmpegError as err:
                raise WtoursError(f"{path}: decoding failed after {len(frames)} sampled frames "
                                  f"({err.__class__.__name__}); is the file truncated?") from None  # fmt: skip
        usable = len(frames) - len(frames) % frames_per_clip
        clips += [torch.stack(frames[i : i + frames_per_clip]) for i in range(0, usable, frames_per_clip)]
        if total >= max_frames:
            break
    if not clips:
        names = ", ".join(str(p) for p in video_paths) or "no videos"
        raise WtoursError(f"no clip of {frames_per_clip} frame(s) every {every} frames decoded from {names}")
    if len({clip.shape for clip in clips}) == 1:
        return FramesDataset(torch.stack(clips))
    return FramesDataset(clips)  # videos of different sizes: cropped to a common size per batch


def training_data(config: TrainConfig, videos: Sequence[Path] | None = None) -> Dataset:
    """What ``wtours pretrain`` trains on: the curated clips of ``config.data``, or with ``videos`` every
    ``data.stride``-th frame decoded from them into memory (a quick look, not hours of footage)."""
    if videos:
        return decode_frames(
            list(videos), every=config.data.stride, short_side=config.data.proxy_short_side or 256,
            frames_per_clip=config.data.frames_per_clip,
        )  # fmt: skip
    return clip_dataset(config.data, config.run.seed)


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


class FrameClips(Dataset):
    """Clips of ``frames_per_clip`` frames ``stride`` apart starting at every frame of in-memory ``frames``
    (uint8 [N, 3, H, W]) — the DoRA release's sampling, any start — that stay inside one ``segment``.

    ``segments`` are [start, end) frame ranges (shots: a clip never crosses a cut, as the curated index); None
    is one segment of all the frames. The small-data form of ``ClipDataset(mode="any_start")``.
    """

    def __init__(
        self,
        frames: torch.Tensor,
        frames_per_clip: int,
        stride: int,
        segments: Sequence[tuple[int, int]] | None = None,
    ):
        if frames.dtype != torch.uint8 or frames.ndim != 4:
            raise ValueError("frames must be uint8 [N, 3, H, W]")
        span = (frames_per_clip - 1) * stride
        ranges = segments if segments is not None else [(0, len(frames))]
        starts = [start for first, end in ranges for start in range(first, end - span)]
        if not starts:
            raise ValueError(f"no clip of {frames_per_clip} frames {stride} apart fits in any segment")
        self.frames = frames
        self.starts = torch.tensor(starts)
        self.offsets = torch.arange(frames_per_clip) * stride

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {"frames": self.frames[self.starts[index] + self.offsets], "clip": index}
