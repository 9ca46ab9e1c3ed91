"""The GPU path of the engine: bf16 autocast, fused attention, every method. Skipped without CUDA."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from wtours.trainers.config import load_config
from wtours.trainers.engine import pretrain

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


def test_dino_trains_in_bf16_on_the_gpu(tmp_path: Path, sample_frames) -> None:
    config = load_config("dino_tiny_cpu", {
        "run.output_dir": str(tmp_path), "run.device": "cuda", "run.precision": "bf16",
        "optim.epochs": 1, "optim.steps_per_epoch": 4, "optim.batch_size": 4,
    })  # fmt: skip
    result = pretrain(config, sample_frames, show_progress=False)
    losses = [json.loads(line)["loss"] for line in (result.run_dir / "metrics.jsonl").open()]
    assert len(losses) == 4 and all(math.isfinite(loss) for loss in losses)
    assert torch.cuda.max_memory_allocated() > 0


@pytest.mark.parametrize("preset", ["dora_tiny_cpu", "videomae_tiny_cpu"])
def test_video_methods_train_in_bf16_on_the_gpu(tmp_path: Path, preset: str, sample_video: Path) -> None:
    from wtours.trainers.data import decode_frames

    config = load_config(preset, {
        "run.output_dir": str(tmp_path), "run.device": "cuda", "run.precision": "bf16",
        "optim.epochs": 1, "optim.steps_per_epoch": 4,
    })  # fmt: skip
    clips = decode_frames([sample_video], every=config.data.stride, short_side=96,
                          frames_per_clip=config.data.frames_per_clip)  # fmt: skip
    result = pretrain(config, clips, show_progress=False)
    losses = [json.loads(line)["loss"] for line in (result.run_dir / "metrics.jsonl").open()]
    assert len(losses) == 4 and all(math.isfinite(loss) for loss in losses)
