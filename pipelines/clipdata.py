"""The clip dataset the trainers read: T frames at stride s, from curated proxies, as uint8 tensors.

    dataset = ClipDataset("data", frames_per_clip=8, stride=60, filters=ClipFilters(max_darkness=0.8))
    sampler = ClipSampler(dataset, seed=0, num_replicas=world_size, rank=rank)
    loader = DataLoader(dataset, batch_size=16, sampler=sampler, num_workers=4, persistent_workers=True,
                        collate_fn=collate_clips)
    for epoch in range(start_epoch, epochs):
        sampler.set_epoch(epoch)            # or sampler.set_position(epoch, samples_done) to resume
        for batch in loader: batch["frames"]  # uint8 [B, T, 3, H, W]; augment on the GPU

Two modes: ``"index"`` returns the clips of ``clips/<id>.parquet`` (one per window of the index);
``"any_start"`` samples as the DoRA release does: every frame that starts a valid clip is an item.
Thresholds on the scores (``filters``) are applied here, at training time, never baked into the index.
Each worker process opens its own proxy files on first use; nothing is opened per sample. A batch is
decoded into one buffer that ``collate_clips`` hands over without a copy (``collate_fn=collate_clips``); with
``output="jpeg"`` the workers only read the JPEGs and ``decode_clips`` decodes the batch on the GPU (nvJPEG).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset, Sampler, default_collate, get_worker_info

from wtours.errors import WtoursError
from wtours.pipelines.proxy import ProxyReader
from wtours.store import Store


@dataclass(frozen=True)
class ClipFilters:
    """Training-time thresholds on the clip scores; None keeps every clip."""

    max_darkness: float | None = None  # drop clips darker than this (1 - mean L*/100): 0.8 ~ night
    min_motion: float | None = None  # drop clips stiller than this (mean grey change 0..1): 0.01 ~ a still

    def keep(self, index: pd.DataFrame) -> np.ndarray:
        keep = np.ones(len(index), dtype=bool)
        if self.max_darkness is not None:
            keep &= index["darkness"].to_numpy() <= self.max_darkness
        if self.min_motion is not None:
            keep &= index["motion"].to_numpy() >= self.min_motion
        return keep


class ClipDataset(Dataset):
    """Map-style dataset over the clip indices of ``video_ids`` (default: every ``clips/*.parquet``).

    Item ``i`` is always the same clip: randomness lives in the sampler, whose default seed is ``seed``.
    In ``any_start`` mode the starts that follow an index row's start share its scores for ``filters``.
    """

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        video_ids: Sequence[str] | None = None,
        *,
        frames_per_clip: int = 8,
        stride: int = 60,
        proxy_short_side: int | None = None,
        mode: Literal["index", "any_start"] = "index",
        filters: ClipFilters | dict[str, float] | None = None,
        seed: int = 0,
        output: Literal["frames", "jpeg"] = "frames",
    ) -> None:
        if mode not in ("index", "any_start"):
            raise WtoursError(f"clip dataset mode must be 'index' or 'any_start', got {mode!r}")
        if output not in ("frames", "jpeg"):
            raise WtoursError(f"clip dataset output must be 'frames' or 'jpeg', got {output!r}")
        self.output = output
        self.store = Store.at(data_dir)
        self.frames_per_clip, self.stride, self.mode, self.seed = frames_per_clip, stride, mode, seed
        try:
            self.filters = ClipFilters(**filters) if isinstance(filters, dict) else (filters or ClipFilters())
        except TypeError:
            raise WtoursError(f"clip filters are max_darkness and min_motion, got {sorted(filters)}") from None
        self.video_ids = list(video_ids) if video_ids is not None else self._indexed_videos()
        if not self.video_ids:
            raise WtoursError(f"no clip index under {self.store.clips_dir}; run `wtours curate` first")
        tables, self._proxy_dirs = [], []
        for number, video_id in enumerate(self.video_ids):
            table = self._load_index(video_id)
            short_side = proxy_short_side or (int(table["proxy_short_side"].iloc[0]) if len(table) else 0)
            self._proxy_dirs.append(self.store.proxy_dir(video_id, short_side))
            table = table[self.filters.keep(table)]
            tables.append(pd.DataFrame({"video": number, "clip": table["clip"].to_numpy(),
                                        "start_frame": table["start_frame"].to_numpy(),
                                        "max_shift": table["max_shift"].to_numpy()}))  # fmt: skip
        clips = pd.concat(tables, ignore_index=True)
        self._video = clips["video"].to_numpy(np.int32)
        self._clip = clips["clip"].to_numpy(np.int64)
        self._start = clips["start_frame"].to_numpy(np.int64)
        # any_start: row r owns items [first_item[r], first_item[r + 1]), one per valid start in its run.
        starts_per_row = clips["max_shift"].to_numpy(np.int64) + 1 if mode == "any_start" else np.ones(len(clips))
        self._first_item = np.concatenate([[0], np.cumsum(starts_per_row)]).astype(np.int64)
        self._readers: dict[int, ProxyReader] = {}

    def __len__(self) -> int:
        return int(self._first_item[-1])

    def locate(self, i: int) -> tuple[int, int, int]:
        """(video number in ``video_ids``, start frame, clip number) of item ``i``; reads no frame."""
        if not 0 <= i < len(self):
            raise IndexError(f"clip {i} outside a dataset of {len(self)}")
        row = int(np.searchsorted(self._first_item, i, side="right") - 1)
        start = int(self._start[row] + (i - self._first_item[row]))
        return int(self._video[row]), start, int(self._clip[row])

    def __getitem__(self, i: int) -> dict[str, Any]:
        video, start, clip = self.locate(int(i))
        positions = start + self.stride * np.arange(self.frames_per_clip)
        if self.output == "jpeg":  # decoded later, batched, on the GPU (decode_clips)
            reader = self._reader(video)
            jpeg = [torch.frombuffer(bytearray(reader.read_bytes(int(frame))), dtype=torch.uint8)
                    for frame in positions]  # fmt: skip
            return {"jpeg": jpeg, "video_id": self.video_ids[video], "start_frame": start, "clip": clip}
        frames = self._reader(video).read(positions, channels_first=True)
        return {
            "frames": torch.from_numpy(frames),  # [T, 3, H, W] uint8, contiguous: batching it is one memcpy
            "video_id": self.video_ids[video],
            "start_frame": start,
            "clip": clip,
        }

    def __getitems__(self, indices: Sequence[int]) -> list[dict[str, Any]]:
        """Items ``indices`` at once (what a DataLoader asks for a batch): when their clips have one size, the
        frames are decoded into one [B, T, 3, H, W] buffer, in shared memory inside a DataLoader worker, and
        each item's ``frames`` is a slot of it, which :func:`collate_clips` hands over as the batch with no
        copy. A fresh worker-to-trainer batch otherwise costs a stacking copy into new shared memory, and its
        page faults, about as much again as decoding the JPEGs."""
        located = [self.locate(int(i)) for i in indices]
        readers = [self._reader(video) for video, _, _ in located]
        if self.output == "jpeg" or len({(reader.height, reader.width) for reader in readers}) != 1:
            return [self[int(i)] for i in indices]  # clips of several sizes: the batch is cropped when collated
        shape = (len(indices), self.frames_per_clip, 3, readers[0].height, readers[0].width)
        frames = _batch_buffer(shape)
        pixels = frames.numpy()
        offsets = self.stride * np.arange(self.frames_per_clip)
        for slot, ((_, start, _), reader) in enumerate(zip(located, readers, strict=True)):
            reader.read(start + offsets, channels_first=True, out=pixels[slot])
        return [{"frames": frames[slot], "video_id": self.video_ids[video], "start_frame": start, "clip": clip}
                for slot, (video, start, clip) in enumerate(located)]  # fmt: skip

    def _reader(self, video: int) -> ProxyReader:
        reader = self._readers.get(video)
        if reader is None:
            hint = f"wtours curate --only {self.video_ids[video]}"
            reader = self._readers[video] = ProxyReader(self._proxy_dirs[video], rebuild_hint=hint)
        return reader

    def _indexed_videos(self) -> list[str]:
        return sorted(path.stem for path in self.store.clips_dir.glob("*.parquet"))

    def _load_index(self, video_id: str) -> pd.DataFrame:
        path = self.store.clips_path(video_id)
        if not path.is_file():
            raise WtoursError(f"{video_id}: no clip index at {path}; run `wtours curate --only {video_id}`")
        table = pd.read_parquet(path)
        if len(table) and (int(table["frames_per_clip"].iloc[0]), int(table["stride"].iloc[0])) != (
            self.frames_per_clip, self.stride,
        ):  # fmt: skip
            raise WtoursError(
                f"{path} was built for T={table['frames_per_clip'].iloc[0]}, stride={table['stride'].iloc[0]}, "
                f"not T={self.frames_per_clip}, stride={self.stride}: run `wtours curate --only {video_id} "
                f"--frames-per-clip {self.frames_per_clip} --stride {self.stride}`"
            )
        return table


def collate_clips(items: list[dict[str, Any]]) -> dict[str, Any]:
    """A DataLoader's ``collate_fn`` for :class:`ClipDataset`: the batch's ``frames`` (uint8 [B, T, 3, H, W]) is
    the buffer ``ClipDataset.__getitems__`` decoded them into, with no copy, and inside a worker that buffer is
    reused once the trainer process has let go of it (see :class:`_SharedBatches`); items from anywhere else are
    stacked as ``default_collate`` does (clips of one size). With ``output="jpeg"`` the batch's ``jpeg`` is the
    clips' lists of JPEG tensors, for :func:`decode_clips`."""
    if "jpeg" in items[0]:
        rest = default_collate([{k: v for k, v in item.items() if k != "jpeg"} for item in items])
        return {"jpeg": [item["jpeg"] for item in items], **rest}
    frames = [item["frames"] for item in items]
    batch = _common_buffer(frames)
    if batch is None:
        return default_collate(items)
    rest = default_collate([{k: v for k, v in item.items() if k != "frames"} for item in items])
    slot = _shared_batches().hand_over(batch) if get_worker_info() is not None else None
    return {"frames": batch if slot is None else _HandedOver(batch, _shared_batches().free, slot), **rest}


def decode_clips(jpeg: list[list[torch.Tensor]], device: str | torch.device = "cuda") -> torch.Tensor:
    """A batch of ``output="jpeg"`` clips decoded on ``device`` in one call: uint8 [B, T, 3, H, W].

    On a CUDA device this is nvJPEG (``torchvision.io.decode_jpeg(..., device="cuda")``, batched): the loader's
    workers then only read bytes. On the CPU it is libjpeg-turbo, pixel for pixel what ``output="frames"`` gives.
    """
    from torchvision.io import decode_jpeg

    images = decode_jpeg([image for clip in jpeg for image in clip], device=device)
    return torch.stack(images).view(len(jpeg), len(jpeg[0]), *images[0].shape)


def _batch_buffer(shape: tuple[int, ...]) -> torch.Tensor:
    """An uninitialised uint8 tensor; inside a DataLoader worker one of its reusable shared-memory buffers, so that
    sending it to the trainer process passes a file descriptor, not the pixels."""
    if get_worker_info() is None:
        return torch.empty(shape, dtype=torch.uint8)
    return _shared_batches().take(shape)


class _SharedBatches:
    """A DataLoader worker's batch buffers in shared memory, reused once the trainer process has let go of them.

    Why: fresh shared memory for every batch costs about as much as decoding its JPEGs (the kernel allocates
    and zeroes every page, then it faults in page by page). How it stays safe: a buffer goes to the trainer
    wrapped in :class:`_HandedOver`, whose unpickling there sets a finaliser on the buffer's storage; only when
    every tensor and view of it is gone there does ``free[slot]`` flip back to 1 and the worker write into it
    again. A batch collated by another function never marks its buffer as handed over, so its buffer comes
    back at once (the collate copied it). Memory: ``capacity`` batches per worker at most, beyond which a
    fresh buffer is made as before.
    """

    def __init__(self, capacity: int = 6) -> None:
        self.free = torch.ones(capacity, dtype=torch.uint8).share_memory_()  # 1: the trainer let go of it
        self.buffers: list[torch.Tensor | None] = [None] * capacity
        self.pending: int | None = None  # the slot of the batch being read, until it is handed over
        # Reuse starts once collate_clips has handed a batch over: a collate of one's own that passed the
        # clips on as views, unseen here, must never find their buffer rewritten.
        self.reusing = False
        self.first = True

    def take(self, shape: tuple[int, ...]) -> torch.Tensor:
        size = int(np.prod(shape))
        if self.reusing or self.first:
            self.first = False
            for slot, buffer in enumerate(self.buffers):
                if self.free[slot] and slot != self.pending:
                    if buffer is None or buffer.numel() != size:
                        buffer = self.buffers[slot] = _new_shared(size)
                    self.pending = slot
                    return buffer.view(shape)
        return _new_shared(size).view(shape)

    def hand_over(self, batch: torch.Tensor) -> int | None:
        """The slot of ``batch``'s buffer, marked in use until the trainer lets go of it; None for a fresh one."""
        slot = self.pending
        if slot is None or self.buffers[slot] is None or self.buffers[slot].data_ptr() != batch.data_ptr():
            return None
        self.free[slot], self.pending, self.reusing = 0, None, True
        return slot


_WORKER_BATCHES: _SharedBatches | None = None


def _shared_batches() -> _SharedBatches:
    global _WORKER_BATCHES
    if _WORKER_BATCHES is None:
        _WORKER_BATCHES = _SharedBatches()
    return _WORKER_BATCHES


def _new_shared(size: int) -> torch.Tensor:
    return torch.empty(0, dtype=torch.uint8).set_(torch.UntypedStorage._new_shared(size))


class _HandedOver:
    """A batch buffer on its way to the trainer process: pickled as the tensor (a file descriptor), unpickled as
    the tensor with a finaliser that gives the buffer back to its worker when the last view of it is gone."""

    def __init__(self, batch: torch.Tensor, free: torch.Tensor, slot: int):
        self.batch, self.free, self.slot = batch, free, slot

    def __reduce__(self):
        return _received, (self.batch, self.free, self.slot)


def _received(batch: torch.Tensor, free: torch.Tensor, slot: int) -> torch.Tensor:
    import weakref

    # The storage's Python object lives exactly as long as the storage (PyTorch keeps it for every view).
    weakref.finalize(batch.untyped_storage(), _give_back, free, slot)
    return batch


def _give_back(free: torch.Tensor, slot: int) -> None:
    free[slot] = 1


def _common_buffer(frames: list[torch.Tensor]) -> torch.Tensor | None:
    """The [B, ...] tensor whose slots 0..B-1 ``frames`` are, in order, or None."""
    first = frames[0]
    storage = first.untyped_storage()
    size = first.numel()
    if storage.nbytes() != size * len(frames) * first.element_size():
        return None
    for slot, clip in enumerate(frames):
        if (clip.untyped_storage().data_ptr() != storage.data_ptr() or clip.storage_offset() != slot * size
                or not clip.is_contiguous() or clip.shape != first.shape or clip.dtype != first.dtype):  # fmt: skip
            return None
    return torch.empty(0, dtype=first.dtype).set_(storage).view(len(frames), *first.shape)


class ClipSampler(Sampler[int]):
    """Shuffled clip order that depends only on (seed, epoch), split across ranks, resumable mid-epoch.

    Like ``DistributedSampler``, each rank takes every ``num_replicas``-th item of one shared
    permutation (padded by wrapping so all ranks get the same count unless ``drop_last``).
    To resume, call ``set_position(epoch, samples_already_consumed_by_this_rank)`` — or save
    ``state_dict()`` and ``load_state_dict()`` it; the next ``__iter__`` continues exactly there.
    """

    def __init__(
        self,
        dataset: Dataset | int,
        *,
        seed: int | None = None,
        shuffle: bool = True,
        num_replicas: int = 1,
        rank: int = 0,
        drop_last: bool = False,
    ) -> None:
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} outside 0..{num_replicas - 1}")
        self.length = dataset if isinstance(dataset, int) else len(dataset)
        self.seed = seed if seed is not None else getattr(dataset, "seed", 0)
        self.shuffle, self.num_replicas, self.rank, self.drop_last = shuffle, num_replicas, rank, drop_last
        self.epoch = 0
        self.position = 0  # items of this rank's epoch order already handed out

    @property
    def samples_per_rank(self) -> int:
        if self.drop_last:
            return self.length // self.num_replicas
        return -(-self.length // self.num_replicas)

    def epoch_order(self, epoch: int) -> np.ndarray:
        """This rank's item order for ``epoch`` (the same on every machine for a given seed)."""
        if self.shuffle:
            order = np.random.default_rng([self.seed, epoch]).permutation(self.length)
        else:
            order = np.arange(self.length)
        total = self.samples_per_rank * self.num_replicas
        if total > len(order) and len(order):
            order = np.resize(order, total)  # wrap around, as DistributedSampler pads
        return order[:total][self.rank :: self.num_replicas]

    def set_epoch(self, epoch: int) -> None:
        self.epoch, self.position = epoch, 0

    def set_position(self, epoch: int, index: int) -> None:
        if not 0 <= index <= self.samples_per_rank:
            raise ValueError(f"position {index} outside 0..{self.samples_per_rank}")
        self.epoch, self.position = epoch, index

    def state_dict(self) -> dict[str, int]:
        """Epoch and position. With DataLoader workers the sampler runs ahead of the batches actually
        consumed (prefetching); save ``set_position(epoch, batches_done * batch_size)`` then instead."""
        return {"seed": self.seed, "epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict[str, int]) -> None:
        if state.get("seed", self.seed) != self.seed:
            raise ValueError(f"sampler state is for seed {state['seed']}, this sampler has seed {self.seed}")
        self.set_position(int(state["epoch"]), int(state["position"]))

    def __iter__(self) -> Iterator[int]:
        order = self.epoch_order(self.epoch)
        if self.position >= len(order):  # a finished epoch iterated again without set_epoch: replay it
            self.position = 0
        while self.position < len(order):
            item = int(order[self.position])
            self.position += 1
            yield item

    def __len__(self) -> int:
        """Items the next ``__iter__`` yields (a finished epoch counts in full: it would be replayed)."""
        return self.samples_per_rank - (self.position if self.position < self.samples_per_rank else 0)
