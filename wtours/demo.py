"""`wtours demo`: the whole chain, offline, on the embedded sample.

The demo renders the sample videos, serves them from a loopback HTTP server as a video host would
(the walk as a direct .mp4 link, the movie-like video inside an HTML page), fetches them with the real
`wtours fetch` machinery through yt-dlp, and then runs each later stage. Everything lands in one
folder::

    <workdir>/source/         the rendered sample: walk.mp4, movie.mp4, their *.truth.json
    <workdir>/manifest.yaml   the manifest the demo fetched (loopback URLs, valid while it ran)
    <workdir>/data/           the data directory: videos/<id>.mp4 + <id>.json, then analysis/, clips/ ...

Every stage is a small function of the run in STAGES, in order; a new stage (analysis, curation,
pretraining, comparison) is one more function appended there. Stages are idempotent, so re-running
the demo redoes nothing that is already done.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from wtours.errors import WtoursError
from wtours.progress import console
from wtours.sample.sample_set import MOVIE_ID, SAMPLE_NAMES, WALK_ID
from wtours.store import RunDir, Store, file_sha256

SAMPLE_WIDTH = 640
SAMPLE_FPS = 30


@dataclass
class DemoRun:
    """What the stages share: where things go, and what to tell the user at the end."""

    workdir: Path
    seconds: float
    detector: str | None = None  # objects analysis: weights/config path or name; None skips it
    # (what, where) lines of the final summary, and commands worth trying next.
    outputs: list[tuple[str, str]] = field(default_factory=list)
    next_commands: list[str] = field(default_factory=list)

    @property
    def source_dir(self) -> Path:
        return self.workdir / "source"

    @property
    def manifest_path(self) -> Path:
        return self.workdir / "manifest.yaml"

    @property
    def data_dir(self) -> Path:
        return self.workdir / "data"


def render_sample(run: DemoRun) -> None:
    """Render the sample videos and their truth into source/, unless the same ones are already there."""
    from wtours.sample import SampleTruth, write_sample_set
    from wtours.sample.sample_set import frame_height

    expected = (SAMPLE_WIDTH, frame_height(SAMPLE_WIDTH), round(run.seconds * SAMPLE_FPS))
    current = True
    for name in SAMPLE_NAMES.values():
        truth_path = run.source_dir / f"{name}.truth.json"
        if not (run.source_dir / f"{name}.mp4").is_file() or not truth_path.is_file():
            current = False
            break
        truth = SampleTruth.load(truth_path)
        current = current and (truth.width, truth.height, truth.n_frames) == expected
    if not current:
        import shutil

        # Runs trained on an earlier rendering are stale too (videos and their analysis are replaced by
        # the fetch stage, which sees their checksums change).
        for derived in ("runs", "tracks", "labelled", "comparison"):
            shutil.rmtree(run.workdir / derived, ignore_errors=True)
        (run.workdir / "videomae-reconstruction.png").unlink(missing_ok=True)
        with console.status(f"rendering the embedded sample ({run.seconds:g} s, {SAMPLE_WIDTH} px wide)"):
            write_sample_set(run.source_dir, seconds=run.seconds, width=SAMPLE_WIDTH, fps=SAMPLE_FPS)
    run.outputs.append(("sample videos + ground truth", f"{run.source_dir}/{{walk,movie}}.mp4, *.truth.json"))


def fetch_from_loopback(run: DemoRun) -> None:
    """Serve source/ on 127.0.0.1 and fetch both videos through yt-dlp into data/videos/."""
    from wtours.manifest import load_manifest
    from wtours.pipelines.fetch import FetchOptions, fetch_videos
    from wtours.sample.sample_set import sample_manifest
    from wtours.sample.server import LoopbackServer, write_video_page
    from wtours.store import atomic_write_text

    write_video_page(
        run.source_dir, f"{SAMPLE_NAMES[MOVIE_ID]}.mp4", page_name="movie.html", title="A movie-like sample"
    )
    store = Store.at(run.data_dir)
    for video_id, name in SAMPLE_NAMES.items():
        sidecar = store.sidecar(video_id)
        if sidecar and sidecar.get("sha256") != file_sha256(run.source_dir / f"{name}.mp4"):
            _forget(store, video_id)  # fetched from an earlier rendering (other --seconds): stale
    with LoopbackServer(run.source_dir) as server:
        sources = {WALK_ID: server.url(f"{SAMPLE_NAMES[WALK_ID]}.mp4"), MOVIE_ID: server.url("movie.html")}
        header = f"# Written by `wtours demo`: the URLs were served by its loopback server on port {server.port}.\n"
        atomic_write_text(run.manifest_path, header + sample_manifest(sources, run.seconds))
        manifest = load_manifest(run.manifest_path)
        results = fetch_videos(manifest, manifest.videos, store, FetchOptions(retries=2, retry_wait=0.5))
    failed = [f"{result.video_id}: {result.error}" for result in results if not result.ok]
    if failed:
        raise WtoursError("demo: fetching the sample from the loopback server failed: " + "; ".join(failed))
    run.outputs.append(("manifest (loopback URLs)", str(run.manifest_path)))
    for result in results:
        sidecar = store.sidecar(result.video_id) or {}
        # yt-dlp should hand over the served bytes untouched; say so, since the truth depends on it.
        same = sidecar.get("sha256") == file_sha256(run.source_dir / f"{SAMPLE_NAMES[result.video_id]}.mp4")
        note = "identical to the rendered file" if same else "differs from the rendered file (remuxed?)"
        where = f"{result.path} + {store.sidecar_path(result.video_id).name} ({note})"
        run.outputs.append((f"{result.video_id} ({result.status})", where))
    run.next_commands.append(f"wtours status --manifest {run.manifest_path} --data-dir {run.data_dir}")


def _extra_missing(run: DemoRun, stage: str, extra: str, modules: tuple[str, ...]) -> bool:
    """True (and a note in the summary) when an optional dependency of ``stage`` is not installed."""
    import importlib.util

    missing = [module for module in modules if importlib.util.find_spec(module) is None]
    if missing:
        run.outputs.append((stage, f"skipped: {', '.join(missing)} missing (pip install 'wtours[{extra}]')"))
    return bool(missing)


def analyze_sample(run: DemoRun) -> None:
    """Measure both videos (lightness, shots, blank and frozen frames) in one decode pass each, check the
    measurements against the sample's ground truth, and draw the paper's Figure 2 and Table 1."""
    if _extra_missing(run, "analysis", "analysis", ("scenedetect", "cv2")):
        return
    import numpy as np
    import pandas as pd

    from wtours.analysis.figure import draw_figure2, write_table1
    from wtours.analysis.run import analyze_videos, print_results, videos_from_manifest
    from wtours.analysis.settings import AnalysisSettings
    from wtours.manifest import load_manifest
    from wtours.sample import SampleTruth

    store = Store.at(run.data_dir)
    manifest = load_manifest(run.manifest_path)
    # Offline there are no ultralytics weights (it would download yolo11n.pt); `make demo` passes the
    # official YOLOv3-tiny COCO detector fetched from the package registry (scripts/get_test_assets.py).
    settings = AnalysisSettings(detector=run.detector, detector_fps=5.0)
    results = analyze_videos(videos_from_manifest(manifest, None, None, store), store, settings)
    print_results(results)
    failed = [result.error for result in results if not result.ok]
    if failed:
        raise WtoursError("demo: analysis failed: " + "; ".join(map(str, failed)))
    for result in results:
        truth = SampleTruth.load(run.source_dir / f"{SAMPLE_NAMES[result.video.id]}.truth.json")
        cuts = pd.read_parquet(result.analysis_dir / "shots.parquet")["start_frame"].tolist()[1:]
        lightness = pd.read_parquet(result.analysis_dir / "frames.parquet")["lightness"].to_numpy()
        error = float(np.abs(lightness - np.asarray(truth.lightness)).max())
        verdict = "as in the truth" if cuts == truth.cut_frames else f"truth: {truth.cut_frames}"
        run.outputs.append(
            (f"{result.video.id} analysis", f"{result.analysis_dir} (cuts {cuts}, {verdict}; L* within {error:.1f})")
        )
    figures = run.data_dir / "figures"
    newest_summary = max((result.analysis_dir / "summary.json").stat().st_mtime for result in results)
    drawn = [figures / name for name in ("figure2.png", "figure2.pdf", "table1.csv", "table1.md", "table1.tex")]
    if not all(path.is_file() and path.stat().st_mtime >= newest_summary for path in drawn):
        drawn = [*draw_figure2(results, figures), *write_table1(results, figures)]
    run.outputs.append(("Figure 2 and Table 1", ", ".join(str(path) for path in drawn)))
    run.next_commands.append(
        f"wtours analyze --manifest {run.manifest_path} --data-dir {run.data_dir} --detector yolo11n.pt "
        "--detector-fps 5 --figure 2   # objects too (downloads the weights once)"
    )


def curate_sample(run: DemoRun) -> None:
    """Cut each video into clips that cross no cut (and no blank or frozen frame), with a training proxy."""
    if not all((run.data_dir / "analysis" / video_id / "summary.json").is_file() for video_id in SAMPLE_NAMES):
        run.outputs.append(("clips", "skipped: curation needs the analysis"))
        return
    from wtours.pipelines.clip_index import ClipSpec
    from wtours.pipelines.curate import CurateOptions, curate_videos
    from wtours.pipelines.proxy import ProxySettings

    store = Store.at(run.data_dir)
    # Clips of 8 frames at stride 4 span about a second: many fit in the walk, few between the movie's cuts.
    options = CurateOptions(clips=ClipSpec(**DEMO_CLIP), proxy=ProxySettings(short_side=180))
    results = curate_videos(store, list(SAMPLE_NAMES), options)
    failed = [f"{result.video_id}: {result.error}" for result in results if not result.ok]
    if failed:
        raise WtoursError("demo: curation failed: " + "; ".join(failed))
    for result in results:
        run.outputs.append((f"{result.video_id} clips", f"{store.clips_path(result.video_id)} ({result.clips} clips)"))


# Clips of the demo: 8 frames, 4 apart (about a second of the 30 fps sample), shared by every method.
DEMO_CLIP = {"frames_per_clip": 8, "stride": 4}


def _training_ready(run: DemoRun, stage: str) -> bool:
    if _extra_missing(run, stage, "train", ("torch", "timm")):
        return False
    if not all(Store.at(run.data_dir).clips_path(video_id).is_file() for video_id in SAMPLE_NAMES):
        run.outputs.append((stage, "skipped: pretraining needs the curated clips"))
        return False
    return True


def pretrain_dino(run: DemoRun) -> None:
    """A few DINO steps on the curated clips (tiny ViT, CPU), then k-NN on the sample's labelled crops."""
    if not _training_ready(run, "DINO"):
        return
    from wtours.trainers.launch import demo_pretrain_and_knn

    report = demo_pretrain_and_knn(run.workdir, run.data_dir, **DEMO_CLIP)
    knn = ", ".join(f"k={k}: {value:.1f}%" for k, value in report["top1"].items())
    run.outputs.append(
        ("DINO run", f"{report['run_dir']} (loss {report['first_loss']:.2f} -> {report['last_loss']:.2f}; "
         f"k-NN top-1 {knn}; untrained {max(report['untrained_top1'].values()):.1f}%, "
         f"majority class {report['majority_class_top1']:.1f}%)")
    )  # fmt: skip


def pretrain_dora(run: DemoRun) -> None:
    """A few DoRA steps on the same clips, then the objects its teacher discovers and tracks."""
    if not _training_ready(run, "DoRA"):
        return
    from wtours.trainers.evaluation.tracks import demo_dora

    video = Store.at(run.data_dir).video_path(WALK_ID)
    report = demo_dora(run.workdir, run.data_dir, video, **DEMO_CLIP)
    run.outputs.append(
        ("DoRA run", f"{report['run_dir']} (loss {report['first_loss']:.2f} -> {report['last_loss']:.2f})")
    )
    run.outputs.append(("DoRA tracks", f"{report['strip']}, {report['gif']}"))


def pretrain_videomae(run: DemoRun) -> None:
    """A few VideoMAE steps on the same clips, then a reconstruction grid."""
    if not _training_ready(run, "VideoMAE"):
        return
    from wtours.trainers.evaluation.reconstruct import demo_pretrain_and_reconstruct

    video = Store.at(run.data_dir).video_path(WALK_ID)
    report = demo_pretrain_and_reconstruct(run.workdir, run.data_dir, video, **DEMO_CLIP)
    run.outputs.append(
        ("VideoMAE run", f"{report['run_dir']} (loss {report['first_loss']:.3f} -> {report['last_loss']:.3f})")
    )
    run.outputs.append(("VideoMAE reconstruction", str(report["grid"])))


def compare_methods(run: DemoRun) -> None:
    """k-NN and a linear probe of every demo run on the sample's labelled crops, then `wtours compare`."""
    runs = [run.workdir / "runs" / f"{method}-tiny" for method in ("dino", "dora", "videomae")]
    runs = [run_dir for run_dir in runs if RunDir(run_dir).encoder_path.is_file()]
    if not runs:
        return
    from wtours.trainers.evaluation.compare import compare_runs
    from wtours.trainers.evaluation.linear import LinearProbeConfig, run_linear_probe
    from wtours.trainers.launch import run_knn

    labelled = run.workdir / "labelled"
    stamps = []
    for run_dir in runs:
        files = RunDir(run_dir)
        trained = files.encoder_path.stat().st_mtime
        knn_path, linear_path = files.knn_path(), files.linear_path
        untrained_path = files.knn_path(untrained=True)
        for path, untrained in ((knn_path, False), (untrained_path, True)):  # the run, and its baseline
            if not path.is_file() or path.stat().st_mtime < trained:
                run_knn(
                    run_dir, None, ks=(5, 10), temperature=0.07, image_size=64, batch_size=64, device="cpu",
                    num_workers=0, out_json=path, sample_dir=labelled, untrained=untrained,
                )  # fmt: skip
        if not linear_path.is_file() or linear_path.stat().st_mtime < trained:
            # The tiny encoders have 2 blocks: probe the [CLS] of both, 30 epochs over cached features.
            run_linear_probe(
                run_dir, labelled / "train", labelled / "val", linear_path, config=LinearProbeConfig(epochs=30),
                n_last_blocks=2, resize=64, crop=64, cache_dir=None, num_workers=0, device="cpu",
            )  # fmt: skip
        stamps += [path.stat().st_mtime for path in (knn_path, untrained_path, linear_path)]
    out_dir = run.workdir / "comparison"
    table = out_dir / "results.md"
    if not table.is_file() or table.stat().st_mtime < max(stamps):
        person = sorted((run.workdir / "labelled" / "val" / "person").glob("*"))[:1]
        compare_runs(runs, out_dir, attention_images=person, attention_size=64, device="cpu")
    run.outputs.append(("comparison (figures + table)", f"{out_dir}/{{loss_curves,eval_by_method,attention}}.png, "
                        f"{table}, results.csv, results.tex"))  # fmt: skip
    run.next_commands.append(f"wtours compare {' '.join(str(path) for path in runs)} --out {out_dir}")


# The demo, in order; each stage is idempotent.
STAGES: list[Callable[[DemoRun], None]] = [
    render_sample,
    fetch_from_loopback,
    analyze_sample,
    curate_sample,
    pretrain_dino,
    pretrain_dora,
    pretrain_videomae,
    compare_methods,
]


def run_demo(workdir: str | Path = "demo", *, seconds: float = 8.0, detector: str | None = None) -> DemoRun:
    """Run every stage on the embedded sample inside ``workdir`` and print where everything is."""
    run = DemoRun(Path(workdir), seconds, detector)
    run.workdir.mkdir(parents=True, exist_ok=True)
    began = time.monotonic()
    for stage in STAGES:
        stage(run)
    _print_summary(run, time.monotonic() - began)
    return run


def _forget(store: Store, video_id: str) -> None:
    """Remove one sample video and everything derived from it, so that every stage redoes it."""
    import shutil

    for path in (store.video_path(video_id), store.sidecar_path(video_id), store.state_path(video_id)):
        path.unlink(missing_ok=True)
    store.clips_path(video_id).unlink(missing_ok=True)
    for folder in (store.partial_dir(video_id), store.analysis_dir(video_id), store.proxies_dir(video_id)):
        shutil.rmtree(folder, ignore_errors=True)


def _print_summary(run: DemoRun, elapsed: float) -> None:
    from rich.console import Console
    from rich.markup import escape

    # Where things are is the demo's result, so it goes to stdout (progress went to stderr), one
    # unbroken line per item so that paths can be copied or grepped.
    out = Console(soft_wrap=True, highlight=False)
    out.print(f"[bold green]wtours demo[/]: done in {elapsed:.1f} s")
    width = max(len(what) for what, _ in run.outputs)
    for what, where in run.outputs:
        out.print(f"  [bold]{escape(what):<{width}}[/]  {escape(where)}")
    if run.next_commands:
        out.print("next:")
        for command in run.next_commands:
            out.print(f"  {escape(command)}")
