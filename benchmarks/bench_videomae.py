"""VideoMAE training throughput and memory: clips/s and peak memory of full training steps (views on the
device, forward, backward, AdamW) for the shipped presets, at 90% tube masking, bf16 autocast on a GPU.

Synthetic uint8 clips of 16 frames (a proxy-sized 256x456 frame) stand in for the loader, so the figure is
the model's, not the decoder's (see bench_loader.py for that).

    .venv/bin/python benchmarks/bench_videomae.py                       # GPU: ViT-S/16 and ViT-B/16
    .venv/bin/python benchmarks/bench_videomae.py --tiny                # CPU: the tiny preset, seconds
    .venv/bin/python benchmarks/bench_videomae.py --batch-size 64 --steps 30 --out bench.json

Prints a Markdown table (and writes it with the raw numbers to --out as JSON).
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import time
from pathlib import Path
from typing import Any

import torch

from wtours.trainers.training.config import load_config
from wtours.trainers.training.engine import param_groups, resolve_device, resolve_precision
from wtours.trainers.training.methods import ScheduleShape, StepState, method_module
from wtours.trainers.training.videomae import masked_per_frame


def bench_preset(
    preset: str,
    *,
    device: torch.device,
    precision: str,
    batch_size: int,
    frame_size: tuple[int, int],
    mask_ratio: float,
    steps: int,
    warmup: int,
) -> dict[str, Any]:
    config = load_config(preset, {"videomae.mask_ratio": mask_ratio, "optim.batch_size": batch_size})
    module = method_module("videomae")
    torch.manual_seed(0)
    method = module.build(config.backbone, config.options, ScheduleShape(1, 1))
    method = method.to(device).train()
    optimizer = torch.optim.AdamW(param_groups(method.student), lr=1e-4, betas=config.optim.betas)
    amp_dtype = resolve_precision(precision, device)
    height, width = frame_size
    frames = torch.randint(
        0, 256, (batch_size, config.data.frames_per_clip, 3, height, width), dtype=torch.uint8, device=device
    )
    state = StepState(step=0, epoch=0, lr=1e-4, weight_decay=0.05)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    def train_step(step: int) -> float:
        views = method.views({"frames": frames}, torch.Generator().manual_seed(step))
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype != torch.float32):
            loss, _ = method.training_step(views, state, method.student)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return float(loss.detach())

    for step in range(warmup):
        train_step(step)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for step in range(warmup, warmup + steps):
        last_loss = train_step(step)  # float() synchronises with the GPU every step
    elapsed = time.perf_counter() - start
    crop_size = config.options.crop_size
    time_steps = config.data.frames_per_clip // config.options.tubelet_size
    per_frame = (crop_size // config.backbone.patch_size) ** 2
    result = {
        "preset": preset,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "precision": str(amp_dtype).removeprefix("torch."),
        "batch_size": batch_size,
        "frames_per_clip": config.data.frames_per_clip,
        "crop_size": crop_size,
        "tokens": time_steps * per_frame,
        "visible_tokens": time_steps * (per_frame - masked_per_frame(per_frame, mask_ratio)),
        "mask_ratio": mask_ratio,
        "encoder_params_m": sum(p.numel() for p in method.student.encoder.parameters()) / 1e6,
        "steps": steps,
        "seconds": elapsed,
        "clips_per_s": batch_size * steps / elapsed,
        "last_loss": last_loss,
    }
    if device.type == "cuda":
        result["peak_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    else:
        result["peak_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux
    return result


def markdown(results: list[dict[str, Any]]) -> str:
    memory_key = "peak_memory_gib" if "peak_memory_gib" in results[0] else "peak_rss_gib"
    memory_name = "peak GPU memory (GiB)" if memory_key == "peak_memory_gib" else "peak process RSS (GiB)"
    lines = [
        f"| preset | device | precision | batch | tokens (visible) | clips/s | {memory_name} |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['preset']} | {r['device']} | {r['precision']} | {r['batch_size']} | "
            f"{r['tokens']} ({r['visible_tokens']}) | {r['clips_per_s']:.3g} | {r[memory_key]:.2f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", nargs="+", default=["videomae_vits16", "videomae_vitb16"])
    parser.add_argument("--tiny", action="store_true", help="the tiny CPU preset (no GPU needed)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp16", "fp32"],
                        help="auto: bf16 on a GPU, fp32 on the CPU")  # fmt: skip
    parser.add_argument("--batch-size", type=int, default=32, help="clips per step (per GPU in the presets)")
    parser.add_argument("--frame-size", type=int, nargs=2, default=(256, 456), metavar=("H", "W"))
    parser.add_argument("--mask-ratio", type=float, default=0.9)
    parser.add_argument("--steps", type=int, default=20, help="timed steps")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first (allocator, kernels)")
    parser.add_argument("--out", type=Path, default=None, help="also write the table and raw numbers as JSON")
    args = parser.parse_args(argv)
    presets = ["videomae_tiny_cpu"] if args.tiny else args.presets
    if args.tiny:
        args.batch_size, args.frame_size = min(args.batch_size, 8), (40, 71)
    device = resolve_device(args.device)
    results = []
    for preset in presets:
        results.append(
            bench_preset(
                preset,
                device=device,
                precision=args.precision,
                batch_size=args.batch_size,
                frame_size=tuple(args.frame_size),
                mask_ratio=args.mask_ratio,
                steps=args.steps,
                warmup=args.warmup,
            )
        )
        print(json.dumps(results[-1]), file=sys.stderr)
    table = markdown(results)
    print(table)
    if args.out:
        args.out.write_text(json.dumps({"table": table, "results": results}, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
