"""``wtours analyze``: lightness, shots and objects of videos in one decode pass, and the paper's Figure 2."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator

from wtours.errors import WtoursError
from wtours.workflows.requests import PerVideoOutcome, VideosRequest, argument, flag, flag_name

# The analysis settings (wtours.analysis.settings.AnalysisSettings) each option sets, where the names differ.
SETTING_OF_FIELD = {"confidence": "detector_confidence", "threshold": "shot_threshold"}


class AnalyzeRequest(VideosRequest):
    """The videos to analyze (files, or the manifest's fetched videos) and every knob of the analysis."""

    videos: Annotated[list[Path] | None, argument()] = Field(
        None, description="Video files to analyze ad hoc (id = file name). Without them, the manifest's fetched videos."
    )
    figure: int | None = Field(
        None,
        description="Also draw the paper's Figure 2 (PNG + PDF) and Table 1 (CSV, Markdown, LaTeX) for these videos.",
    )
    out: Path | None = Field(None, description="Folder for the figure and table. Default: <data-dir>/figures.")
    duration: float | None = Field(
        None,
        ge=0.1,
        description="Analyze and compare only the first SECONDS of each video (equal-length footage, as the paper).",
    )
    detector: str = Field(
        "yolo11n.pt",
        description="Object detector: ultralytics weights by name (downloaded once) or path, a Darknet .cfg path "
        "(weights and coco.names beside it), or 'none' to skip objects.",
    )
    trust_detector_weights: bool = Field(
        False,
        description="Load a .pt that is not one of ultralytics' released detectors (e.g. weights you trained). A .pt "
        "is a pickle: loading it runs any code inside, so only pass this for files you trust.",
    )
    detector_fps: float = Field(
        1.0, ge=0.001, description="Frames per second the detector sees; raise it for short clips."
    )
    detector_width: int = Field(640, ge=32, description="Width of frames given to the detector (its input size).")
    confidence: float = Field(
        0.25, ge=0.01, le=0.99, description="Minimum detection confidence counted as an object."
    )
    device: str | None = Field(
        None, description="Detector device, e.g. cpu or cuda:1. Default: the GPU when there is one."
    )
    decode: Literal["auto", "cpu", "gpu"] = Field(
        "auto",
        description="Video decoding: auto (NVDEC when a CUDA GPU decodes the codec, else the CPU), cpu, or gpu (the "
        "CPU with a notice when it cannot).",
    )
    shot_detector: Literal["content", "adaptive"] = Field(
        "content",
        description="PySceneDetect detector: content (hard cuts) or adaptive (robust to fast camera motion).",
    )
    threshold: float = Field(27.0, ge=0.1, description="ContentDetector threshold; lower it to catch softer cuts.")
    adaptive_threshold: float = Field(
        3.0, ge=0.1, description="AdaptiveDetector threshold (with --shot-detector adaptive)."
    )
    min_scene_len: int = Field(15, ge=0, description="Frames a shot lasts at least (PySceneDetect's default).")
    window_seconds: float = Field(
        300.0, ge=0.1, description="Length of one work unit; shorter windows spread one long video over more workers."
    )
    workers: Annotated[int, flag("--workers", "-j")] = Field(
        1,
        ge=1,
        description="Parallel windows (processes locally, tasks on Ray); each decodes with cores/workers threads. "
        "Raise it on many-core machines.",
    )
    executor: Literal["local", "ray"] = Field(
        "local", description="local (process pool) or ray (the ray extra: pip install 'wtours\\[ray]')."
    )
    ray_address: str | None = Field(
        None,
        description="Ray cluster to join, e.g. auto or ray://head:10001; default: start a local Ray. Every node "
        "must see the same --data-dir.",
    )

    @field_validator("figure")
    @classmethod
    def _only_figure_2(cls, figure: int | None) -> int | None:
        if figure is not None and figure != 2:
            raise ValueError("only the paper's Figure 2 (dataset statistics) is drawn here")
        return figure


@dataclass
class AnalyzeResult(PerVideoOutcome):
    """Each video's outcome, and the figure and table files when asked for."""

    results: list[Any]  # wtours.analysis.run.VideoResult per video
    drawn: list[Path] = field(default_factory=list)

    def report(self) -> None:
        from wtours.analysis.run import print_results

        print_results(self.results)
        for path in self.drawn:
            print(path)


def analyze(request: AnalyzeRequest, *, show_progress: bool = True) -> AnalyzeResult:
    """Analyze the videos (cached windows are reused), then draw Figure 2 and Table 1 if asked."""
    from pydantic import ValidationError

    from wtours.analysis.run import analyze_videos, videos_from_manifest, videos_from_paths
    from wtours.analysis.settings import AnalysisSettings
    from wtours.store import Store, check_writable

    values = {name: getattr(request, name) for name in (
        "duration", "detector", "trust_detector_weights", "detector_fps", "detector_width", "confidence", "device",
        "decode", "shot_detector", "threshold", "adaptive_threshold", "min_scene_len", "window_seconds",
    )}  # fmt: skip
    try:
        settings = AnalysisSettings(**{SETTING_OF_FIELD.get(name, name): value for name, value in values.items()})
    except ValidationError as err:  # the analysis' own bounds, should a request pass what it refuses
        problem = err.errors()[0]
        setting = str(problem["loc"][0]) if problem["loc"] else "detector"
        name = {value: key for key, value in SETTING_OF_FIELD.items()}.get(setting, setting)
        raise WtoursError(f"{flag_name(AnalyzeRequest, name)}: {problem['msg']}") from None
    store = Store.at(request.data_dir)
    if request.videos:
        selected = videos_from_paths(request.videos)
    else:
        from wtours.manifest import load_manifest

        selected = videos_from_manifest(load_manifest(request.manifest), request.only, request.group, store)
    folder = request.out or store.figures_dir
    if request.figure is not None:  # a read-only or forbidden figure folder: say so before the analysis, not after
        check_writable(folder)
    results = analyze_videos(
        selected, store, settings, executor=request.executor, workers=request.workers,
        ray_address=request.ray_address, show_progress=show_progress,
    )  # fmt: skip
    drawn: list[Path] = []
    if request.figure is not None:
        from wtours.analysis.figure import draw_figure2, write_table1

        done = [result for result in results if result.ok]
        if not done:
            from wtours.analysis.run import print_results

            print_results(results)
            raise WtoursError("no video was analyzed, so there is nothing to draw")
        drawn = [*draw_figure2(done, folder, duration=request.duration),
                 *write_table1(done, folder, duration=request.duration)]  # fmt: skip
    return AnalyzeResult(results, drawn)
