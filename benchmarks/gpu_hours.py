"""GPU hours of the study's pretraining runs, from throughput.

    python benchmarks/gpu_hours.py                    # projection from a published, measured run (below)
    python benchmarks/gpu_hours.py --measured dino.json dora.json videomae.json
                                                      # from your GPU: the bench_*.py scripts' --out files
    python benchmarks/gpu_hours.py --footage-hours 3  # your own footage instead of the study's runs

Work of a run = epochs x clips per epoch (one clip per ``stride`` frames of footage, as `wtours curate`
indexes it) x images per clip for DINO (which treats every frame as an image); GPU hours = work / throughput
of one GPU. Throughput comes from one of:

- **measured** (``--measured``): images/s (DINO) or clips/s (DoRA, VideoMAE) of the engine on your GPU, read
  from ``bench_dino.py`` / ``bench_dora.py`` / ``bench_videomae.py --out`` files. The best estimate: use it.
- **projected** (default): the floating-point operations of one training step per image or clip are counted
  exactly (``torch.utils.flop_counter`` over views, forward and backward of the real presets, on the CPU), and
  one GPU's sustained rate is taken from a published, measured run of the same DINO recipe: the DINO README's
  vanilla ViT-S/16, 100 epochs of ImageNet-1k (1,281,167 images) in 1.75 days on 8 GPUs (V100s in DINO's
  paper), official code (fp16, unfused attention, its own data loading). That is 105.9 images/s per GPU;
  times the FLOPs of one DINO image, the rate every method is projected at. It assumes every method keeps
  the GPU as busy as DINO did, which small operations (DoRA's Sinkhorn and tracking, VideoMAE's masking and
  per-tubelet targets) make optimistic, while the engine's bf16 fused attention on newer GPUs is faster than
  that fp16 V100-era run: a first-order estimate. Measure, then use ``--measured``.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from wtours.trainers.training.config import TrainConfig, load_config
from wtours.trainers.training.methods import ScheduleShape, StepState, method_module

# The DINO README's vanilla run: ViT-S/16, 2x224 + 8x96 crops, 100 epochs of ImageNet-1k, 1.75 days, 8 GPUs.
PUBLISHED_DINO_RUN = {"images": 1_281_167, "epochs": 100, "days": 1.75, "gpus": 8}
PUBLISHED_DINO_PRESET = "dino_vits16_vanilla"  # that run's command, as a preset
PUBLISHED_IMAGES_PER_GPU_S = (
    PUBLISHED_DINO_RUN["images"] * PUBLISHED_DINO_RUN["epochs"]
    / (PUBLISHED_DINO_RUN["days"] * 86400 * PUBLISHED_DINO_RUN["gpus"])
)  # fmt: skip

FPS = 60  # Walking Tours: 4K60
VENICE_S = 110 * 60  # WT-Venice: 1 h 50 min (the paper's single-video runs)
WT_ALL_VIDEOS, WT_MEAN_S = 10, 98 * 60  # WT-all: ten videos, mean 1 h 38 min


@dataclass(frozen=True)
class StudyRun:
    label: str
    preset: str
    videos: int  # footage: this many videos of ``seconds`` each
    seconds: float


STUDY = [
    StudyRun("DINO, WT-Venice", "dino_vits16_wt", 1, VENICE_S),
    StudyRun("DoRA, WT-Venice", "dora_vits16", 1, VENICE_S),
    StudyRun("DoRA, WT-all", "dora_vits16", WT_ALL_VIDEOS, WT_MEAN_S),
    StudyRun("VideoMAE ViT-S, WT-Venice", "videomae_vits16", 1, VENICE_S),
    StudyRun("VideoMAE ViT-B, WT-Venice", "videomae_vitb16", 1, VENICE_S),
]
TINY = [StudyRun(f"{name} (tiny preset)", f"{name.lower()}_tiny_cpu", 1, 60.0) for name in ("DINO", "DoRA", "VideoMAE")]
# Frames the benchmarks and training read (a curated proxy's size), per method.
FRAME_SIZE = {"dino": (288, 512), "dora": (360, 640), "videomae": (256, 456)}
TINY_FRAME_SIZE = (72, 128)


def clips_per_epoch(config: TrainConfig, videos: int, seconds: float, fps: float = FPS) -> int:
    """Rows of the clip index: one per window of ``stride`` frames with a start whose span fits the video."""
    frames = round(seconds * fps)
    span = (config.data.frames_per_clip - 1) * config.data.stride + 1
    starts = frames - span + 1
    return videos * max(0, math.ceil(starts / config.data.stride))


def samples_per_clip(config: TrainConfig) -> int:
    """DINO's throughput counts images (every frame of a clip is one); the others count clips."""
    return config.data.frames_per_clip if config.method == "dino" else 1


def _build(config: TrainConfig):
    module = method_module(config.method)
    torch.manual_seed(0)
    method = module.build(config.backbone, config.options, ScheduleShape(1, 10))
    for child in method.modules():  # attention as plain matmuls, so every one of its FLOPs is counted
        if hasattr(child, "fused_attn"):
            child.fused_attn = False
    return method.train()


def _step(method, config: TrainConfig, frame_size: tuple[int, int], seed: int) -> None:
    frames = torch.randint(0, 256, (1, config.data.frames_per_clip, 3, *frame_size), dtype=torch.uint8)
    views = method.views({"frames": frames}, torch.Generator().manual_seed(seed))
    state = StepState(step=0, epoch=0, lr=1e-4, weight_decay=0.04)
    loss, _ = method.training_step(views, state, method.student)
    loss.backward()


def flops_per_sample(preset: str, frame_size: tuple[int, int], overrides: dict[str, Any] | None = None) -> float:
    """FLOPs of one training step (views, forward, backward) on one clip, per image (DINO) or per clip."""
    from torch.utils.flop_counter import FlopCounterMode

    config = load_config(preset, overrides)
    method = _build(config)
    with FlopCounterMode(display=False) as counter:
        _step(method, config, frame_size, seed=0)
    return counter.get_total_flops() / samples_per_clip(config)


def read_measured(paths: list[Path], dino_mode: str) -> dict[str, tuple[float, str]]:
    """Per preset: (samples/s on one GPU, where it was measured) from the benchmark scripts' JSON."""
    measured: dict[str, tuple[float, str]] = {}
    for path in paths:
        data = json.loads(path.read_text())
        results = data.get("results") or []
        if "images_per_s" in (results[0] if results else {}):  # bench_dino.py
            by_mode = {r["mode"]: r["images_per_s"] for r in results}
            mode = dino_mode if dino_mode in by_mode else max(by_mode, key=by_mode.get)
            measured[data["preset"]] = (by_mode[mode], f"{data['device']}, {mode}, batch {data['batch_size']}")
        elif "settings" in data:  # bench_dora.py: one row per batch size, the preset's batch if measured
            settings = data["settings"]
            batch = load_config(settings["preset"]).optim.batch_size
            row = next((r for r in results if r["batch_size"] == batch), max(results, key=lambda r: r["clips_per_s"]))
            measured[settings["preset"]] = (
                row["clips_per_s"],
                f"{settings['device']}, {settings['precision']}, batch {row['batch_size']}",
            )
        elif results and "clips_per_s" in results[0]:  # bench_videomae.py
            for r in results:
                measured[r["preset"]] = (r["clips_per_s"], f"{r['device']}, {r['precision']}, batch {r['batch_size']}")
        else:
            raise SystemExit(f"{path}: not the --out file of bench_dino.py, bench_dora.py or bench_videomae.py")
    return measured


def estimate(
    runs: list[StudyRun], throughput: dict[str, tuple[float, str]], flops: dict[str, float] | None = None
) -> list[dict[str, Any]]:
    rows = []
    for run in runs:
        config = load_config(run.preset)
        clips = clips_per_epoch(config, run.videos, run.seconds)
        samples = config.optim.epochs * clips * samples_per_clip(config)
        per_s, source = throughput.get(run.preset, (float("nan"), "not measured"))
        gpu_hours = samples / per_s / 3600
        rows.append({
            "run": run.label, "preset": run.preset, "epochs": config.optim.epochs, "clips_per_epoch": clips,
            "samples": samples, "unit": "images" if samples_per_clip(config) > 1 else "clips",
            "per_gpu_s": per_s, "source": source, "gpu_hours": gpu_hours,
            "tflops_per_s": per_s * flops[run.preset] / 1e12 if flops else float("nan"),
        })  # fmt: skip
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| run | epochs | clips/epoch | work | per GPU | TFLOP/s | GPU hours | 8 GPUs, wall |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        work = f"| {r['run']} | {r['epochs']} | {r['clips_per_epoch']:,} | {r['samples'] / 1e6:.2f} M {r['unit']} | "
        if math.isnan(r["gpu_hours"]):  # --measured without this preset's benchmark
            lines.append(work + "not measured | | | |")
            continue
        wall = r["gpu_hours"] / 8
        wall_text = f"{wall:.1f} h" if wall < 48 else f"{wall / 24:.1f} days"
        rate = f"{r['per_gpu_s']:.1f} {r['unit']}/s | {r['tflops_per_s']:.3g}"
        lines.append(work + f"{rate} | {r['gpu_hours']:.0f} | {wall_text} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--measured",
        type=Path,
        nargs="+",
        default=None,
        help="the --out JSON of bench_dino.py / bench_dora.py / bench_videomae.py run on your GPU",
    )
    parser.add_argument("--dino-mode", default="bf16", help="which bench_dino.py mode to take (default bf16)")
    parser.add_argument(
        "--footage-hours",
        type=float,
        default=None,
        help="estimate each method's preset on this much footage instead of the study's runs",
    )
    parser.add_argument("--tiny", action="store_true", help="the tiny CPU presets (a smoke run in seconds)")
    parser.add_argument("--out", type=Path, default=None, help="also write the rows and FLOP counts as JSON")
    args = parser.parse_args(argv)  # fmt: skip

    runs = TINY if args.tiny else STUDY
    if args.footage_hours:
        presets = dict.fromkeys(run.preset for run in runs)
        runs = [StudyRun(f"{preset}, {args.footage_hours:g} h", preset, 1, args.footage_hours * 3600)
                for preset in presets]  # fmt: skip
    presets = list(dict.fromkeys(run.preset for run in runs))

    def frame_size(preset: str) -> tuple[int, int]:
        return TINY_FRAME_SIZE if args.tiny else FRAME_SIZE[load_config(preset).method]

    torch.set_grad_enabled(True)
    flops = {preset: flops_per_sample(preset, frame_size(preset)) for preset in presets}
    print("FLOPs of one training step (views + forward + backward), counted by torch.utils.flop_counter:")
    for preset, value in flops.items():
        unit = "image" if load_config(preset).method == "dino" else "clip"
        print(f"  {preset}: {value / 1e9:.4g} GFLOP per {unit}")

    if args.measured:
        throughput = read_measured(args.measured, args.dino_mode)
        basis = "measured (" + ", ".join(str(p) for p in args.measured) + ")"
    else:
        # The published run is DINO's vanilla command, so its preset's FLOPs turn that rate into TFLOP/s.
        dino_preset = "dino_tiny_cpu" if args.tiny else PUBLISHED_DINO_PRESET
        if dino_preset not in flops:
            flops[dino_preset] = flops_per_sample(dino_preset, frame_size(dino_preset))
        rate = PUBLISHED_IMAGES_PER_GPU_S * flops[dino_preset]
        throughput = {p: (rate / flops[p], "projected") for p in presets}
        basis = (
            f"projected: {PUBLISHED_IMAGES_PER_GPU_S:.1f} images/s per GPU in DINO's published run x "
            f"{flops[dino_preset] / 1e9:.4g} GFLOP per image = {rate / 1e12:.3g} TFLOP/s sustained per GPU"
        )
    rows = estimate(runs, throughput, flops)
    print(f"\nThroughput: {basis}\n")
    print(markdown(rows))
    for r in rows:
        if r["source"] not in ("projected", "not measured"):
            print(f"  {r['run']}: {r['source']}")

    if args.out:
        report = {"basis": basis, "flops_per_sample": flops, "rows": rows}
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
