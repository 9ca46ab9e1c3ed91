"""Throughput and peak memory of one DINO training step, per precision / attention / compile setting.

    python benchmarks/bench_dino.py                    # GPU: ViT-S/16, 2x224 + 8x96 crops, batch 64
    python benchmarks/bench_dino.py --tiny             # CPU sanity run: 2-block ViT, 64/32 px crops
    python benchmarks/bench_dino.py --modes official,bf16 --batch-size 128 --out bench.json
    python benchmarks/bench_dino.py --preset dino_study_cpu --threads 1   # CPU: fp32 against bf16-explicit

Every mode runs the engine's own training step (GPU-side multi-crop, forward of teacher and student,
DINO loss, backward, per-parameter clipping, AdamW, EMA) on synthetic uint8 frames already on the device,
so data loading is excluded. Modes:

- ``official``: the official DINO recipe's numerics: fp16 autocast with loss scaling, unfused attention
  (softmax(QK^T)V written out, as in the released ``vision_transformer.py``), no compile;
- ``fp32``: full precision (TF32 matmuls on GPUs that have them), fused attention (SDPA);
- ``bf16``: bf16 autocast, fused attention — the engine's default on GPUs;
- ``bf16-compile``: the same under ``torch.compile``;
- ``bf16-explicit``: bf16 autocast, explicit attention — the engine's choice for bf16 on a CPU with bf16
  instructions (PyTorch's CPU flash-attention backward is slow in bf16).

Images/s counts source images (each gives 2 global + N local crops). Speed-up is against ``official``, or the
first mode run when ``official`` is not among them (on a CPU: ``fp32``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from wtours.errors import WtoursError
from wtours.trainers.training.config import load_config
from wtours.trainers.training.distributed import ProcessInfo
from wtours.trainers.training.engine import Optimization, cpu_has_native_bf16, param_groups, prepare_student
from wtours.trainers.training.methods import ScheduleShape, StepState, method_module

MODES = {
    "official": dict(amp=torch.float16, fused=False, compile=False),
    "fp32": dict(amp=torch.float32, fused=True, compile=False),
    "bf16": dict(amp=torch.bfloat16, fused=True, compile=False),
    "bf16-compile": dict(amp=torch.bfloat16, fused=True, compile=True),
    "bf16-explicit": dict(amp=torch.bfloat16, fused=False, compile=False),
}


def set_fused_attention(module: torch.nn.Module, fused: bool) -> None:
    for child in module.modules():
        if hasattr(child, "fused_attn"):
            child.fused_attn = fused


def bench_mode(
    mode: str, *, preset: str, batch_size: int, steps: int, warmup: int, frame_size: tuple[int, int], device
) -> dict[str, float | str]:
    settings = MODES[mode]
    config = load_config(preset, {"optim.batch_size": batch_size})
    module = method_module(config.method)
    torch.manual_seed(0)
    shape = ScheduleShape(epochs=1, steps_per_epoch=steps + warmup)
    method = module.build(config.backbone, config.options, shape).to(device)
    set_fused_attention(method, settings["fused"])
    optimization = Optimization(
        method=method,
        student=prepare_student(
            method, compile_model=settings["compile"], process=ProcessInfo(), device=device
        ),
        optimizer=torch.optim.AdamW(param_groups(method.student), lr=0.0),
        scaler=torch.amp.GradScaler(device.type, enabled=settings["amp"] == torch.float16),
        device=device,
        amp_dtype=settings["amp"],
        clip_grad=config.optim.clip_grad,
    )
    height, width = frame_size
    frames = torch.randint(0, 256, (batch_size, 1, 3, height, width), dtype=torch.uint8, device=device)
    state = StepState(step=0, epoch=0, lr=config.optim.lr * batch_size / 256, weight_decay=0.04)
    method.train()

    def synchronize() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for index in range(warmup):
        optimization.step({"frames": frames}, state, torch.Generator().manual_seed(index))
    synchronize()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    for index in range(steps):
        loss, _, _ = optimization.step(
            {"frames": frames}, state, torch.Generator().manual_seed(warmup + index)
        )
    synchronize()
    elapsed = time.perf_counter() - start
    result: dict[str, float | str] = {
        "mode": mode,
        "images_per_s": batch_size * steps / elapsed,
        "step_ms": 1000 * elapsed / steps,
        "last_loss": loss,
    }
    if device.type == "cuda":
        result["peak_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tiny", action="store_true", help="tiny CPU preset (sanity figures, no GPU needed)")
    parser.add_argument("--modes", default=None, help=f"comma-separated, from {', '.join(MODES)}")
    parser.add_argument("--batch-size", type=int, default=None, help="images per step (GPU 64, tiny 8)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps (GPU 20, tiny 5)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps first (GPU 5, tiny 1)")
    parser.add_argument("--preset", default=None, help="any DINO preset (default: dino_vits16_vanilla on a GPU, "
                        "dino_tiny_cpu with --tiny or on a CPU)")
    parser.add_argument("--frame-size", type=int, nargs=2, default=None, metavar=("H", "W"),
                        help="synthetic frame size (GPU 288 512, CPU 96 160)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--out", type=Path, default=None, help="also write the results as JSON here")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    tiny = args.tiny or device.type == "cpu"
    preset = args.preset or ("dino_tiny_cpu" if tiny else "dino_vits16_vanilla")
    cpu_modes = "fp32,bf16-explicit" if cpu_has_native_bf16() else "fp32"
    default_modes = cpu_modes if device.type == "cpu" else ",".join(m for m in MODES if m != "bf16-explicit")
    modes = (args.modes or default_modes).split(",")
    unknown = [mode for mode in modes if mode not in MODES]
    if unknown:
        parser.error(f"--modes: unknown {', '.join(unknown)}; choose from {', '.join(MODES)}")
    try:  # a wrong --preset is one line before any work
        method = load_config(preset).method
    except WtoursError as err:
        parser.error(str(err))
    if method != "dino":
        parser.error(f"--preset {preset} is for method '{method}': this benchmark times DINO presets")
    batch_size = args.batch_size or (8 if tiny else 64)
    steps = args.steps or (5 if tiny else 20)
    warmup = args.warmup if args.warmup is not None else (1 if tiny else 5)
    frame_size = tuple(args.frame_size) if args.frame_size else (96, 160) if tiny else (288, 512)

    results = []
    for mode in modes:
        result = bench_mode(
            mode,
            preset=preset,
            batch_size=batch_size,
            steps=steps,
            warmup=warmup,
            frame_size=frame_size,
            device=device,
        )
        results.append(result)
        print(json.dumps(result), flush=True)

    reference = "official" if "official" in modes else modes[0]
    baseline = next(r["images_per_s"] for r in results if r["mode"] == reference)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"\nDINO {preset}, batch {batch_size}, {name}, torch {torch.__version__}\n")
    print(f"| mode | images/s | ms/step | peak memory (GiB) | speed-up vs {reference} |")
    print("|---|---|---|---|---|")
    for r in results:
        memory = f"{r['peak_memory_gib']:.1f}" if "peak_memory_gib" in r else "-"
        speedup = f"{r['images_per_s'] / baseline:.2f}x"
        print(f"| {r['mode']} | {r['images_per_s']:.1f} | {r['step_ms']:.0f} | {memory} | {speedup} |")
    if args.out:
        meta = {"device": name, "preset": preset, "batch_size": batch_size, "torch": torch.__version__}
        args.out.write_text(json.dumps({**meta, "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
