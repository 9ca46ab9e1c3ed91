"""What the engine trains on: a map-style dataset whose items hold ``frames`` (uint8 [T, 3, H, W]),
and a sampler that can restart in the middle of an epoch."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset, Sampler


class ResumableSampler(Sampler[int]):
    """A fresh permutation per epoch (from seed + epoch), this process's share of it, from ``position``.

    Every process sees ``len(self)`` indices per epoch (the permutation is padded by wrapping so that
    ranks take equal shares); ``position`` skips samples already trained on after a resume.
    """

    def __init__(
        self, dataset_size: int, *, seed: int = 0, rank: int = 0, world_size: int = 1, shuffle: bool = True
    ):
        self.dataset_size = dataset_size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.shuffle = shuffle
        self.epoch = 0
        self.position = 0

    def __len__(self) -> int:
        return -(-self.dataset_size // self.world_size)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.position = 0

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.position = int(state["epoch"]), int(state["position"])

    def __iter__(self) -> Iterator[int]:
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            order = torch.randperm(self.dataset_size, generator=generator).tolist()
        else:
            order = list(range(self.dataset_size))
        total = len(self) * self.world_size
        order = (order * (total // max(len(order), 1) + 1))[:total]
        mine = order[self.rank :: self.world_size]
        yield from mine[self.position :]


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
    video_paths: list[Path], *, every: int = 30, short_side: int = 96, max_frames: int = 2048
) -> FramesDataset:
    """Every ``every``-th frame of the videos, resized to ``short_side``, held in memory as 1-frame clips.

    The small-data path (tests, the demo, runs without a curated clip index): ``max_frames`` bounds the
    memory whatever the videos' length.
    """
    import av

    from wtours.errors import WtoursError

    frames: list[torch.Tensor] = []
    for path in video_paths:
        try:
            container = av.open(str(path))
        except (OSError, av.error.FFmpegError) as err:
            raise WtoursError(f"{path}: cannot open video ({err.__class__.__name__})") from None
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
                if len(frames) >= max_frames:
                    break
        if len(frames) >= max_frames:
            break
    if not frames:
        raise WtoursError(f"no frames decoded from {', '.join(str(p) for p in video_paths) or 'no videos'}")
    return FramesDataset(torch.stack(frames).unsqueeze(1))
