"""Two processes under torchrun (gloo on CPU) train through the real CLI and end with identical weights."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.slow
def test_torchrun_two_processes_train_and_agree(tmp_path: Path, sample_video: Path) -> None:
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
        "-m", "wtours", "pretrain", "--preset", "dino_tiny_cpu", "--video", str(sample_video),
        "--output-dir", str(tmp_path), "--epochs", "1", "--batch-size", "4",
        "--set", "data.stride=3", "--set", "data.proxy_short_side=72", "--set", "optim.steps_per_epoch=3",
        "--set", "backbone.embed_dim=48", "--set", "dino.global_crops_size=48",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    finished = subprocess.run(command, capture_output=True, text=True, timeout=240, env=env)
    assert finished.returncode == 0, finished.stderr[-3000:]
    summary = json.loads((tmp_path / "dino-tiny" / "summary.json").read_text())
    assert summary["world_size"] == 2
    assert summary["steps_done"] == summary["total_steps"] == 3
    assert summary["replicas_agree"] is True
    assert math.isfinite(summary["last_loss"])
    lines = (tmp_path / "dino-tiny" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [1, 2, 3]  # one writer: rank 0
    assert (tmp_path / "dino-tiny" / "encoder.safetensors").is_file()
