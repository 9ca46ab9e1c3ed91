"""The CPU study: does each method learn? DINO, DoRA and VideoMAE pretrained on the embedded study walk, each
against the same network before training, over several seeds, on 2 CPU cores.

    python benchmarks/study_cpu.py                          # 3 methods x seeds 0 1 2, 2 jobs of 1 thread
    python benchmarks/study_cpu.py --methods dino --seeds 0 # one run
    python benchmarks/study_cpu.py --val-per-class 100      # the same runs on 2000 validation crops
    python benchmarks/study_cpu.py --linear                 # also DINO's linear probe of each run and its floor

The study set (`wtours.sample.study`): a slow walk over 20 real photographs that installed packages ship
(128 x 96, 8 fps, 6 s per photo, a cut between photos) to pretrain on, without labels, and 64-px crops of the
same photos labelled by photo, the validation crops taken from a band of each photo that neither the walk nor
any training crop shows. Each run trains the preset ``<method>_study_cpu`` on frames (DINO) or clips that never
cross a cut (DoRA, VideoMAE: any start, as the curated index) of the walk, then:

- k-NN (k = 20, T = 0.07, DINO's protocol) of its encoder against its own encoder at step 0 (the floor);
- its loss, first logged interval against the last;
- VideoMAE only: on 256 fresh draws of the preset's views (crops and tube masks), the run's masked loss against
  two predictors that learn nothing: all zeros (each hidden tubelet's own mean) and the best blur inpainting of
  the hidden tubelets from the visible pixels (a Gaussian-weighted average, sigma 2-8 px, scaled to fit). What
  the loss can fall to at this scale is read against these.

Targets (issue 12), on the mean over seeds with every seed on the right side: DINO and DoRA >= 10 points above
their floor; VideoMAE's masked-reconstruction loss down >= 30 % and its k-NN at or above its floor; the whole
study <= 20 minutes on 2 cores. Each mean gain is printed with its sd over seeds and the 95 % interval of the
mean (Student's t over the seeds). Runs already finished in ``--workdir`` are reused, so a rerun only reports.
Writes ``<workdir>/study.json``, ``study.md`` (the README's table) and `wtours compare` of every run into
``comparison/``: each method once, its mean over the seeds with each seed a dot, and ``summary.md`` (mean ± sd).
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

METHODS = ("dino", "dora", "videomae")
TARGETS = {"dino": "k-NN >= floor + 10", "dora": "k-NN >= floor + 10", "videomae": "loss -30 %, k-NN >= floor"}
K = 20
VAL_PER_CLASS = 20  # the study set's validation crops per photo (400 in all), as `wtours eval knn` uses it


def build_study(workdir: Path, val_per_class: int = VAL_PER_CLASS) -> tuple[Path, Path, Path]:
    """The walk, its truth and the labelled set, made once in ``workdir``. Another ``val_per_class`` makes a
    second set beside it (``study_set_val<N>``) with the same training crops; its validation crops extend the
    study set's (the first 20 of each photo are the same crops)."""
    from wtours.sample.study import make_study_labelled_set, render_study_walk

    walk, truth_path = workdir / "study_walk.mp4", workdir / "study_walk.truth.json"
    if not (walk.is_file() and truth_path.is_file()):
        render_study_walk(walk).save(truth_path)
    name = "study_set" if val_per_class == VAL_PER_CLASS else f"study_set_val{val_per_class}"
    return walk, truth_path, make_study_labelled_set(workdir / name, per_class_val=val_per_class)


def study_dataset(config, walk: Path, truth_path: Path):
    """Every frame of the walk (DINO: one image per item) or clips of ``data.frames_per_clip`` frames
    ``data.stride`` apart that stay inside one photo's stretch of the walk."""
    from wtours.sample.study import StudyTruth
    from wtours.trainers.training.data import FrameClips, decode_frames

    truth = StudyTruth.load(truth_path)
    images = decode_frames([walk], every=1, short_side=truth.height, max_frames=truth.n_frames)
    if config.data.frames_per_clip == 1:
        return images  # one 1-frame clip per frame
    frames = images.frames[:, 0]  # [N, 3, H, W]
    return FrameClips(frames, config.data.frames_per_clip, config.data.stride, truth.scene_bounds)


def videomae_references(run, dataset, n_clips: int = 256, seed: int = 1234) -> dict[str, float]:
    """Masked-token losses on ``n_clips`` fresh draws of a VideoMAE run's own views: the run's ("heldout"), all
    zeros', and the best blur inpainting's (see the module docstring). ``run`` is a run folder or a VideoMAE
    method (in eval mode); draws are fixed by ``seed``."""
    import torch

    from wtours.store import RunDir
    from wtours.trainers.training.checkpoint import load_method
    from wtours.trainers.training.videomae import masked_reconstruction_loss, reconstruction_targets
    from wtours.trainers.training.views import IMAGENET_MEAN, IMAGENET_STD, gaussian_blur

    method = load_method(RunDir(Path(run)).checkpoint_path)[0] if isinstance(run, (str, Path)) else run
    generator = torch.Generator().manual_seed(seed)
    picks = torch.randperm(len(dataset), generator=generator)[:n_clips]
    views = method.views({"frames": torch.stack([dataset[int(i)]["frames"] for i in picks])}, generator)
    with torch.no_grad():
        trained = masked_reconstruction_loss(method.student(views.clips, views.visible_index), views.targets,
                                             views.mask)  # fmt: skip
    shape = (1, 3, 1, 1, 1)
    pixels = views.clips * torch.tensor(IMAGENET_STD).view(shape) + torch.tensor(IMAGENET_MEAN).view(shape)
    batch, _, time, side, _ = pixels.shape  # [B, 3, T, S, S]
    patch, tubelet = method.patch_size, method.options.tubelet_size
    hidden = views.mask.view(batch, 1, time // tubelet, side // patch, side // patch)
    visible = (~hidden).float()
    for dim, repeat in ((2, tubelet), (3, patch), (4, patch)):
        visible = visible.repeat_interleave(repeat, dim=dim)

    def blur(x: torch.Tensor, sigma: float) -> torch.Tensor:  # each [S, S] plane, as the views' blur does
        planes = x.flatten(0, 2).unsqueeze(1)
        return gaussian_blur(planes, torch.full((len(planes),), sigma)).view_as(x)

    target, mask = views.targets[views.mask], views.mask
    inpainting = math.inf
    for sigma in (2.0, 4.0, 6.0, 8.0):
        filled = blur(pixels * visible, sigma) / blur(visible, sigma).clamp_min(1e-6)
        guess = reconstruction_targets(filled.transpose(1, 2), tubelet, patch, method.options.normalize_target)[mask]
        scale = (guess * target).sum() / (guess * guess).sum().clamp_min(1e-12)  # the least-squares fit
        inpainting = min(inpainting, float((scale * guess - target).pow(2).mean()))
    return {"heldout": float(trained), "zeros": float(target.pow(2).mean()), "inpainting": inpainting}


def run_one(method: str, seed: int, workdir: str, threads: int, smoke: bool = False,
            settings: dict[str, object] | None = None, tag: str = "",
            val_per_class: int = VAL_PER_CLASS, knn_every: int | None = None, device: str = "cpu",
            linear: bool = False) -> dict:  # fmt: skip
    """Train (or reuse) one run and evaluate it and its floor. Runs in a worker process. ``smoke``: 2 steps;
    ``settings``: overrides of the preset (``--set``), the run named ``<method>[-<tag>]-seed<seed>``;
    ``val_per_class``: the k-NN's validation crops per photo (reports ``eval/knn[_untrained]_val<N>.json``
    unless it is the study set's 20); ``knn_every``: the k-NN of the encoder on the study set every N steps while it
    trains (`run.knn_every`: changes nothing it learns; a run reused from before keeps the curve it has);
    ``device``: where it trains and is scored (``cuda``: the same study on a GPU); ``linear``: also DINO's linear
    probe, cached protocol (features of centre crops, 100 epochs), of the encoder and of its floor."""
    import torch

    from wtours.store import RunDir
    from wtours.trainers.evaluation.compare import load_run
    from wtours.trainers.evaluation.knn import run_knn
    from wtours.trainers.evaluation.monitor import KnnMonitor
    from wtours.trainers.training.config import load_config
    from wtours.trainers.training.engine import pretrain
    from wtours.trainers.training.resume import trained_otherwise

    torch.set_num_threads(threads)
    root = Path(workdir)
    walk, truth_path, labelled = build_study(root, val_per_class)
    name = f"{method}-{tag}-seed{seed}" if tag else f"{method}-seed{seed}"
    overrides = {
        "run.output_dir": str(root / "runs"), "run.name": name, "run.seed": seed, "run.device": device,
        **({"optim.epochs": 1, "optim.steps_per_epoch": 2, "run.log_every": 1} if smoke else {}), **(settings or {}),
    }  # fmt: skip
    config = load_config(f"{method}_study_cpu", overrides)
    options = config.options
    image_size = getattr(options, "global_crops_size", None) or options.crop_size
    if knn_every:
        monitoring = {"run.knn_every": knn_every, "run.knn_data": str(labelled), "run.knn_image_size": image_size}
        config = load_config(f"{method}_study_cpu", {**overrides, **monitoring})
    run = RunDir(config.run_dir)
    if run.root.exists() and trained_otherwise(run.config_path, config):  # e.g. the preset changed since
        print(f"{name}: trained with other settings than {method}_study_cpu gives now; training it again", flush=True)
        shutil.rmtree(run.root)
    began = time.perf_counter()
    trained_now = not run.is_finished()
    dataset = study_dataset(config, walk, truth_path) if trained_now or method == "videomae" else None
    if trained_now:
        pretrain(config, dataset, resume=run.checkpoint_path.exists(), show_progress=False,
                 monitor=KnnMonitor.of(config, study_set=lambda: labelled, announce=False))  # fmt: skip
    summary = run.summary()
    train_s = time.perf_counter() - began

    def on_this_set(report_path: Path) -> Path:  # reports on another validation set than the study's own
        other = val_per_class != VAL_PER_CLASS
        return report_path.with_name(f"{report_path.stem}_val{val_per_class}.json") if other else report_path

    knn = {}
    for untrained in (False, True):
        report_path = on_this_set(run.knn_path(untrained=untrained))
        report = run_knn(
            config.run_dir, labelled, ks=(K,), temperature=0.07, image_size=image_size, batch_size=100,
            device=device, num_workers=0, out_json=report_path, untrained=untrained,
        )  # fmt: skip
        knn[untrained], val_crops = report["top1"][str(K)], report["n_val"]
    probes = {}
    if linear:  # about 8 s each on a CPU core
        from wtours.trainers.evaluation.linear import LinearProbeConfig, run_linear_probe

        for untrained in (False, True):
            report = run_linear_probe(
                config.run_dir, labelled / "train", labelled / "val", on_this_set(run.linear_path(untrained=untrained)),
                config=LinearProbeConfig(protocol="cached"), resize=image_size, crop=image_size, num_workers=0,
                device=device, untrained=untrained,
            )  # fmt: skip
            probes[untrained] = 100 * report["best_top1"]
    losses = run.losses()
    references = videomae_references(config.run_dir, dataset) if method == "videomae" else {}
    return {
        "method": method,
        "seed": seed,
        "run_dir": str(config.run_dir),
        "steps": summary["steps_done"],
        "precision": summary.get("precision", "fp32"),  # as trained: bf16 falls back to fp32 on some CPUs
        "train_s": round(train_s, 1) if trained_now else None,
        "loss_first": losses[0],
        "loss_last": losses[-1],
        "loss_drop_pct": 100 * (losses[0] - losses[-1]) / losses[0],
        "knn": knn[False],
        "floor": knn[True],
        "gain": knn[False] - knn[True],
        "val_crops": val_crops,
        "knn_curve": [[step, top1[K]] for step, top1 in load_run(run.root).knn_curve if K in top1],
        **({"reference_losses": references} if references else {}),
        **({"linear": probes[False], "linear_floor": probes[True], "linear_gain": probes[False] - probes[True]}
           if probes else {}),
    }  # fmt: skip


def verdict(method: str, rows: list[dict]) -> tuple[bool, str]:
    """Whether ``rows`` (one per seed) meet the method's target, and the mean figures."""
    from wtours.trainers.evaluation.compare import seed_stats

    gain = seed_stats([row["gain"] for row in rows])
    drop = sum(row["loss_drop_pct"] for row in rows) / len(rows)
    if method == "videomae":
        ok = drop >= 30 and all(row["loss_drop_pct"] > 0 for row in rows)
        ok = ok and gain.mean >= 0 and all(row["gain"] >= 0 for row in rows)
    else:
        ok = gain.mean >= 10 and all(row["gain"] > 0 for row in rows)
    sd = ""
    if gain.n > 1:  # Student's t over the seeds: how far the mean of so few can sit from the method's own
        low, high = gain.mean - gain.half95, gain.mean + gain.half95
        sd = f" (sd {gain.sd:.1f} over seeds; 95 % interval of the mean {low:+.1f} to {high:+.1f})"
    return ok, f"k-NN {gain.mean:+.1f} points{sd}, loss {-drop:+.0f} %"


def curve_tables(rows: list[dict]) -> list[str]:
    """Per method, the k-NN of each run's encoder at each measured step (--knn-every), step 0 being the floor;
    "first above" is the first step from which every later score stays above it."""
    lines: list[str] = []
    for method in dict.fromkeys(row["method"] for row in rows):
        traced = [row for row in rows if row["method"] == method and row.get("knn_curve")]
        if not traced:
            continue
        steps = sorted({step for row in traced for step, _ in row["knn_curve"]})
        lines += ["", f"| {method}: k-NN top-1 (k={K}) after step | " + " | ".join(map(str, steps)) +
                  " | first above the floor |", "|---|" + "---:|" * (len(steps) + 1)]  # fmt: skip
        for row in traced:
            curve = dict(row["knn_curve"])
            floor = curve.get(0)
            above = None
            if floor is not None:
                for step in sorted(curve, reverse=True):
                    if curve[step] <= floor:
                        break
                    above = step
            cells = [f"{curve[step]:.1f}" if step in curve else "" for step in steps]
            lines.append(f"| seed {row['seed']} | " + " | ".join(cells) + f" | {above if above is not None else '-'} |")
    return lines


def markdown(rows: list[dict], methods: list[str], total_s: float) -> str:
    lines = [
        "| method | seed | steps | train s | loss first -> last | k-NN top-1 (k=20) | untrained floor | gain |",
        "|---|---:|---:|---:|---|---:|---:|---:|",
    ]
    for row in rows:
        train = f"{row['train_s']:.0f}" if row["train_s"] is not None else "reused"
        lines.append(
            f"| {row['method']} | {row['seed']} | {row['steps']} | {train} | {row['loss_first']:.3f} -> "
            f"{row['loss_last']:.3f} ({-row['loss_drop_pct']:+.0f} %) | {row['knn']:.1f} | {row['floor']:.1f} | "
            f"{row['gain']:+.1f} |"
        )
    references = [row for row in rows if "reference_losses" in row]
    if references:
        lines += [
            "",
            "| videomae seed | its loss on 256 fresh views | all zeros | best blur inpainting |",
            "|---:|---:|---:|---:|",
        ]
        lines += [
            f"| {row['seed']} | {row['reference_losses']['heldout']:.3f} | {row['reference_losses']['zeros']:.3f}"
            f" | {row['reference_losses']['inpainting']:.3f} |"
            for row in references
        ]
    probed = [row for row in rows if "linear" in row]
    if probed:
        lines += ["", "| method | seed | linear top-1 (cached probe) | untrained | gain |", "|---|---:|---:|---:|---:|"]
        lines += [
            f"| {row['method']} | {row['seed']} | {row['linear']:.1f} | {row['linear_floor']:.1f} | "
            f"{row['linear_gain']:+.1f} |"
            for row in probed
        ]
    lines += curve_tables(rows)
    lines += ["", "| method | target | mean over seeds | met |", "|---|---|---|---|"]
    for method in methods:
        ok, figures = verdict(method, [row for row in rows if row["method"] == method])
        lines.append(f"| {method} | {TARGETS[method]} | {figures} | {'yes' if ok else 'NO'} |")
    reused = sum(row["train_s"] is None for row in rows)
    timing = (
        f"target <= 20 min on 2 cores: {'met' if total_s <= 20 * 60 else 'NO'}"
        if not reused  # a rerun that reuses finished runs times only their scoring
        else f"{reused} of {len(rows)} runs reused from an earlier invocation, so not the study's time: the "
        "20-minute target is judged on a study from an empty --workdir"
    )
    lines.append(
        f"\nWall clock of the whole study: {total_s / 60:.1f} min ({timing}; {os.cpu_count()} cores here), trained in "
        f"{' and '.join(sorted({row['precision'] for row in rows}))}; k-NN on "
        f"{' and '.join(str(n) for n in sorted({row['val_crops'] for row in rows}))} validation crops."
    )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--workdir", type=Path, default=Path("study-cpu"))
    parser.add_argument("--jobs", type=int, default=2, help="runs at once, each in its own process")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run")
    parser.add_argument("--smoke", action="store_true", help="2 steps per run: checks the machinery, not learning")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a preset key in every run (a variant of the study; name it with --tag)",
    )
    parser.add_argument("--tag", default="", help="runs named <method>-<tag>-seed<n>, beside the presets' runs")
    parser.add_argument(
        "--val-per-class",
        type=int,
        default=VAL_PER_CLASS,
        metavar="N",
        help=f"k-NN validation crops per photo (default {VAL_PER_CLASS}, the study set's 400); another N scores the"
        " same runs on a larger or smaller set, reported in study[-TAG]-val<N>.md/.json (no figures)",
    )
    parser.add_argument(
        "--knn-every",
        type=int,
        default=None,
        metavar="N",
        help="also score each run's k-NN every N steps while it trains (run.knn_every; about 5 s each on a CPU): "
        "the curve from the floor at step 0, in study[-TAG].md/.json. Changes nothing a run learns",
    )
    parser.add_argument(
        "--linear",
        action="store_true",
        help="also DINO's linear probe of each run and of its floor (cached protocol: features of centre crops, 100 "
        "epochs; about 8 s each on a CPU core), in study[-TAG].md/.json and the comparison. Not a target",
    )
    parser.add_argument(
        "--device",
        choices=("cpu", "cuda"),
        default="cpu",
        help="where every run trains and is scored: cuda runs the same study on a GPU (the presets' bf16 there)",
    )
    args = parser.parse_args(argv)
    if args.knn_every is not None and args.knn_every < 1:
        parser.error(f"--knn-every must be at least 1, got {args.knn_every}")
    if args.val_per_class < 1:
        parser.error(f"--val-per-class must be at least 1, got {args.val_per_class}")

    from wtours.errors import WtoursError
    from wtours.trainers.training.config import load_config, parse_override

    try:  # a wrong --set is one line before any work
        settings = dict(parse_override(item) for item in args.set)
        for method in args.methods:
            load_config(f"{method}_study_cpu", settings)
    except WtoursError as err:
        parser.error(str(err))
    if args.device == "cuda":  # no GPU is one line, before any work
        from wtours.trainers.training.engine import resolve_device

        try:
            resolve_device("cuda")
        except WtoursError as err:
            parser.error(f"--device cuda: {err}")
    suffix = f"-{args.tag}" if args.tag else ""
    other_set = args.val_per_class != VAL_PER_CLASS
    if other_set:
        suffix += f"-val{args.val_per_class}"
    began = time.perf_counter()
    try:
        args.workdir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        parser.error(f"--workdir {args.workdir}: {err.strerror}")
    build_study(args.workdir, args.val_per_class)
    # Slowest first, so that the last job to start is a short one.
    order = {"dora": 0, "dino": 1, "videomae": 2}
    plan = sorted(((m, s) for m in args.methods for s in args.seeds), key=lambda item: (order[item[0]], item[1]))
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    common = (str(args.workdir), args.threads, args.smoke, settings, args.tag, args.val_per_class, args.knn_every,
              args.device, args.linear)
    if args.jobs == 1:
        rows = [run_one(m, s, *common) for m, s in plan]
    else:
        # CUDA does not survive a fork of a process that has asked for it: GPU runs start in fresh processes.
        context = multiprocessing.get_context("spawn") if args.device == "cuda" else None
        with ProcessPoolExecutor(max_workers=args.jobs, mp_context=context) as pool:
            futures = [pool.submit(run_one, m, s, *common) for m, s in plan]
            rows = [future.result() for future in futures]
    rows.sort(key=lambda row: (METHODS.index(row["method"]), row["seed"]))
    total_s = time.perf_counter() - began

    table = markdown(rows, args.methods, total_s)
    print(table)
    (args.workdir / f"study{suffix}.md").write_text(table)
    (args.workdir / f"study{suffix}.json").write_text(json.dumps({"rows": rows, "total_s": total_s}, indent=2) + "\n")

    met = all(verdict(m, [r for r in rows if r["method"] == m])[0] for m in args.methods)
    if other_set:  # `wtours compare` reads the runs' reports on the study set itself
        return 0 if met else 1
    from wtours.trainers.evaluation.compare import compare_runs

    # Every run: compare draws each method once, its mean over the seeds with each seed a dot (summary.md).
    person = sorted((args.workdir / "study_set" / "val").glob("*/*.png"))[:1]
    figures = args.workdir / f"comparison{suffix}"
    compare_runs([Path(row["run_dir"]) for row in rows], figures, attention_images=person, attention_size=64,
                 device=args.device)  # fmt: skip
    print(f"figures: {figures}")
    return 0 if met and math.isfinite(total_s) else 1


if __name__ == "__main__":
    raise SystemExit(main())
