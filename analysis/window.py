"""The work unit: one time window of one video, decoded once and fed to every analyzer that needs it.

Windows cut the stream's average-rate grid (see :mod:`wtours.frames`) at fixed places, so they are
stretches of time, not counts of frames: a variable-frame-rate video splits the same way as any other,
and the last window reads on to the end of the file whatever its header says. Inside a window frames
are numbered from 0 (a warm-up frame before the window is -1); the merge turns those numbers into
the video's frame numbers by counting the frames of the windows before, and checks on their
timestamps that each window continues the one before it.

Each analyzer's result for a window is cached under
``analysis/<id>/.windows/<analyzer>-<key>/<start>-<end>.<table>.parquet`` with a ``.done`` marker
written last, so an interrupted run resumes where it stopped, an unchanged re-run decodes nothing, and
a changed setting recomputes only the analyzer it belongs to. The key hashes the analyzer's settings,
the stream and the video's content identity, so another file under the same id never reads them.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wtours.analysis.base import Analyzer, one_line
from wtours.analysis.settings import AnalysisSettings, detector_key, settings_hash
from wtours.errors import WtoursError, os_error_message
from wtours.frames import FrameSize, StreamInfo, iter_frames, scaled_size
from wtours.store import atomic_path, atomic_write_text, read_json

WINDOWS_DIR = ".windows"
# Frames decoded and scaled ahead of the analyzers, on their own thread, so the decoder never stands still
# while the analyzers work (benchmarks/bench_analyze.py; README, "Speed"). Memory: this many analysis frames
# (256 px: 110 KB each) plus the detector's frames among them.
READ_AHEAD_FRAMES = 32


@dataclass(frozen=True)
class VideoInput:
    """A video to analyze: its id (folder name under analysis/), file and group (for figures)."""

    id: str
    path: Path
    group: str = "videos"


@dataclass(frozen=True)
class WindowTask:
    """Grid places ``[start, end)`` of one video; plain data, so it travels to a worker process or a Ray node."""

    video_id: str
    video_path: str
    analysis_dir: str
    start: int
    end: int
    stream: StreamInfo
    settings: AnalysisSettings
    content: str  # the video's content identity (see wtours.analysis.run.content_identity)
    threads: int = 0
    # The last window reads on to the end of the file: a header's frame count or duration may be off.
    open_ended: bool = False
    decoder: str | None = None  # an FFmpeg decoder by name (NVDEC's h264_cuvid, ...); None: the stream's default

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
    # (errno, strerror, file) of an OSError on the analysis folder (read-only, full): not this video's fault,
    # so the run stops instead of failing every window alike. Plain data: it travels back from a Ray node.
    disk_error: tuple[int, str, str] | None = None


def plan_windows(
    video: VideoInput,
    analysis_dir: Path,
    stream: StreamInfo,
    settings: AnalysisSettings,
    content: str,
    threads: int = 0,
    decoder: str | None = None,
) -> list[WindowTask]:
    """Split a video into windows of ``settings.window_seconds`` on a fixed grid (place 0, W, 2W, ...).

    The grid does not depend on ``--duration``: a longer run later reuses every full window already done.
    """
    fps = stream.fps
    window = max(1, round(settings.window_seconds * fps))
    total = stream.estimated_frames
    open_ended = True
    if settings.duration is not None and round(settings.duration * fps) < total:
        total, open_ended = round(settings.duration * fps), False
    tasks = []
    for start in range(0, total, window):
        end = min(start + window, total)
        tasks.append(
            WindowTask(
                video_id=video.id,
                video_path=str(video.path),
                analysis_dir=str(analysis_dir),
                start=start,
                end=end,
                stream=stream,
                settings=settings,
                content=content,
                threads=threads,
                open_ended=open_ended and end >= total,
                decoder=decoder,
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
    """The analyzers these settings ask for (cheap: models load in ``Analyzer.load``)."""
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
                trust_weights=settings.trust_detector_weights,
            )
        )
    return analyzers


def load_analyzers(analyzers: list[Analyzer]) -> None:
    """Load every analyzer's model and check it works; raises WtoursError. Called before the first frame
    is decoded, so a missing or broken detector costs seconds, not a decode of hours of 4K."""
    for analyzer in analyzers:
        analyzer.load()


def part_dir(analysis_dir: Path, analyzer: Analyzer, task: WindowTask) -> Path:
    """Folder of one analyzer's window results; its name changes with anything the results depend on."""
    key = {"analyzer": analyzer.settings(), "interpolation": task.settings.interpolation,
           "stream": task.stream.__dict__, "content": task.content}  # fmt: skip
    return Path(analysis_dir) / WINDOWS_DIR / f"{analyzer.name}-{settings_hash(key)}"


def window_stem(start: int, end: int) -> str:
    return f"{start:010d}-{end:010d}"


def is_done(folder: Path, start: int, end: int) -> bool:
    return (folder / f"{window_stem(start, end)}.done").is_file()


def window_span(folder: Path, start: int, end: int) -> dict[str, Any]:
    """What a finished window decoded: its frame count and the times of the frames around its edges."""
    done = read_json(folder / f"{window_stem(start, end)}.done") or {}
    if "span" not in done:
        raise WtoursError(f"{folder.name}: window {window_stem(start, end)} has no record of its frames; re-run")
    return done["span"]


def run_window(task: WindowTask) -> WindowOutcome:
    """Decode the window once, feed every analyzer whose result is missing, write their tables.

    Never raises: a broken video becomes ``outcome.error`` (one line) so the other work goes on; an
    OSError on the analysis folder, where every window writes, becomes ``outcome.disk_error``.
    """
    began = time.perf_counter()
    outcome = WindowOutcome(task.video_id, task.start, task.end)
    try:
        analyzers = build_analyzers(task.stream, task.settings)
        folders = {a.name: part_dir(Path(task.analysis_dir), a, task) for a in analyzers}
        analyzers = [a for a in analyzers if not is_done(folders[a.name], task.start, task.end)]
        if not analyzers:
            return outcome
        load_analyzers(analyzers)
        span = _feed(task, analyzers)
        for analyzer in analyzers:
            _write_tables(task, analyzer, folders[analyzer.name], span)
            outcome.computed.append(analyzer.name)
    except WtoursError as err:
        outcome.error = str(err)
    except OSError as err:
        if err.filename is not None and _inside(err.filename, task.analysis_dir):
            outcome.disk_error = (err.errno, err.strerror or str(err), str(err.filename))
        else:  # the video's own file (unreadable, gone): the path and the errno name, as the CLI says it
            outcome.error = os_error_message(err)
    except Exception as err:  # a bug or a library failure: report it with where it happened, keep going
        outcome.error = one_line(err, where=True)
    outcome.seconds = time.perf_counter() - began
    return outcome


def _inside(path: str | os.PathLike[str], folder: str | os.PathLike[str]) -> bool:
    return Path(os.path.abspath(path)).is_relative_to(os.path.abspath(folder))


def _feed(task: WindowTask, analyzers: list[Analyzer]) -> dict[str, Any]:
    """Feed the window's frames (numbered from 0 in the window) to the analyzers; return its span."""
    sizes = {_size_key(a.frame_size): a.frame_size for a in analyzers}
    preroll = max(a.warmup_frames for a in analyzers)
    frames = iter_frames(
        task.video_path,
        sizes,
        start_frame=task.start,
        preroll=preroll,
        threads=task.threads,
        interpolation=task.settings.interpolation,
        decoder=task.decoder,
        read_ahead=READ_AHEAD_FRAMES,
    )
    span: dict[str, Any] = {"frames": 0, "before": None, "first": None, "last": None, "after": None, "end": None}
    warmup: list = []
    last_decoded_end = 0.0
    for frame in frames:
        if frame.index < task.start:
            warmup.append(frame)
            span["before"] = frame.time
            last_decoded_end = frame.end_time
            continue
        if not task.open_ended and frame.index >= task.end:
            span["after"] = span["end"] = frame.time  # the next window's first frame
            break
        if warmup:  # the frames just before the window, numbered -len(warmup) .. -1
            for offset, early in enumerate(warmup):
                _feed_frame(analyzers, early, offset - len(warmup), warmup=True)
            warmup = []
        _feed_frame(analyzers, frame, span["frames"], warmup=False)
        if span["first"] is None:
            span["first"] = frame.time
        span["last"], span["end"] = frame.time, frame.end_time
        span["frames"] += 1
        last_decoded_end = frame.end_time
    else:
        _check_complete(task, last_decoded_end)
    return span


def _feed_frame(analyzers: list[Analyzer], frame, number: int, *, warmup: bool) -> None:
    for analyzer in analyzers:
        image = frame.images.get(_size_key(analyzer.frame_size))
        if image is not None and (not warmup or -number <= analyzer.warmup_frames):
            analyzer.process_frame(number, frame.time, image)


def _check_complete(task: WindowTask, decoded_until: float) -> None:
    """The file ended inside this window: fine for the last window, unless the header promises more."""
    stream = task.stream
    if stream.frame_count is None or not stream.duration:
        return  # the container does not describe the stream (Matroska, raw H.264): its end is the end
    if decoded_until < stream.duration - 0.5 / stream.fps:
        raise WtoursError(
            f"{task.video_id}: video ends at {decoded_until:.2f} s but its header says {stream.duration:.2f} s "
            f"(truncated download?); finished windows are kept, re-fetch the video and re-run"
        )


def _size_key(size: FrameSize) -> str:
    return f"{size.width}x{size.height}/{size.every_n}"


def _write_tables(task: WindowTask, analyzer: Analyzer, folder: Path, span: dict[str, Any]) -> None:
    stem = window_stem(task.start, task.end)
    for table_name, table in analyzer.tables().items():
        in_window = table[table["frame"] >= 0].reset_index(drop=True)  # warm-up frames are the window before's
        with atomic_path(folder / f"{stem}.{table_name}.parquet") as tmp:
            in_window.to_parquet(tmp, index=False)
    done = {"analyzer": analyzer.settings(), "video": task.video_path, "content": task.content,
            "start": task.start, "end": task.end, "span": span}  # fmt: skip
    atomic_write_text(folder / f"{stem}.done", json.dumps(done, sort_keys=True) + "\n")
