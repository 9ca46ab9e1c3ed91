"""`wtours demo`: the whole chain, offline, on the embedded sample, through the other commands' entries.

The demo renders the sample videos (``wtours.sample``), serves them from a loopback HTTP server as a video host
would (the walk and the study walk as direct .mp4 links, the movie-like video inside an HTML page), and then
runs each command as a user would, by its workflow entry: fetch (through yt-dlp), analyze, curate, pretrain,
eval, compare. Everything lands in one folder::

    <workdir>/source/         the rendered sample: walk.mp4, movie.mp4, study.mp4, their *.truth.json
    <workdir>/manifest.yaml   the manifest the demo fetched (loopback URLs, valid while it ran)
    <workdir>/data/           the data directory: videos/<id>.mp4 + <id>.json, then analysis/, clips/ ...
    <workdir>/runs/           dino-study, dora-study, videomae-study: each with eval/knn.json beside its floor
                              (with --full: dino-study-full, ...)
    <workdir>/labelled/       the study set the runs are evaluated on
    <workdir>/comparison/     `wtours compare` of the three runs (with --full: comparison-full/)

The walk and the movie check the analysis against their truth (cuts, lightness); the runs pretrain on the study
walk (20 real photographs, 128 x 96, 8 fps, a cut between photos) with the presets ``*_study_cpu`` cut short,
and each is evaluated by k-NN on the study set beside its floor, the same network before training: the point
is a falling loss and the floor beside each number. ``--full`` trains the presets in full instead (the step counts
of ``benchmarks/study_cpu.py``), long enough for each k-NN to pass its floor.

Every stage is a small function of the run in STAGES, in order, and idempotent: re-running the demo redoes
nothing that is already done.
"""

from __future__ import annotations

import contextlib
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import Field

from wtours.errors import WtoursError
from wtours.progress import console
from wtours.store import RunDir, Store, file_sha256
from wtours.workflows.requests import Request

COMMAND_HELP = (
    "Run the whole chain offline on the embedded sample: render, serve on loopback, fetch with yt-dlp, analyze, "
    "curate, pretrain DINO / DoRA / VideoMAE for a few CPU minutes on the study walk, evaluate each against its "
    "untrained floor and compare."
)

SAMPLE_WIDTH = 640
SAMPLE_FPS = 30

# The runs: each study preset, cut short for the demo (epochs x steps per epoch, a tenth of it warm-up), on clips
# of 2 frames 4 apart (half a second of the study walk) that the three share. DINO sees every frame of a clip as an
# image: 16 clips are the preset's 32 images per step. DoRA's teacher temperature stays at 0.04: the preset warms it
# to 0.07 over 9 epochs, which in a run of 4 short epochs raises the loss (a hotter target) instead of showing it fall.
DEMO_CLIP = {"frames_per_clip": 2, "stride": 4}
RUN_SETTINGS: dict[str, dict[str, object]] = {
    "dino": {"optim.epochs": 4, "optim.steps_per_epoch": 12, "optim.batch_size": 16, "optim.warmup_epochs": 0.5},
    "dora": {"optim.epochs": 4, "optim.steps_per_epoch": 8, "optim.warmup_epochs": 0.5, "dora.teacher_temp": 0.04},
    "videomae": {"optim.epochs": 4, "optim.steps_per_epoch": 12, "optim.warmup_epochs": 0.5},
}
# --full: each study preset whole, for the step counts of benchmarks/study_cpu.py (DINO 20 epochs of 30 steps of 32
# images, DoRA 30 of 53 of 16 clips, VideoMAE 10 of 52 of 16 clips) on the demo's clips, which DINO sees as 2 images.
# Every valid start of a clip is an item (data.mode any_start, as DoRA's and VideoMAE's presets say): about 880 of
# the study walk's 960 frames, where the 222 index clips alone would cut DINO's epochs to 13 steps.
FULL_SETTINGS: dict[str, dict[str, object]] = {
    "dino": {"optim.steps_per_epoch": 30, "optim.batch_size": 16, "data.mode": "any_start"},
    "dora": {},
    "videomae": {"optim.steps_per_epoch": 52},
}
FULL_THREADS = 4  # torch threads per --full run at most: the tiny networks gain little from more
METHOD_NAMES = {"dino": "DINO", "dora": "DoRA", "videomae": "VideoMAE"}
KNN_K = 20
# Shots of the study walk: 20 photographs, some of them grey textures alike (moon, gravel, brick), panned fast.
STUDY_SHOTS = {"shot_detector": "adaptive", "adaptive_threshold": 2.0}


class DemoRequest(Request):
    workdir: Path = Field(Path("demo"), description="Folder for everything the demo writes.")
    seconds: float = Field(8.0, ge=2.0, description="Length of each sample video.")
    detector: str | None = Field(
        None,
        description="Object detector for the analysis stage: ultralytics weights (yolo11n.pt, downloaded once where "
        "there is internet) or a Darknet .cfg with its .weights and coco.names beside it. `make demo` passes "
        "the YOLOv3-tiny COCO detector fetched from the package registry. Default: no objects analysis.",
    )
    full: bool = Field(
        False,
        description="Train each study preset in full (DINO 600 steps, DoRA 1590, VideoMAE 520, as the CPU study "
        "does) instead of 32-48 steps, so that each k-NN ends above its untrained floor: about 13 minutes on 2 "
        "CPU cores in fp32, less on CPUs with bf16 instructions (one torch thread per core, at most 4). Runs go "
        "to runs/<method>-study-full, the comparison to comparison-full/. Without it the runs show each loss "
        "fall, but are too short to pass the floor.",
    )


@dataclass
class DemoRun:
    """What the stages share: where things go, and what to tell the user at the end."""

    workdir: Path
    seconds: float
    detector: str | None = None  # objects analysis: weights/config path or name; None skips it
    full: bool = False  # the study presets whole instead of cut to 32-48 steps
    # (what, where) lines of the final summary, and commands worth trying next.
    outputs: list[tuple[str, str]] = field(default_factory=list)
    next_commands: list[str] = field(default_factory=list)
    elapsed: float = 0.0
    exit_code: int = 0

    @property
    def source_dir(self) -> Path:
        return self.workdir / "source"

    @property
    def manifest_path(self) -> Path:
        return self.workdir / "manifest.yaml"

    @property
    def data_dir(self) -> Path:
        return self.workdir / "data"

    @property
    def runs_dir(self) -> Path:
        return self.workdir / "runs"

    @property
    def labelled_dir(self) -> Path:
        return self.workdir / "labelled"

    @property
    def suffix(self) -> str:
        """What names the runs and outputs of --full apart from the short ones beside them."""
        return "-full" if self.full else ""

    def run_dir(self, method: str) -> RunDir:
        return RunDir(self.runs_dir / f"{method}-study{self.suffix}")

    def run_settings(self, method: str) -> dict[str, object]:
        """The overrides of ``<method>_study_cpu`` for this demo's run of it."""
        clips = {"data.frames_per_clip": DEMO_CLIP["frames_per_clip"], "data.stride": DEMO_CLIP["stride"]}
        if self.full:
            return {**clips, **FULL_SETTINGS[method]}
        return {**clips, "run.log_every": 4, **RUN_SETTINGS[method]}

    def report(self) -> None:
        """Where everything is, to stdout (progress went to stderr), one unbroken line per item so that paths
        can be copied or grepped."""
        from rich.console import Console
        from rich.markup import escape

        out = Console(soft_wrap=True, highlight=False)
        out.print(f"[bold green]wtours demo[/]: done in {self.elapsed:.1f} s")
        width = max(len(what) for what, _ in self.outputs)
        for what, where in self.outputs:
            out.print(f"  [bold]{escape(what):<{width}}[/]  {escape(where)}")
        if self.next_commands:
            out.print("next:")
            for command in self.next_commands:
                out.print(f"  {escape(command)}")


def render_sample(run: DemoRun) -> None:
    """Render the sample videos and their truth into source/, unless the same ones are already there; the
    study walk (always the same) once."""
    from wtours.sample import SampleTruth, render_study_walk, write_sample_set
    from wtours.sample.sample_set import SAMPLE_NAMES, STUDY_NAME, frame_height

    expected = (SAMPLE_WIDTH, frame_height(SAMPLE_WIDTH), round(run.seconds * SAMPLE_FPS))
    current = True
    for name in SAMPLE_NAMES.values():
        truth_path = run.source_dir / f"{name}.truth.json"
        if not (run.source_dir / f"{name}.mp4").is_file() or not truth_path.is_file():
            current = False
            break
        truth = SampleTruth.load(truth_path)
        current = current and (truth.width, truth.height, truth.n_frames) == expected
    if not current:  # videos fetched and analysed from an earlier rendering are replaced by the fetch stage
        with console.status(f"rendering the embedded sample ({run.seconds:g} s, {SAMPLE_WIDTH} px wide)"):
            write_sample_set(run.source_dir, seconds=run.seconds, width=SAMPLE_WIDTH, fps=SAMPLE_FPS)
    study, study_truth = run.source_dir / f"{STUDY_NAME}.mp4", run.source_dir / f"{STUDY_NAME}.truth.json"
    if not (study.is_file() and study_truth.is_file()):
        with console.status("rendering the study walk (20 photographs, 128 x 96, 8 fps)"):
            render_study_walk(study).save(study_truth)
    run.outputs.append(("sample videos + ground truth",
                        f"{run.source_dir}/{{walk,movie,study}}.mp4, *.truth.json"))  # fmt: skip


def fetch_from_loopback(run: DemoRun) -> None:
    """Serve source/ on 127.0.0.1 and fetch the three videos through yt-dlp into data/videos/ (`wtours fetch`)."""
    from wtours.sample import StudyTruth
    from wtours.sample.sample_set import MOVIE_ID, SAMPLE_NAMES, STUDY_ID, STUDY_NAME, WALK_ID, sample_manifest
    from wtours.sample.server import LoopbackServer, write_video_page
    from wtours.store import atomic_write_text
    from wtours.workflows.fetch import FetchRequest, fetch

    write_video_page(
        run.source_dir, f"{SAMPLE_NAMES[MOVIE_ID]}.mp4", page_name="movie.html", title="A movie-like sample"
    )
    names = {**SAMPLE_NAMES, STUDY_ID: STUDY_NAME}
    store = Store.at(run.data_dir)
    for video_id, name in names.items():
        sidecar = store.sidecar(video_id)
        if sidecar and sidecar.get("sha256") != file_sha256(run.source_dir / f"{name}.mp4"):
            _forget(store, video_id)  # fetched from an earlier rendering (other --seconds): stale
    study = StudyTruth.load(run.source_dir / f"{STUDY_NAME}.truth.json")
    with LoopbackServer(run.source_dir) as server:
        sources = {WALK_ID: server.url(f"{SAMPLE_NAMES[WALK_ID]}.mp4"), MOVIE_ID: server.url("movie.html"),
                   STUDY_ID: server.url(f"{STUDY_NAME}.mp4")}  # fmt: skip
        header = f"# Written by `wtours demo`: the URLs were served by its loopback server on port {server.port}.\n"
        manifest = sample_manifest(sources, run.seconds, study_seconds=study.n_frames / study.fps)
        atomic_write_text(run.manifest_path, header + manifest)
        fetched = fetch(FetchRequest(manifest=run.manifest_path, data_dir=run.data_dir, retries=2, retry_wait=0.5))
    failed = [f"{result.video_id}: {result.error}" for result in fetched.results if not result.ok]
    if failed:
        raise WtoursError("demo: fetching the sample from the loopback server failed: " + "; ".join(failed))
    run.outputs.append(("manifest (loopback URLs)", str(run.manifest_path)))
    for result in fetched.results:
        sidecar = store.sidecar(result.video_id) or {}
        # yt-dlp should hand over the served bytes untouched; say so, since the truth depends on it.
        same = sidecar.get("sha256") == file_sha256(run.source_dir / f"{names[result.video_id]}.mp4")
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


FIGURE_FILES = ("figure2.png", "figure2.pdf", "table1.csv", "table1.md", "table1.tex")


def analyze_sample(run: DemoRun) -> None:
    """`wtours analyze` of the three videos (one decode pass each); the walk's and the movie's cuts and
    lightness, and the study walk's cuts, checked against their truth; Figure 2 and Table 1 of the walk and the
    movie (drawn again only when their analysis changed)."""
    from wtours.sample.sample_set import MOVIE_ID, SAMPLE_NAMES, STUDY_ID, STUDY_NAME, WALK_ID

    if _extra_missing(run, "analysis", "analysis", ("scenedetect", "cv2")):
        return
    import numpy as np
    import pandas as pd

    from wtours.sample import SampleTruth, StudyTruth
    from wtours.workflows.analyze import AnalyzeRequest, analyze

    store = Store.at(run.data_dir)
    figures = store.figures_dir
    summaries = [store.analysis_dir(video_id) / "summary.json" for video_id in SAMPLE_NAMES]
    stale = not all(path.is_file() for path in [*summaries, *(figures / name for name in FIGURE_FILES)]) or max(
        path.stat().st_mtime for path in summaries
    ) > min((figures / name).stat().st_mtime for name in FIGURE_FILES)
    common = {"manifest": run.manifest_path, "data_dir": run.data_dir}
    # Offline there are no ultralytics weights (it would download yolo11n.pt); `make demo` passes the official
    # YOLOv3-tiny COCO detector fetched from the package registry (scripts/get_test_assets.py). The study walk
    # is analysed for its cuts and blank frames, which curation needs, without the detector.
    samples = analyze(AnalyzeRequest(**common, only=list(SAMPLE_NAMES), detector=run.detector or "none",
                                     detector_fps=5.0, figure=2 if stale else None))  # fmt: skip
    # The study walk pans and zooms fast for its 8 fps: PySceneDetect's adaptive detector, made for camera motion.
    study = analyze(AnalyzeRequest(**common, only=[STUDY_ID], detector="none", **STUDY_SHOTS))
    samples.report()
    study.report()
    failed = [result.error for result in [*samples.results, *study.results] if not result.ok]
    if failed:
        raise WtoursError("demo: analysis failed: " + "; ".join(map(str, failed)))
    for result in [*samples.results, *study.results]:
        cuts = pd.read_parquet(result.analysis_dir / "shots.parquet")["start_frame"].tolist()[1:]
        if result.video.id == STUDY_ID:
            truth_cuts = StudyTruth.load(run.source_dir / f"{STUDY_NAME}.truth.json").cut_frames
            missed, spurious = sorted(set(truth_cuts) - set(cuts)), sorted(set(cuts) - set(truth_cuts))
            detail = f"{len(truth_cuts) - len(missed)} of {len(truth_cuts)} cuts found, " + (
                "as in the truth" if cuts == truth_cuts else f"missed {missed}, spurious {spurious}"
            )
        else:
            truth = SampleTruth.load(run.source_dir / f"{SAMPLE_NAMES[result.video.id]}.truth.json")
            lightness = pd.read_parquet(result.analysis_dir / "frames.parquet")["lightness"].to_numpy()
            error = float(np.abs(lightness - np.asarray(truth.lightness)).max())
            verdict = "as in the truth" if cuts == truth.cut_frames else f"truth: {truth.cut_frames}"
            detail = f"cuts {cuts}, {verdict}; L* within {error:.1f}"
        run.outputs.append((f"{result.video.id} analysis", f"{result.analysis_dir} ({detail})"))
    drawn = samples.drawn or [figures / name for name in FIGURE_FILES]
    run.outputs.append(("Figure 2 and Table 1", ", ".join(str(path) for path in drawn)))
    run.next_commands.append(
        f"wtours analyze --manifest {run.manifest_path} --data-dir {run.data_dir} --only {WALK_ID},{MOVIE_ID} "
        "--detector yolo11n.pt --detector-fps 5 --figure 2   # objects too (downloads the weights once)"
    )


def curate_sample(run: DemoRun) -> None:
    """`wtours curate`: clips of 2 frames 4 apart that cross no cut (and no blank or frozen frame), with a
    training proxy at the study walk's own 96 px; few fit between the movie's cuts, hundreds in the study walk."""
    from wtours.sample.sample_set import SAMPLE_NAMES, STUDY_ID

    store = Store.at(run.data_dir)
    videos = [*SAMPLE_NAMES, STUDY_ID]
    if not all((store.analysis_dir(video_id) / "summary.json").is_file() for video_id in videos):
        run.outputs.append(("clips", "skipped: curation needs the analysis"))
        return
    from wtours.workflows.curate import CurateRequest, curate

    curated = curate(CurateRequest(manifest=run.manifest_path, data_dir=run.data_dir, only=videos,
                                   proxy_short_side=96, **DEMO_CLIP))  # fmt: skip
    failed = [f"{result.video_id}: {result.error}" for result in curated.results if not result.ok]
    if failed:
        raise WtoursError("demo: curation failed: " + "; ".join(failed))
    for result in curated.results:
        run.outputs.append((f"{result.video_id} clips", f"{store.clips_path(result.video_id)} ({result.clips} clips)"))


@contextlib.contextmanager
def _torch_threads(count: int = 1) -> Iterator[None]:
    """Tiny networks on the CPU with ``count`` threads (at most torch's default, one per core). One by default:
    a second gives a short run little, and on a machine whose cores other jobs share it costs several times the
    step (threads wait for each other)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, min(count, threads)))
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def pretrain_methods(run: DemoRun) -> None:
    """`wtours pretrain` of DINO, DoRA and VideoMAE on the study walk's clips (CPU, their study presets cut
    short); a finished run is kept, an interrupted one resumed."""
    from wtours.sample.sample_set import STUDY_ID

    if _extra_missing(run, "pretraining", "train", ("torch", "timm")):
        return
    if not Store.at(run.data_dir).clips_path(STUDY_ID).is_file():
        run.outputs.append(("pretraining", "skipped: pretraining needs the curated clips"))
        return
    from wtours.workflows.pretrain import PretrainRequest, pretrain

    for method in RUN_SETTINGS:
        files, overrides = run.run_dir(method), run.run_settings(method)
        if files.is_finished() and _trained_otherwise(files, method, overrides):
            shutil.rmtree(files.root)  # the demo's own run, from an older preset: its numbers would be stale
        if not files.is_finished():
            with _torch_threads(FULL_THREADS if run.full else 1):
                pretrain(PretrainRequest(
                    preset=f"{method}_study_cpu", name=files.root.name, output_dir=run.runs_dir,
                    data_dir=run.data_dir, only=[STUDY_ID], device="cpu",
                    settings=[f"{key}={value}" for key, value in overrides.items()],
                    resume=files.checkpoint_path.exists(),
                ))  # fmt: skip


def _trained_otherwise(files: RunDir, method: str, overrides: dict[str, object]) -> bool:
    """Whether a finished demo run was trained with other settings than this wtours's preset gives now (a key
    the run's config lacks, written by an older wtours, reads as its default)."""
    from wtours.trainers.training.config import load_config
    from wtours.trainers.training.resume import trained_otherwise

    return trained_otherwise(files.config_path, load_config(f"{method}_study_cpu", overrides))


def _newer(path: Path, than: Path) -> bool:
    return path.is_file() and path.stat().st_mtime >= than.stat().st_mtime


def evaluate_runs(run: DemoRun) -> None:
    """`wtours eval knn` of every run on the study set, and with ``--untrained`` of the same network before
    training (its floor); DoRA's tracked objects and VideoMAE's reconstructions on the study walk. Each is
    redone only when its run is newer."""
    runs = {method: run.run_dir(method) for method in RUN_SETTINGS if run.run_dir(method).encoder_path.is_file()}
    if not runs:
        return
    with _torch_threads():
        _evaluate(run, runs)
    run.next_commands.append(f"wtours eval linear {next(iter(runs.values())).root} --sample-dir {run.labelled_dir} "
                             "--protocol cached --resize 64 --crop 64   # a linear probe on the study set")  # fmt: skip


def _evaluate(run: DemoRun, runs: dict[str, RunDir]) -> None:
    from wtours.sample.sample_set import STUDY_ID
    from wtours.workflows.evaluate import (
        KnnRequest,
        ReconstructRequest,
        TracksRequest,
        eval_knn,
        eval_reconstruct,
        eval_tracks,
    )

    study_video = Store.at(run.data_dir).video_path(STUDY_ID)
    for method, files in runs.items():
        for untrained in (False, True):
            if not _newer(files.knn_path(untrained=untrained), files.encoder_path):
                eval_knn(KnnRequest(encoder=files.root, sample_dir=run.labelled_dir, k=[10, KNN_K], image_size=64,
                                    batch_size=100, device="cpu", num_workers=0, untrained=untrained))  # fmt: skip
        losses = files.losses()
        knn = _top1(files.knn_path()), _top1(files.knn_path(untrained=True))
        run.outputs.append((
            f"{METHOD_NAMES[method]} run",
            f"{files.root} (loss {losses[0]:.3f} -> {losses[-1]:.3f} over {(files.summary() or {}).get('steps_done')} "
            f"steps; k-NN top-1 (k={KNN_K}) {knn[0]:.1f}% vs {knn[1]:.1f}% untrained)",
        ))  # fmt: skip
    if "dora" in runs:
        strip = run.workdir / "tracks" / f"{runs['dora'].root.name}.gif"
        if not _newer(strip, runs["dora"].encoder_path):
            eval_tracks(TracksRequest(weights=runs["dora"].root, video=study_video, out=run.workdir / "tracks",
                                      frames=6, stride=4, height=96, objects=2, device="cpu",
                                      name=runs["dora"].root.name))  # fmt: skip
        run.outputs.append(("DoRA tracks", f"{strip.with_suffix('.png')}, {strip}"))
    if "videomae" in runs:
        grid = run.workdir / f"videomae-reconstruction{run.suffix}.png"
        if not _newer(grid, runs["videomae"].encoder_path):
            eval_reconstruct(ReconstructRequest(run=runs["videomae"].root, video=study_video, out=grid))
        run.outputs.append(("VideoMAE reconstruction", str(grid)))


def _top1(report_path: Path) -> float:
    from wtours.store import read_json

    return float((read_json(report_path) or {}).get("top1", {}).get(str(KNN_K), float("nan")))


def compare_methods(run: DemoRun) -> None:
    """`wtours compare` of the three runs: loss curves, k-NN beside its floor, the linear probe, attention maps."""
    runs = [run.run_dir(method) for method in RUN_SETTINGS]
    runs = [files for files in runs if files.knn_path().is_file()]
    if not runs:
        return
    from wtours.workflows.compare import CompareRequest, compare

    out_dir = run.workdir / f"comparison{run.suffix}"
    table = out_dir / "results.md"
    evaluated = [path for files in runs for path in (files.knn_path(), files.knn_path(untrained=True))]
    newest = max(path.stat().st_mtime for path in evaluated if path.is_file())
    if not table.is_file() or table.stat().st_mtime < newest:
        crop = sorted((run.labelled_dir / "val").glob("*/*.png"))[:1]
        with _torch_threads():
            compare(CompareRequest(runs=[files.root for files in runs], out=out_dir, images=crop or None,
                                   image_size=64, device="cpu"))  # fmt: skip
    run.outputs.append(("comparison (figures + table)", f"{out_dir}/{{loss_curves,eval_by_method,attention}}.png, "
                        f"{table}, results.csv, results.tex"))  # fmt: skip
    run.next_commands.append(f"wtours compare {' '.join(str(files.root) for files in runs)} --out {out_dir}")
    if not run.full:
        run.next_commands.append(f"wtours demo --workdir {run.workdir} --full   # the study presets in full, "
                                 "long enough for each k-NN to pass its floor (minutes per run)")  # fmt: skip


# The demo, in order; each stage is idempotent.
STAGES: list[Callable[[DemoRun], None]] = [
    render_sample,
    fetch_from_loopback,
    analyze_sample,
    curate_sample,
    pretrain_methods,
    evaluate_runs,
    compare_methods,
]


def demo(request: DemoRequest) -> DemoRun:
    """Run every stage on the embedded sample inside ``request.workdir``; the result says where everything is."""
    run = DemoRun(request.workdir, request.seconds, request.detector, full=request.full)
    run.workdir.mkdir(parents=True, exist_ok=True)
    began = time.monotonic()
    for stage in STAGES:
        stage(run)
    run.elapsed = time.monotonic() - began
    return run


def _forget(store: Store, video_id: str) -> None:
    """Remove one sample video and everything derived from it, so that every stage redoes it."""
    import shutil

    for path in (store.video_path(video_id), store.sidecar_path(video_id), store.state_path(video_id)):
        path.unlink(missing_ok=True)
    store.clips_path(video_id).unlink(missing_ok=True)
    for folder in (store.partial_dir(video_id), store.analysis_dir(video_id), store.proxies_dir(video_id)):
        shutil.rmtree(folder, ignore_errors=True)
