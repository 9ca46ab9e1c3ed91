"""How far VideoMAE's masked loss can fall on the study walk, and whether the walk's noise is what holds it up.

    python benchmarks/videomae_headroom.py --workdir /tmp/headroom
    python benchmarks/videomae_headroom.py --workdir /tmp/headroom --run /tmp/study8/runs/videomae-seed0

The CPU study's VideoMAE target asks its loss to fall by 30 %; the study's runs fall by about 19 % (README, "Does
it learn?"). With the paper's normalised-pixel target, each hidden tubelet's own mean scores (n - 1) / n, so what a
network can still gain is the part of each tubelet's texture that the visible tubelets predict. This script
measures that part on the study walk rendered four ways: as the study renders it (sensor noise of 1.5 code
values, x264 at crf 18) and, to see whether noise or compression is what cannot be predicted, without the sensor
noise, lossless (crf 0), and both. On each, on 256 fresh draws of the ``videomae_study_cpu`` preset's views (the
same crops and tube masks on every rendering, fixed seed), it prints the masked-token loss of:

- the preset's network before training (initialised under torch seed 0: about where a run's loss starts);
- all zeros (each hidden tubelet's own mean);
- the best blur inpainting of the hidden tubelets from the visible pixels (``study_cpu.videomae_references``);
- with ``--run``, that trained VideoMAE run's network (trained on the study walk as rendered).

Writes ``<workdir>/headroom.json`` and ``headroom.md``; the renderings stay in ``workdir`` and are reused.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path

from wtours.store import atomic_write_json, atomic_write_text

RENDERINGS = {  # name: (sensor noise std in code values, x264 crf)
    "as the study renders it": (1.5, 18),
    "no sensor noise": (0.0, 18),
    "lossless": (1.5, 0),
    "no noise, lossless": (0.0, 0),
}


def _study_cpu():
    spec = importlib.util.spec_from_file_location("study_cpu", Path(__file__).with_name("study_cpu.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, default=Path("headroom"), help="where the renderings and results go")
    parser.add_argument("--run", type=Path, help="a trained videomae_study_cpu run folder to score too")
    parser.add_argument("--clips", type=int, default=256, help="views drawn per rendering (the study's 256)")
    args = parser.parse_args(argv)
    if args.run is not None and not (args.run / "checkpoint.pt").is_file():
        print(f"videomae_headroom: {args.run}: not a run folder (no checkpoint.pt)", file=sys.stderr)
        return 2
    if args.clips < 1:
        print(f"videomae_headroom: --clips must be >= 1, got {args.clips}", file=sys.stderr)
        return 2
    import torch

    from wtours.errors import WtoursError
    from wtours.sample.study import render_study_walk
    from wtours.trainers.training.checkpoint import load_method
    from wtours.trainers.training.config import load_config
    from wtours.trainers.training.methods import ScheduleShape, method_module

    torch.set_num_threads(1)  # as the study's runs: results do not depend on the machine's core count
    study = _study_cpu()
    trained = None
    if args.run is not None:
        try:
            trained, run_config = load_method(args.run / "checkpoint.pt")
        except WtoursError as err:
            print(f"videomae_headroom: {err}", file=sys.stderr)
            return 2
        if run_config.method != "videomae":
            print(f"videomae_headroom: {args.run} is a {run_config.method} run, not a VideoMAE one", file=sys.stderr)
            return 2
    config = load_config("videomae_study_cpu", {"run.device": "cpu"})
    torch.manual_seed(config.run.seed)
    untrained = method_module("videomae").build(config.backbone, config.options, ScheduleShape(1, 1)).eval()
    args.workdir.mkdir(parents=True, exist_ok=True)
    rows, began = [], time.perf_counter()
    for name, (noise_std, crf) in RENDERINGS.items():
        walk = args.workdir / f"walk-noise{noise_std:g}-crf{crf}.mp4"
        truth = walk.with_suffix(".truth.json")
        if not (walk.is_file() and truth.is_file()):
            render_study_walk(walk, noise_std=noise_std, crf=crf).save(truth)
        dataset = study.study_dataset(config, walk, truth)
        base = study.videomae_references(untrained, dataset, n_clips=args.clips)
        row = {"rendering": name, "noise_std": noise_std, "crf": crf, "bytes": walk.stat().st_size,
               "untrained": base["heldout"], "zeros": base["zeros"], "inpainting": base["inpainting"]}  # fmt: skip
        if trained is not None:
            row["run"] = study.videomae_references(trained, dataset, n_clips=args.clips)["heldout"]
        row["explained_pct"] = 100 * (1 - row["inpainting"] / row["zeros"])
        rows.append(row)
        print(json.dumps(row), flush=True)
    header = "| rendering of the study walk | MP4 size | untrained | all zeros | blur inpainting (explains) |"
    lines = [header + (" run |" if args.run else ""), "|---|---:|---:|---:|---:|" + ("---:|" if args.run else "")]
    for row in rows:
        line = (f"| {row['rendering']} (noise {row['noise_std']:g}, crf {row['crf']}) | {row['bytes'] / 1e6:.2f} MB "
                f"| {row['untrained']:.3f} | {row['zeros']:.3f} "
                f"| {row['inpainting']:.3f} ({row['explained_pct']:.1f} %) |")  # fmt: skip
        lines.append(line + (f" {row['run']:.3f} |" if args.run else ""))
    lines.append(f"\n{args.clips} views per rendering; {time.perf_counter() - began:.0f} s.")
    atomic_write_text(args.workdir / "headroom.md", "\n".join(lines) + "\n")
    atomic_write_json(args.workdir / "headroom.json", {"run": str(args.run) if args.run else None, "rows": rows})
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
