"""The work unit: one time window of one video, decoded once and fed to every analyzer that needs it.

Each analyzer's result for a window is cached under
``analysis/<id>/.windows/<analyzer>-<settings hash>/<start>-<end>.<table>.parquet`` with a ``.done``
marker written last, so an interrupted run resumes where it stopped, an unchanged re-run decodes
nothing, and a changed setting recomputes only the analyzer it belongs to.
"""

from __future__ import annotations

import json
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from wtours.analysis.base import Analyzer
from wtours.analysis.settings import AnalysisSettings, detector_key, settings_hash
from wtours.errors import WtoursError
from wtours.frames import FrameSize, StreamInfo, iter_frames, scaled_size
from wtours.store import atomic_path, atomic_write_text

WINDOWS_DIR = ".windows"


@dataclass(frozen=True)
class VideoInput:
    """A video to analyze: its id (folder name under analysis/), file and group (for figures)."""

    id: str
    path: Path
    group: str = "videos"


@dataclass(frozen=True)
class WindowTask:
    """Frames ``[start, end)`` of one video; plain data, so it travels to a worker process or a Ray node."""

    video_id: str
    video_path: str
    analysis_dir: str
    start: int
    end: int
    stream: StreamInfo
    settings: AnalysisSettings
    threads: int = 0
    # When the container does not state its frame count, the last window reads to the end of the file.
    open_ended: bool = False

    @property
    def frames(self) -> int:
        return self.end - self.start


@dataclass
class WindowOutcome:
    video_id: str
    start: int
    end: int
    computed: list[str] = field(default_factory=list)  # analyzers run (empty: everything was cached)
    error: str | None = None
    seconds: float = 0.0


def plan_windows(
    video: VideoInput, analysis_dir: Path, stream: StreamInfo, settings: AnalysisSettings, threads: int = 0
) -> list[WindowTask]:
    """Split a video into windows of ``settings.window_seconds`` on a fixed grid (frame 0, W, 2W, ...).

    The grid does not depend on ``--duration``: a longer run later reuses every full window already done.
    """
    fps = stream.fps
    window = max(1, round(settings.window_seconds * fps))
    total = stream.frame_count or stream.estimated_frames
    # Without a frame count in the header, the last window reads on to the end of the file.
    open_ended = stream.frame_count is None
    if settings.duration is not None and round(settings.duration * fps) < total:
        total, open_ended = round(settings.duration * fps), False
    tasks = []
    for start in range(0, total, window):
        end = min(start + window, total)
        last = end >= total
        tasks.append(
            WindowTask(
                video_id=video.id,
                video_path=str(video.path),
                analysis_dir=str(analysis_dir),
                start=start,
                end=end,
                stream=stream,
                settings=settings,
                threads=threads,
                open_ended=open_ended and last,
            )
        )
    return tasks


def analysis_frame_sizes(stream: StreamInfo, settings: AnalysisSettings) -> tuple[FrameSize, FrameSize]:
    """(size for lightness and shots, size for the detector) of this video under these settings."""
    small = FrameSize(*scaled_size(stream.width, stream.height, settings.analysis_width))
    every_n = max(1, round(stream.fps / settings.detector_fps))
    detector = FrameSize(*scaled_size(stream.width, stream.height, settings.detector_width), every_n=every_n)
    return small, detector


def build_analyzers(stream: StreamInfo, settings: AnalysisSettings) -> list[Analyzer]:
    """The analyzers these settings ask for (cheap: a detector loads at its first batch)."""
    from wtours.analysis.lightness import LightnessAnalyzer
    from wtours.analysis.objects import ObjectAnalyzer
    from wtours.analysis.shots import ShotScoreAnalyzer

    small, detector_size = analysis_frame_sizes(stream, settings)
    analyzers: list[Analyzer] = [
        LightnessAnalyzer(small, blank_lightness=settings.blank_lightness, frozen_tolerance=settings.frozen_tolerance),
        ShotScoreAnalyzer(small, fps=stream.fps, luma_only=settings.luma_only),
    ]
    if settings.detector:
        analyzers.append(
            ObjectAnalyzer(
                detector_size,
                detector=settings.detector,
                detector_key=detector_key(settings.detector),
                video_size=(stream.width, stream.height),
                confidence=settings.detector_confidence,
                image_size=settings.detector_width,
                batch_size=settings.detector_batch,
                device=settings.device,
                threads=settings.detector_threads,
            )
        )
    return analyzers


def part_dir(analysis_dir: Path, analyzer: Analyzer, stream: StreamInfo, settings: AnalysisSettings) -> Path:
    """Folder of one analyzer's window results; its name changes with anything the results depend on."""
    key = {"analyzer": analyzer.settings(), "interpolation": settings.interpolation, "stream": stream.__dict__}
    return Path(analysis_dir) / WINDOWS_DIR / f"{analyzer.name}-{settings_hash(key)}"


def window_stem(start: int, end: int) -> str:
    return f"{start:010d}-{end:010d}"


def is_done(folder: Path, start: int, end: int) -> bool:
    return (folder / f"{window_stem(start, end)}.done").is_file()


def run_window(task: WindowTask) -> WindowOutcome:
    """Decode the window once, feed every analyzer whose result is missing, write their tables.

    Never raises: a broken video becomes ``outcome.error`` (one line) so the other work goes on.
    """
    began = time.perf_counter()
    outcome = WindowOutcome(task.video_id, task.start, task.end)
    try:
        analyzers = build_analyzers(task.stream, task.settings)
        folders = {a.name: part_dir(Path(task.analysis_dir), a, task.stream, task.settings) for a in analyzers}
        analyzers = [a for a in analyzers if not is_done(folders[a.name], task.start, task.end)]
        if not analyzers:
            return outcome
        _feed(task, analyzers)
        for analyzer in analyzers:
            _write_tables(task, analyzer, folders[analyzer.name])
            outcome.computed.append(analyzer.name)
    except WtoursError as err:
        outcome.error = str(err)
    except Exception as err:  # a bug or a library failure: report it with where it happened, keep going
        where = traceback.extract_tb(err.__traceback__)[-1]
        outcome.error = f"{type(err).__name__}: {err} ({Path(where.filename).name}:{where.lineno})"
    outcome.seconds = time.perf_counter() - began
    return outcome


def _feed(task: WindowTask, analyzers: list[Analyzer]) -> None:
    sizes = {_size_key(a.frame_size): a.frame_size for a in analyzers}
    first = max(0, task.start - max(a.warmup_frames for a in analyzers))
    last_seen = -1
    frames = iter_frames(
        task.video_path,
        sizes,
        start_frame=first,
        end_frame=None if task.open_ended else task.end,
        threads=task.threads,
        interpolation=task.settings.interpolation,
    )
    for frame in frames:
        for analyzer in analyzers:
            image = frame.images.get(_size_key(analyzer.frame_size))
            if image is not None and frame.index >= task.start - analyzer.warmup_frames:
                analyzer.process_frame(frame.index, frame.time, image)
        last_seen = frame.index
    if not task.open_ended:
        # The last frame some analyzer was due to see; the decoder stopping earlier means a short file.
        due = [_last_due(a.frame_size, task.start, task.end) for a in analyzers]
        needed = max((index for index in due if index is not None), default=-1)
        if last_seen < needed:
            shown = f"frame {last_seen}" if last_seen >= 0 else f"before frame {first}"
            raise WtoursError(
                f"{task.video_id}: video ends at {shown} but its header lists {task.stream.frame_count} frames "
                f"(truncated download?); finished windows are kept, re-fetch the video and re-run"
            )


def _last_due(size: FrameSize, start: int, end: int) -> int | None:
    last = (end - 1) // size.every_n * size.every_n
    return last if last >= start else None


def _size_key(size: FrameSize) -> str:
    return f"{size.width}x{size.height}/{size.every_n}"


def _write_tables(task: WindowTask, analyzer: Analyzer, folder: Path) -> None:
    stem = window_stem(task.start, task.end)
    for table_name, table in analyzer.tables().items():
        in_window = table["frame"] >= task.start
        if not task.open_ended:
            in_window &= table["frame"] < task.end
        in_window = table[in_window].reset_index(drop=True)
        with atomic_path(folder / f"{stem}.{table_name}.parquet") as tmp:
            in_window.to_parquet(tmp, index=False)
    settings = {"analyzer": analyzer.settings(), "video": task.video_path, "start": task.start, "end": task.end}
    atomic_write_text(folder / f"{stem}.done", json.dumps(settings, sort_keys=True) + "\n")
