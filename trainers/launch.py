"""Entry points behind ``wtours pretrain``, ``wtours eval knn`` and the demo's training stage."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from wtours.progress import console
from wtours.trainers.training.config import TrainConfig, config_to_tree, load_config


def run_pretrain(
    config: TrainConfig,
    *,
    videos: list[Path] | None = None,
    resume: bool = False,
    stop_after_steps: int | None = None,
    show_progress: bool = True,
):
    """Train on the curated clips of ``config.data`` or, with ``videos``, on frames decoded from them."""
    from wtours.trainers.training.data import clip_dataset, decode_frames
    from wtours.trainers.training.engine import pretrain

    if videos:
        short_side = config.data.proxy_short_side or 256
        dataset = decode_frames(
            videos,
            every=config.data.stride,
            short_side=short_side,
            frames_per_clip=config.data.frames_per_clip,
        )
    else:
        dataset = clip_dataset(config.data, config.run.seed)
    return pretrain(
        config, dataset, resume=resume, stop_after_steps=stop_after_steps, show_progress=show_progress
    )


def run_knn(
    encoder_path: Path,
    labelled_dir: Path | None,
    *,
    ks: tuple[int, ...],
    temperature: float,
    image_size: int,
    batch_size: int,
    device: str,
    num_workers: int,
    out_json: Path | None,
    sample_dir: Path,
    untrained: bool = False,
) -> dict[str, Any]:
    """Weighted k-NN of an exported encoder; ``labelled_dir=None`` builds and uses the study set
    (`wtours.sample.study.make_study_labelled_set`) in ``sample_dir``.
    ``untrained=True`` evaluates the encoder's architecture at random initialisation instead (the baseline)."""
    import torch

    from wtours.sample.study import make_study_labelled_set
    from wtours.store import atomic_write_json, encoder_weights
    from wtours.trainers.evaluation.features import load_encoder
    from wtours.trainers.evaluation.knn import evaluate_knn
    from wtours.trainers.training.engine import resolve_device

    encoder_path = encoder_weights(encoder_path)
    encoder = load_encoder(None, encoder_path, untrained=untrained)
    if labelled_dir is None:
        labelled_dir = make_study_labelled_set(sample_dir)
    with torch.inference_mode():
        result = evaluate_knn(
            encoder,
            labelled_dir,
            ks=ks,
            temperature=temperature,
            image_size=image_size,
            batch_size=batch_size,
            device=resolve_device(device),
            num_workers=num_workers,
        )
    report = {
        "encoder": str(encoder_path),
        "untrained": untrained,
        "architecture": encoder.pretrained_cfg.get("architecture"),
        "labelled_set": str(labelled_dir),
        "classes": result.classes,
        "n_train": result.n_train,
        "n_val": result.n_val,
        "temperature": temperature,
        "image_size": image_size,
        "top1": {str(k): value for k, value in result.top1.items()},
        "majority_class_top1": result.chance,
    }
    if out_json is not None:
        atomic_write_json(out_json, report)
    return report


def train_demo_run(
    preset: str, workdir: Path, data_dir: Path, *, frames_per_clip: int, stride: int, show_progress: bool = True
) -> tuple[TrainConfig, list[float]]:
    """Train a tiny preset on the demo's curated clips to its end (CPU; 2 epochs x 10 steps, a demo of the
    machinery, not a useful encoder) and return its config and logged losses.

    ``frames_per_clip`` and ``stride`` must be those the clips were curated with. Idempotent: a finished
    run is reused, an interrupted one resumes. The run goes to ``workdir/runs/<preset's run name>/``.
    """
    from wtours.store import RunDir

    overrides = {
        "run.output_dir": str(workdir / "runs"),
        "run.device": "cpu",
        "data.data_dir": str(data_dir),
        "data.frames_per_clip": frames_per_clip,
        "data.stride": stride,
        "data.mode": "index",
        "optim.steps_per_epoch": 10,
    }
    config = load_config(preset, overrides)
    if config.method != "videomae":  # image methods see every frame of a clip: about 16 frames per step
        config = load_config(preset, {**overrides, "optim.batch_size": max(1, 16 // frames_per_clip)})
    run = RunDir(config.run_dir)
    if not run.is_finished():
        run_pretrain(config, resume=run.checkpoint_path.exists(), show_progress=show_progress)
    return config, run.losses()


def demo_pretrain_and_knn(
    workdir: Path,
    data_dir: Path,
    *,
    frames_per_clip: int,
    stride: int,
    show_progress: bool = True,
) -> dict[str, Any]:
    """The demo's training stage: the tiny DINO preset on the curated clips of ``data_dir`` (every frame
    of a clip is an image for DINO), on the CPU in seconds, then k-NN on the sample's labelled crops.

    ``frames_per_clip`` and ``stride`` must be those the clips were curated with. Idempotent: a finished
    run and its k-NN report are reused, an interrupted run resumes. Writes ``workdir/runs/dino-tiny/``
    (config, metrics, checkpoint, encoder, and ``eval/knn.json`` where ``wtours compare`` reads it) and
    ``workdir/labelled/``; returns the k-NN report plus ``run_dir`` and the first and last logged losses.
    """
    from wtours.store import RunDir, read_json

    config, losses = train_demo_run(
        "dino_tiny_cpu", workdir, data_dir, frames_per_clip=frames_per_clip, stride=stride,
        show_progress=show_progress,
    )  # fmt: skip
    run = RunDir(config.run_dir)
    encoder_path = run.encoder_path
    reports = {}
    for untrained in (False, True):
        knn_path = run.knn_path(untrained=untrained)
        report = read_json(knn_path)
        if report is None or knn_path.stat().st_mtime < encoder_path.stat().st_mtime:
            report = run_knn(
                config.run_dir,
                None,
                ks=(5, 10),
                temperature=0.07,
                image_size=config.options.global_crops_size,
                batch_size=64,
                device="cpu",
                num_workers=0,
                out_json=knn_path,
                sample_dir=workdir / "labelled",
                untrained=untrained,
            )
        reports[untrained] = report
    report, baseline = reports[False], reports[True]
    console.print(
        f"DINO (tiny, CPU): loss {losses[0]:.3f} -> {losses[-1]:.3f} over {len(losses)} steps; k-NN top-1 "
        + ", ".join(f"k={k}: {value:.1f}%" for k, value in report["top1"].items())
        + f" (untrained {max(baseline['top1'].values()):.1f}%, majority class {report['majority_class_top1']:.1f}%)",
        highlight=False,
    )
    return {**report, "untrained_top1": baseline["top1"], "run_dir": str(config.run_dir),
            "first_loss": losses[0], "last_loss": losses[-1]}  # fmt: skip


def print_config(config: TrainConfig) -> None:
    import yaml

    print(yaml.safe_dump(config_to_tree(config), sort_keys=False), end="")
