"""DoRA training throughput: clips per second and memory per clip, for one process on one device.

Every step is what the engine does (GPU-side clip views, the teacher once per clip for discovery,
tracking and its targets, the k masked clips and the local crops in one student forward, backward,
per-parameter clipping, AdamW, teacher EMA) on random uint8 clips already on the device, so the number
measures the model, not the loader (see bench_loader.py for that).

    .venv/bin/python benchmarks/bench_dora.py                      # ViT-S/16, T=8, 3 objects, 6 locals, bf16 (GPU)
    .venv/bin/python benchmarks/bench_dora.py --tiny --steps 3     # the tiny CPU preset, seconds

Prints one Markdown table row per batch size (and writes them with the settings to --out as JSON).
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import time
from pathlib import Path
from typing import Any

import torch

from wtours.trainers.training.config import load_config
from wtours.trainers.training.dora import build
from wtours.trainers.training.engine import clip_per_parameter, param_groups, resolve_device
from wtours.trainers.training.methods import ScheduleShape, StepState


def measure(
    preset: str, overrides: dict[str, Any], batch_size: int, steps: int, warmup: int, device: torch.device,
    dtype: torch.dtype, frame_size: tuple[int, int],
) -> dict[str, Any]:  # fmt: skip
    config = load_config(preset, overrides)
    options = config.options
    torch.manual_seed(0)
    method = build(config.backbone, options, ScheduleShape(epochs=1, steps_per_epoch=steps + warmup)).to(device)
    method.train()
    optimizer = torch.optim.AdamW(param_groups(method.student), lr=1e-4)
    frames = config.data.frames_per_clip
    clips = torch.randint(0, 256, (batch_size, frames, 3, *frame_size), dtype=torch.uint8, device=device)
    state = StepState(step=0, epoch=0, lr=1e-4, weight_decay=0.04)
    generator = torch.Generator().manual_seed(0)

    def one_step() -> float:
        views = method.views({"frames": clips}, generator)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
            loss, _ = method.training_step(views, state, method.student)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        clip_per_parameter(method.student, 3.0)
        optimizer.step()
        method.after_optimizer_step(state)  # the teacher's EMA
        return float(loss.detach())

    for _ in range(warmup):
        one_step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    losses = [one_step() for _ in range(steps)]
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elapsed = time.perf_counter() - start
    if device.type == "cuda":
        peak_gib = torch.cuda.max_memory_allocated(device) / 2**30
        memory = f"{peak_gib / batch_size:.2f} GiB/clip (peak {peak_gib:.1f} GiB, CUDA allocator)"
    else:
        peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux
        memory = f"{peak_gib:.2f} GiB process peak RSS"
    return {
        "batch_size": batch_size,
        "frames_per_clip": frames,
        "objects": options.n_objects,
        "local_crops": options.local_crops_number,
        "global_size": options.global_crops_size,
        "local_size": options.local_crops_size,
        "clips_per_s": batch_size * steps / elapsed,
        "seconds_per_step": elapsed / steps,
        "peak_memory_gib": peak_gib,
        "memory": memory,
        "losses_finite": all(torch.isfinite(torch.tensor(losses)).tolist()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="the tiny CPU preset instead of ViT-S/16 (smoke runs)")
    parser.add_argument("--batch-sizes", default=None, help="clips per step, comma-separated (default 16 / 4 tiny)")
    parser.add_argument("--frames", type=int, default=None, help="frames per clip (default 8 / 3 tiny)")
    parser.add_argument("--objects", type=int, default=None, help="objects per clip (default 3 / 2 tiny)")
    parser.add_argument("--local-crops", type=int, default=None, help="local crops per frame (default 6 / 3 tiny)")
    parser.add_argument("--precision", choices=["bf16", "fp16", "fp32"], default=None, help="default bf16 on GPU")
    parser.add_argument("--steps", type=int, default=10, help="timed steps")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first (allocator, kernels)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--out", type=Path, default=None, help="also write the results as JSON here")
    args = parser.parse_args()

    device = resolve_device(args.device)
    preset = "dora_tiny_cpu" if args.tiny else "dora_vits16"
    overrides: dict[str, Any] = {"backbone.drop_path_rate": 0.1 if not args.tiny else 0.0}
    if args.frames:
        overrides["data.frames_per_clip"] = args.frames
    if args.objects:
        overrides["dora.n_objects"] = args.objects
    if args.local_crops:
        overrides["dora.local_crops_number"] = args.local_crops
    precision = args.precision or ("bf16" if device.type == "cuda" else "fp32")
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[precision]
    batch_sizes = [int(b) for b in (args.batch_sizes or ("4" if args.tiny else "16")).split(",")]
    frame_size = (72, 128) if args.tiny else (360, 640)  # a training proxy's frames

    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    print(f"DoRA {preset} on {device_name}, {precision}, frames {frame_size[1]}x{frame_size[0]}\n")
    print("| clips/step | T | objects | locals | clips/s | s/step | memory |")
    print("|---|---|---|---|---|---|---|")
    results = []
    for batch_size in batch_sizes:
        row = measure(preset, overrides, batch_size, args.steps, args.warmup, device, dtype, frame_size)
        results.append(row)
        print(
            f"| {batch_size} | {row['frames_per_clip']} | {row['objects']} | {row['local_crops']} | "
            f"{row['clips_per_s']:.2f} | {row['seconds_per_step']:.3f} | {row['memory']} |",
            flush=True,
        )
    if args.out:
        settings = {"preset": preset, "device": device_name, "precision": precision, "overrides": overrides}
        args.out.write_text(json.dumps({"settings": settings, "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
