"""benchmarks/gpu_hours.py: the work it counts matches the clip index, and measured throughputs are read from
the real benchmark scripts' output files."""

from __future__ import annotations

import functools
import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from wtours.pipelines.clip_index import ClipSpec, build_clip_index
from wtours.trainers.training.config import load_config

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@functools.cache
def load_script():
    spec = importlib.util.spec_from_file_location("gpu_hours", BENCHMARKS / "gpu_hours.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("preset", ["dora_vits16", "videomae_vits16"])
@pytest.mark.parametrize("seconds", [60.0, 61.3, 7.5])
def test_clips_per_epoch_is_the_clip_index_length(preset, seconds):
    gpu_hours = load_script()
    config = load_config(preset)
    frame_count = round(seconds * gpu_hours.FPS)
    frames = pd.DataFrame({"frame": np.arange(frame_count), "time": np.arange(frame_count) / gpu_hours.FPS,
                           "lightness": 50.0, "blank": False, "frozen": False})  # fmt: skip
    index = build_clip_index("v", frames, pd.DataFrame({"start_frame": [0]}),
                             ClipSpec(config.data.frames_per_clip, config.data.stride))  # fmt: skip
    assert gpu_hours.clips_per_epoch(config, 1, seconds) == len(index)
    assert gpu_hours.clips_per_epoch(config, 3, seconds) == 3 * len(index)


def test_flops_follow_the_work_of_a_step():
    gpu_hours = load_script()
    assert load_config("videomae_tiny_cpu").options.mask_ratio < 0.95
    default = gpu_hours.flops_per_sample("videomae_tiny_cpu", (72, 128))
    # The encoder sees only the visible tokens: masking more costs fewer FLOPs; a deeper encoder more.
    assert 0 < gpu_hours.flops_per_sample("videomae_tiny_cpu", (72, 128), {"videomae.mask_ratio": 0.95}) < default
    assert gpu_hours.flops_per_sample("videomae_tiny_cpu", (72, 128), {"backbone.depth": 4}) > default


def test_hours_from_the_benchmarks_measured_output(tmp_path):
    python = sys.executable
    outputs = {
        "dino": [python, str(BENCHMARKS / "bench_dino.py"), "--tiny", "--steps", "1", "--warmup", "0",
                 "--modes", "fp32"],
        "dora": [python, str(BENCHMARKS / "bench_dora.py"), "--tiny", "--steps", "1", "--warmup", "0",
                 "--device", "cpu"],
        "videomae": [python, str(BENCHMARKS / "bench_videomae.py"), "--tiny", "--steps", "1", "--warmup", "0",
                     "--device", "cpu"],
    }  # fmt: skip
    paths = []
    for name, command in outputs.items():
        path = tmp_path / f"{name}.json"
        subprocess.run([*command, "--out", str(path)], check=True, capture_output=True, timeout=300)
        paths.append(path)

    gpu_hours = load_script()
    out = tmp_path / "hours.json"
    assert gpu_hours.main(["--tiny", "--measured", *map(str, paths), "--out", str(out)]) == 0
    rows = {row["preset"]: row for row in json.loads(out.read_text())["rows"]}
    measured = {
        "dino_tiny_cpu": json.loads(paths[0].read_text())["results"][0]["images_per_s"],
        "dora_tiny_cpu": json.loads(paths[1].read_text())["results"][0]["clips_per_s"],
        "videomae_tiny_cpu": json.loads(paths[2].read_text())["results"][0]["clips_per_s"],
    }
    assert set(rows) == set(measured)
    for preset, per_s in measured.items():
        row = rows[preset]
        config = load_config(preset)
        assert row["per_gpu_s"] == per_s
        assert row["samples"] == config.optim.epochs * row["clips_per_epoch"] * max(
            1, config.data.frames_per_clip if config.method == "dino" else 1
        )
        assert math.isclose(row["gpu_hours"], row["samples"] / per_s / 3600)


def test_projection_puts_dino_at_the_published_rate():
    gpu_hours = load_script()
    flops = {"dino_vits16_wt": 100e9, "dora_vits16": 1000e9}
    rate = gpu_hours.PUBLISHED_IMAGES_PER_GPU_S * flops["dino_vits16_wt"]
    rows = gpu_hours.estimate(gpu_hours.STUDY[:2], {p: (rate / f, "projected") for p, f in flops.items()}, flops)
    dino, dora = rows
    assert math.isclose(dino["per_gpu_s"], 1_281_167 * 100 / (1.75 * 86400 * 8))
    assert math.isclose(dora["per_gpu_s"], dino["per_gpu_s"] / 10)
    assert math.isclose(dora["tflops_per_s"], rate / 1e12) and math.isclose(dino["tflops_per_s"], rate / 1e12)
    # WT-Venice, 1 h 50 min at 60 fps: one clip per 60 frames (T = 8 spans 421 frames), 8 images each.
    assert dino["clips_per_epoch"] == math.ceil((110 * 60 * 60 - 420) / 60)
    assert dino["samples"] == 100 * dino["clips_per_epoch"] * 8
