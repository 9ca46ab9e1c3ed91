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

SAMPLE_WIDTH = 640
SAMPLE_FPS = 30


@dataclass
class DemoRun:
    """What the stages share: where things go, and what to tell the user at the end."""

    workdir: Path
    seconds: float
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
    for name in ("walk", "movie"):
        truth_path = run.source_dir / f"{name}.truth.json"
        if not (run.source_dir / f"{name}.mp4").is_file() or not truth_path.is_file():
            current = False
            break
        truth = SampleTruth.load(truth_path)
        current = current and (truth.width, truth.height, truth.n_frames) == expected
    if not current:
        with console.status(f"rendering the embedded sample ({run.seconds:g} s, {SAMPLE_WIDTH} px wide)"):
            write_sample_set(run.source_dir, seconds=run.seconds, width=SAMPLE_WIDTH, fps=SAMPLE_FPS)
    run.outputs.append(("sample videos + ground truth", f"{run.source_dir}/{{walk,movie}}.mp4, *.truth.json"))


def fetch_from_loopback(run: DemoRun) -> None:
    """Serve source/ on 127.0.0.1 and fetch both videos through yt-dlp into data/videos/."""
    from wtours.manifest import load_manifest
    from wtours.pipelines.fetch import FetchOptions, fetch_videos
    from wtours.sample.sample_set import MOVIE_ID, WALK_ID, sample_manifest
    from wtours.sample.server import LoopbackServer, write_video_page
    from wtours.store import Store, atomic_write_text

    write_video_page(run.source_dir, "movie.mp4", page_name="movie.html", title="A movie-like sample")
    with LoopbackServer(run.source_dir) as server:
        sources = {WALK_ID: server.url("walk.mp4"), MOVIE_ID: server.url("movie.html")}
        header = f"# Written by `wtours demo`: the URLs were served by its loopback server on port {server.port}.\n"
        atomic_write_text(run.manifest_path, header + sample_manifest(sources, run.seconds))
        manifest = load_manifest(run.manifest_path)
        store = Store.at(run.data_dir)
        results = fetch_videos(manifest, manifest.videos, store, FetchOptions(retries=2, retry_wait=0.5))
    failed = [f"{result.video_id}: {result.error}" for result in results if not result.ok]
    if failed:
        raise WtoursError("demo: fetching the sample from the loopback server failed: " + "; ".join(failed))
    run.outputs.append(("manifest (loopback URLs)", str(run.manifest_path)))
    rendered = {WALK_ID: run.source_dir / "walk.mp4", MOVIE_ID: run.source_dir / "movie.mp4"}
    for result in results:
        sidecar = store.sidecar(result.video_id) or {}
        # yt-dlp should hand over the served bytes untouched; say so, since the truth depends on it.
        same = sidecar.get("sha256") == _sha256(rendered[result.video_id])
        note = "identical to the rendered file" if same else "differs from the rendered file (remuxed?)"
        where = f"{result.path} + {store.sidecar_path(result.video_id).name} ({note})"
        run.outputs.append((f"{result.video_id} ({result.status})", where))
    run.next_commands.append(f"wtours status --manifest {run.manifest_path} --data-dir {run.data_dir}")


# The demo, in order. Later stages (analysis, curation, pretraining, comparison) are appended as they land.
STAGES: list[Callable[[DemoRun], None]] = [render_sample, fetch_from_loopback]


def run_demo(workdir: str | Path = "demo", *, seconds: float = 8.0) -> DemoRun:
    """Run every stage on the embedded sample inside ``workdir`` and print where everything is."""
    run = DemoRun(Path(workdir), seconds)
    run.workdir.mkdir(parents=True, exist_ok=True)
    began = time.monotonic()
    for stage in STAGES:
        stage(run)
    _print_summary(run, time.monotonic() - began)
    return run


def _sha256(path: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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
