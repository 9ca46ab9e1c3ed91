"""The GPU path of the engine: bf16 autocast, fused attention, every method.

Each test runs on the CPU in fp32 (always, so the test itself is known to work where no GPU is), on the CPU in
bf16 (where the CPU has bf16 instructions) and on CUDA in bf16 (marked ``gpu``, skipped without CUDA)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from wtours.trainers.training.config import load_config
from wtours.trainers.training.engine import cpu_has_native_bf16, pretrain

DEVICES = [
    pytest.param("cpu", "fp32", id="cpu-fp32"),
    pytest.param(
        "cpu", "bf16", id="cpu-bf16", marks=pytest.mark.skipif(not cpu_has_native_bf16(), reason="no bf16 on this CPU")
    ),
    pytest.param(
        "cuda",
        "bf16",
        id="cuda-bf16",
        marks=[pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")],
    ),
]


def logged_losses(run_dir: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (run_dir / "metrics.jsonl").open()]


@pytest.mark.parametrize(("device", "precision"), DEVICES)
def test_dino_trains(tmp_path: Path, sample_frames, device: str, precision: str) -> None:
    config = load_config("dino_tiny_cpu", {
        "run.output_dir": str(tmp_path), "run.device": device, "run.precision": precision,
        "optim.epochs": 1, "optim.steps_per_epoch": 4, "optim.batch_size": 4,
    })  # fmt: skip
    result = pretrain(config, sample_frames, show_progress=False)
    losses = logged_losses(result.run_dir)
    assert len(losses) == 4 and all(math.isfinite(loss) for loss in losses)
    if device == "cuda":
        assert torch.cuda.max_memory_allocated() > 0


@pytest.mark.parametrize(("device", "precision"), DEVICES)
@pytest.mark.parametrize("preset", ["dora_tiny_cpu", "videomae_tiny_cpu"])
def test_video_methods_train(tmp_path: Path, preset: str, sample_video: Path, device: str, precision: str) -> None:
    from wtours.trainers.training.data import decode_frames

    config = load_config(preset, {
        "run.output_dir": str(tmp_path), "run.device": device, "run.precision": precision,
        "optim.epochs": 1, "optim.steps_per_epoch": 4, "optim.batch_size": 4,
    })  # fmt: skip
    # Every 2nd frame of the 6 s sample: 90 frames, enough clips for 4 steps of 4 whatever the preset's T.
    clips = decode_frames([sample_video], every=2, short_side=96, frames_per_clip=config.data.frames_per_clip)
    assert len(clips) >= 16
    result = pretrain(config, clips, show_progress=False)
    losses = logged_losses(result.run_dir)
    assert len(losses) == 4 and all(math.isfinite(loss) for loss in losses)
