"""ClipDataset and ClipSampler on curated frame-numbered videos: exact frames, determinism, resuming."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils.data import DataLoader

from wtours.errors import WtoursError
from wtours.pipelines import proxy as proxy_module
from wtours.pipelines.clip_index import ClipSpec
from wtours.pipelines.clipdata import ClipDataset, ClipFilters, ClipSampler, collate_clips, decode_clips
from wtours.pipelines.curate import CurateOptions, curate_video
from wtours.pipelines.proxy import ProxySettings
from wtours.sample.numbered import read_frame_number, render_numbered
from wtours.store import Store

T, STRIDE = 4, 10
CUTS = {"a": [137], "b": [60, 61]}  # b: two cuts a frame apart (a one-frame shot)
LENGTHS = {"a": 240, "b": 180}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    store = Store.at(tmp_path_factory.mktemp("clipdata") / "data")
    store.videos_dir.mkdir(parents=True)
    for video_id, n_frames in LENGTHS.items():
        render_numbered(store.video_path(video_id), n_frames=n_frames, width=160, height=96, fps=30, gop=30)
        frame = np.arange(n_frames)
        folder = store.analysis_dir(video_id)
        folder.mkdir(parents=True)
        pd.DataFrame(
            {"frame": frame, "time": frame / 30, "lightness": 20.0 + 60.0 * (frame % 100) / 100,
             "luma": 0.5, "blank": False, "frozen": False}
        ).to_parquet(folder / "frames.parquet")  # fmt: skip
        starts = [0, *CUTS[video_id]]
        shots = {"shot": range(len(starts)), "start_frame": starts, "end_frame": [*starts[1:], n_frames]}
        pd.DataFrame(shots).to_parquet(folder / "shots.parquet")
        options = CurateOptions(ClipSpec(T, STRIDE, start_step=7), ProxySettings(short_side=96, frames_per_shard=64))
        curate_video(store, video_id, options, show_progress=False)
    return store.root


def frame_numbers(item: dict) -> list[int]:
    return [read_frame_number(frame.permute(1, 2, 0).numpy()) for frame in item["frames"]]


@pytest.mark.parametrize("mode", ["index", "any_start"])
def test_every_item_has_exact_frames_and_crosses_no_cut(data_dir: Path, mode: str) -> None:
    dataset = ClipDataset(data_dir, frames_per_clip=T, stride=STRIDE, mode=mode)
    assert dataset.video_ids == ["a", "b"]
    step = 1 if mode == "index" else 5  # any_start has one item per valid start: check a spread of them
    for i in range(0, len(dataset), step):
        item = dataset[i]
        assert item["frames"].dtype == torch.uint8 and item["frames"].shape == (T, 3, 96, 160)
        start = item["start_frame"]
        assert frame_numbers(item) == [start + t * STRIDE for t in range(T)]
        assert not any(start < cut <= start + (T - 1) * STRIDE for cut in CUTS[item["video_id"]])


def test_any_start_draws_every_valid_start_once(data_dir: Path) -> None:
    dataset = ClipDataset(data_dir, frames_per_clip=T, stride=STRIDE, mode="any_start")
    span = (T - 1) * STRIDE + 1
    starts = {(dataset.video_ids[v], s) for v, s, _ in map(dataset.locate, range(len(dataset)))}
    expected = {
        (video_id, s)
        for video_id, n_frames in LENGTHS.items()
        for s in range(n_frames - span + 1)
        if not any(s < cut <= s + span - 1 for cut in CUTS[video_id])
    }
    assert len(starts) == len(dataset)
    assert starts == expected


def test_filters_apply_at_training_time(data_dir: Path) -> None:
    everything = ClipDataset(data_dir, frames_per_clip=T, stride=STRIDE)
    bright = ClipDataset(data_dir, frames_per_clip=T, stride=STRIDE, filters={"max_darkness": 0.4})
    assert 0 < len(bright) < len(everything)
    index = pd.concat([pd.read_parquet(data_dir / "clips" / f"{v}.parquet") for v in ("a", "b")])
    assert len(bright) == int((index.darkness <= 0.4).sum())
    moving = ClipDataset(data_dir, frames_per_clip=T, stride=STRIDE, filters=ClipFilters(min_motion=1.0))
    assert len(moving) == 0  # no clip changes every pixel completely


def test_same_seed_same_clips_other_seed_other_order(data_dir: Path) -> None:
    dataset = ClipDataset(data_dir, ["a", "b"], frames_per_clip=T, stride=STRIDE, mode="any_start", seed=3)
    first = list(ClipSampler(dataset))
    assert first == list(ClipSampler(dataset, seed=3))
    assert sorted(first) == list(range(len(dataset)))
    assert first != list(ClipSampler(dataset, seed=4))
    sampler = ClipSampler(dataset)
    sampler.set_epoch(1)
    assert list(sampler) != first


def test_resuming_mid_epoch_continues_the_sequence(data_dir: Path) -> None:
    dataset = ClipDataset(data_dir, frames_per_clip=T, stride=STRIDE, mode="any_start")
    uninterrupted = ClipSampler(dataset, seed=7)
    uninterrupted.set_epoch(2)
    full = list(uninterrupted)
    assert len(uninterrupted) == len(full)  # what the next epoch (or a replay) yields, for len(loader)

    interrupted = ClipSampler(dataset, seed=7)
    interrupted.set_epoch(2)
    head = [item for _, item in zip(range(25), interrupted, strict=False)]
    state = interrupted.state_dict()
    resumed = ClipSampler(dataset, seed=7)
    resumed.load_state_dict(state)
    assert len(resumed) == len(full) - 25
    assert head + list(resumed) == full

    by_position = ClipSampler(dataset, seed=7)
    by_position.set_position(2, 25)
    assert list(by_position) == full[25:]
    assert list(by_position) == full  # iterating again without set_epoch replays the epoch


def test_ranks_split_one_permutation(data_dir: Path) -> None:
    dataset = ClipDataset(data_dir, frames_per_clip=T, stride=STRIDE)
    ranks = [ClipSampler(dataset, seed=1, num_replicas=3, rank=rank) for rank in range(3)]
    orders = [list(sampler) for sampler in ranks]
    assert len({len(order) for order in orders}) == 1
    assert set().union(*orders) == set(range(len(dataset)))
    unpadded = len(dataset) // 3 * 3
    firsts = [order[: unpadded // 3] for order in orders]
    assert sum(len(set(a) & set(b)) for a in firsts for b in firsts if a is not b) == 0


def test_dataloader_workers_open_each_shard_once(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    opened: list[str] = []
    real_open = os.open

    def counting_open(path, *args, **kwargs):
        opened.append(str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(proxy_module.os, "open", counting_open)
    dataset = ClipDataset(data_dir, ["a"], frames_per_clip=T, stride=STRIDE, mode="any_start")
    for i in range(len(dataset)):
        dataset[i]
    assert len(opened) == len(set(opened)) == 4  # 240 frames in shards of 64: opened once, not per sample

    loader = DataLoader(dataset, batch_size=8, sampler=ClipSampler(dataset, seed=0), num_workers=2)
    seen = []
    for batch in loader:
        assert batch["frames"].shape[1:] == (T, 3, 96, 160)
        seen += batch["start_frame"].tolist()
    assert sorted(seen) == sorted(dataset.locate(i)[1] for i in range(len(dataset)))


def test_mismatched_clip_shape_or_missing_index_is_a_clear_error(data_dir: Path) -> None:
    with pytest.raises(WtoursError, match="built for T=4, stride=10.*--frames-per-clip 16 --stride 4"):
        ClipDataset(data_dir, frames_per_clip=16, stride=4)
    with pytest.raises(WtoursError, match="no clip index.*wtours curate --only zz"):
        ClipDataset(data_dir, ["zz"], frames_per_clip=T, stride=STRIDE)
    with pytest.raises(WtoursError, match="no finished proxy.*wtours curate --only a"):
        ClipDataset(data_dir, ["a"], frames_per_clip=T, stride=STRIDE, proxy_short_side=480)[0]


@pytest.mark.parametrize("workers", [0, 2])
def test_a_batch_is_decoded_into_one_buffer_and_handed_over_without_a_copy(data_dir: Path, workers: int) -> None:
    dataset = ClipDataset(data_dir, ["a"], frames_per_clip=T, stride=STRIDE, mode="any_start")
    sampler = ClipSampler(dataset, seed=3)
    loader = DataLoader(dataset, batch_size=5, sampler=sampler, num_workers=workers, collate_fn=collate_clips)
    batches = list(loader)
    order = [int(i) for i in sampler.epoch_order(0)]
    assert sum(len(batch["start_frame"]) for batch in batches) == len(dataset)
    for number, batch in enumerate(batches[:6]):
        assert batch["frames"].dtype == torch.uint8 and batch["frames"].is_contiguous()
        for slot, item in enumerate(order[number * 5 : number * 5 + len(batch["start_frame"])]):
            expected = dataset[item]
            assert batch["start_frame"][slot] == expected["start_frame"]
            assert torch.equal(batch["frames"][slot], expected["frames"])
    items = dataset.__getitems__([3, 9])
    assert collate_clips(items)["frames"].data_ptr() == items[0]["frames"].data_ptr()  # the same memory
    stacked = collate_clips([dataset[3], dataset[9]])  # separate items: stacked
    assert torch.equal(stacked["frames"], collate_clips(items)["frames"])


def test_jpeg_output_decoded_as_a_batch_equals_the_decoded_frames(data_dir: Path) -> None:
    # What the nvJPEG option runs (torchvision's batched decode_jpeg), here on the CPU: the same pixels.
    frames = ClipDataset(data_dir, ["b"], frames_per_clip=T, stride=STRIDE)
    jpeg = ClipDataset(data_dir, ["b"], frames_per_clip=T, stride=STRIDE, output="jpeg")
    batch = collate_clips([jpeg[0], jpeg[4]])
    assert [len(clip) for clip in batch["jpeg"]] == [T, T]
    decoded = decode_clips(batch["jpeg"], device="cpu")
    assert torch.equal(decoded, torch.stack([frames[0]["frames"], frames[4]["frames"]]))
    with pytest.raises(WtoursError, match="'frames' or 'jpeg'"):
        ClipDataset(data_dir, ["b"], frames_per_clip=T, stride=STRIDE, output="png")


@pytest.mark.gpu
def test_nvjpeg_decodes_a_batch_as_the_cpu_does(data_dir: Path) -> None:
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU (nvJPEG)")
    jpeg = ClipDataset(data_dir, ["a"], frames_per_clip=T, stride=STRIDE, output="jpeg")
    batch = collate_clips([jpeg[i] for i in range(4)])
    on_gpu = decode_clips(batch["jpeg"], device="cuda").cpu()
    on_cpu = decode_clips(batch["jpeg"], device="cpu")
    difference = (on_gpu.int() - on_cpu.int()).abs()
    assert on_gpu.shape == on_cpu.shape and difference.float().mean() < 1.0 and difference.max() <= 16


def test_a_worker_rewrites_a_batch_buffer_only_after_the_trainer_let_go_of_it(data_dir: Path) -> None:
    dataset = ClipDataset(data_dir, ["a"], frames_per_clip=T, stride=STRIDE, mode="any_start")
    sampler = ClipSampler(dataset, seed=5)
    order = [int(i) for i in sampler.epoch_order(0)]
    loader = DataLoader(dataset, batch_size=4, sampler=sampler, num_workers=1, collate_fn=collate_clips)
    held, held_expected = None, None
    for number, batch in enumerate(loader):
        expected = torch.stack([dataset[i]["frames"] for i in order[number * 4 : number * 4 + 4]])
        assert torch.equal(batch["frames"], expected), number  # a reused buffer holds this batch, not an old one
        if number == 2:
            held, held_expected = batch["frames"][1, 2], expected[1, 2].clone()  # a view kept by the trainer
        del batch
    assert number > 20 and torch.equal(held, held_expected)  # its buffer was never rewritten


def test_a_collate_that_passes_the_clips_on_as_views_never_sees_them_rewritten(data_dir: Path) -> None:
    dataset = ClipDataset(data_dir, ["a"], frames_per_clip=T, stride=STRIDE, mode="any_start")
    sampler = ClipSampler(dataset, seed=6)
    order = [int(i) for i in sampler.epoch_order(0)]
    loader = DataLoader(dataset, batch_size=4, sampler=sampler, num_workers=1, collate_fn=lambda items: items)
    kept = [item["frames"] for batch in loader for item in batch]
    assert all(torch.equal(frames, dataset[i]["frames"]) for frames, i in zip(kept, order, strict=True))
