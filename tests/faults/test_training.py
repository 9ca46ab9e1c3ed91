"""Pretraining faults: clips of different shapes in one run, a resume with changed settings, broken checkpoints."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from faultkit import assert_one_line_error

from wtours.trainers.training.config import load_config
from wtours.trainers.training.data import collate_clips

pytestmark = pytest.mark.faults

TINY = {"backbone.embed_dim": 48, "dino.out_dim": 64, "dino.hidden_dim": 64, "dino.bottleneck_dim": 16,
        "dino.global_crops_size": 48, "dino.local_crops_size": 32}  # fmt: skip


def test_a_batch_of_clips_of_different_sizes_is_cropped_centred_to_their_common_size() -> None:
    wide = torch.arange(2 * 3 * 4 * 10, dtype=torch.int64).reshape(2, 3, 4, 10).to(torch.uint8)  # [T, 3, H, W]
    tall = torch.zeros(2, 3, 6, 6, dtype=torch.uint8)
    batch = collate_clips([{"frames": wide, "clip": 0}, {"frames": tall, "clip": 1}])
    assert batch["frames"].shape == (2, 2, 3, 4, 6) and batch["clip"].tolist() == [0, 1]
    assert torch.equal(batch["frames"][0], wide[..., :, 2:8]) and torch.equal(batch["frames"][1], tall[..., 1:5, :])
    same = collate_clips([{"frames": wide, "clip": 0}, {"frames": wide, "clip": 1}])
    assert torch.equal(same["frames"][1], wide), "a batch of one shape is untouched"


def test_videos_of_two_aspect_ratios_decode_into_one_training_set(make_video) -> None:
    """`wtours pretrain --video a.mp4 --video b.mp4`, a 16:9 and a 2.37:1 file: held as clips of their own sizes."""
    from wtours.trainers.training.data import decode_frames

    videos = [make_video("hd.mp4", frames=6, width=96, height=54), make_video("scope.mp4", frames=6, width=128,
                                                                               height=54)]  # fmt: skip
    dataset = decode_frames(videos, every=3, short_side=48)
    shapes = [tuple(dataset[i]["frames"].shape) for i in range(len(dataset))]
    assert shapes == [(1, 3, 48, 86)] * 2 + [(1, 3, 48, 114)] * 2
    assert collate_clips([dataset[i] for i in range(4)])["frames"].shape == (4, 1, 3, 48, 86)


@pytest.fixture
def two_aspect_ratios(make_video, tmp_path: Path) -> Path:
    """Curated clips of a 16:9 and a 2.37:1 video (96x54 and 128x54)."""
    from wtours.pipelines.clip_index import ClipSpec
    from wtours.pipelines.curate import CurateOptions, curate_video
    from wtours.pipelines.proxy import ProxySettings
    from wtours.store import Store

    store = Store.at(tmp_path / "data")
    store.videos_dir.mkdir(parents=True)
    for video_id, width in (("hd", 96), ("scope", 128)):
        make_video(f"{video_id}.mp4", frames=40, width=width, height=54).replace(store.video_path(video_id))
        folder = store.analysis_dir(video_id)
        folder.mkdir(parents=True)
        frame = np.arange(40)
        pd.DataFrame({"frame": frame, "time": frame / 30, "lightness": 50.0, "luma": 0.5, "blank": False,
                      "frozen": False}).to_parquet(folder / "frames.parquet")  # fmt: skip
        pd.DataFrame({"shot": [0], "start_frame": [0], "end_frame": [40]}).to_parquet(folder / "shots.parquet")
        options = CurateOptions(ClipSpec(2, 5, start_step=2), ProxySettings(short_side=48, frames_per_shard=64))
        curate_video(store, video_id, options, show_progress=False)
    return store.root


def test_clips_of_two_aspect_ratios_train_together_and_resume_bit_exact(two_aspect_ratios: Path, tmp_path) -> None:
    from wtours.pipelines.clipdata import ClipDataset
    from wtours.store import RunDir
    from wtours.trainers.training.checkpoint import load_checkpoint
    from wtours.trainers.training.engine import pretrain

    dataset = ClipDataset(two_aspect_ratios, frames_per_clip=2, stride=5)
    assert {tuple(dataset[i]["frames"].shape) for i in range(len(dataset))} == {(2, 3, 48, 86), (2, 3, 48, 114)}

    def config(name: str):
        return load_config("dino_tiny_cpu", {**TINY, "run.output_dir": str(tmp_path / "runs"), "run.name": name,
                                             "run.checkpoint_every": 1000, "optim.epochs": 1, "optim.batch_size": 4,
                                             "optim.steps_per_epoch": 4, "data.frames_per_clip": 2,
                                             "data.num_workers": 0})  # fmt: skip

    straight = pretrain(config("straight"), dataset, show_progress=False)  # 16 of the 36 clips, both shapes
    assert straight.steps_done == 4 and np.isfinite(straight.last_loss)
    pretrain(config("resumed"), dataset, stop_after_steps=2, show_progress=False)
    pretrain(config("resumed"), dataset, resume=True, show_progress=False)
    expected = load_checkpoint(RunDir(straight.run_dir).checkpoint_path)["method"]
    actual = load_checkpoint(RunDir(tmp_path / "runs" / "resumed").checkpoint_path)["method"]
    assert expected.keys() == actual.keys()
    assert all(torch.equal(expected[key], actual[key]) for key in expected), "resume is bit-exact"


@pytest.fixture
def stopped_run(cli, make_video, tmp_path: Path):
    """`wtours pretrain` of the tiny DINO on a small video, stopped after 2 of its 4 steps (2 epochs of 2);
    returns a function running the same command with more arguments."""
    video = make_video("walk.mp4", frames=60, width=96, height=54)
    command = ["--video", video, "-o", tmp_path / "runs", "--name", "r", "--set", "data.stride=3", "--set",
               "data.proxy_short_side=48", "--set", "optim.steps_per_epoch=2", "--batch-size", "4", "--epochs",
               "2"]  # fmt: skip

    def run(*more: object, preset: str = "dino_tiny_cpu"):
        sizes = [f"--set={key}={value}" for key, value in TINY.items()] if preset == "dino_tiny_cpu" else []
        return cli("pretrain", "--preset", preset, *command, *sizes, *more)

    outcome = run("--stop-after", "2")
    assert outcome.code == 0, outcome.err
    return run


def test_resume_refuses_changed_settings_naming_each_and_allows_more_epochs(stopped_run, tmp_path: Path) -> None:
    run = tmp_path / "runs" / "r"
    saved = {name: (run / name).read_bytes() for name in ("config.yaml", "checkpoint.pt")}

    line = assert_one_line_error(stopped_run("--resume", "--batch-size", "2", "--lr", "0.1"), code=2)
    assert line == (f"error: cannot resume {run}: its checkpoint was trained with other settings: optim.batch_size "
                    "4 -> 2; optim.lr 0.02 -> 0.1. Only data.data_dir, data.num_workers, optim.epochs, "
                    "run.checkpoint_every, run.compile, run.device, run.knn_data, run.knn_every, "
                    "run.knn_image_size, run.log_every may change on --resume; "
                    "start a new run (--name) instead")  # fmt: skip
    line = assert_one_line_error(stopped_run("--resume", preset="dora_tiny_cpu"), "method dino -> dora", code=2)
    assert line.startswith(f"error: cannot resume {run}: its checkpoint was trained with other settings: method "
                           "dino -> dora; ") and "teacher.backbone" not in line, "no state-dict key dump"
    assert {name: (run / name).read_bytes() for name in saved} == saved, "a refused resume changes nothing"

    resumed = stopped_run("--resume", "--epochs", "3", "--set", "run.log_every=5", "--num-workers", "1",
                          "--stop-after", "1")
    assert resumed.code == 0, resumed.err
    assert "optim.epochs 2 -> 3: the schedules (lr, weight decay, teacher momentum, DINO's teacher temperature) " \
           "are recomputed for the new length: from step 2 on" in " ".join(resumed.err.split())
    assert "epochs: 3" in (run / "config.yaml").read_text()
    assert json.loads((run / "summary.json").read_text())["steps_done"] == 3


def test_a_damaged_checkpoint_is_one_line(stopped_run, tmp_path: Path) -> None:
    path = tmp_path / "runs" / "r" / "checkpoint.pt"
    whole = path.read_bytes()
    state = torch.load(path, weights_only=True)
    without_step = {key: value for key, value in state.items() if key != "step"}
    # A checkpoint of this method whose weights have other shapes (written by other code).
    reshaped = {**state, "method": {key: value[..., :1] if value.ndim else value
                                    for key, value in state["method"].items()}}  # fmt: skip
    damages = {"truncated": whole[: len(whole) // 2], "empty": b"", "garbage": os.urandom(4096)}
    for name, payload in {"no step": without_step, "other shapes": reshaped}.items():
        buffer = io.BytesIO()
        torch.save(payload, buffer)
        damages[name] = buffer.getvalue()
    for name, data in damages.items():
        path.write_bytes(data)
        line = assert_one_line_error(stopped_run("--resume"), str(path), code=2)
        assert len(line) < 400, (name, line)
