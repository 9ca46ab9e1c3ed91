"""``wtours analyze``: plan windows, run them on an executor, merge each video's results.

Results per video in ``analysis/<id>/``::

    frames.parquet           frame, time, lightness (mean CIE L*), luma, blank, frozen, frame_diff, content_val
    shots.parquet            shot, start_frame (inclusive), end_frame (exclusive), start/end_time, timecodes

``frame`` counts the frames in display order (0, 1, 2, ...); every ``time`` is the frame's presentation
timestamp in seconds, so a variable-frame-rate video (a phone's) gets real times, not ``frame / fps``.
    objects.parquet          one row per detection: frame, time, class_id, class_name, confidence, x0..y1
    detector_frames.parquet  every frame the detector saw: frame, time, objects, unique_classes
    summary.json             probe, shot count, per-frame object statistics, lightness range, blank time, settings
"""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import wtours
from wtours.analysis.executors import ExecutorName, run_tasks, threads_per_worker
from wtours.analysis.objects import empty_detections
from wtours.analysis.settings import AnalysisSettings, settings_hash
from wtours.analysis.shots import detect_cuts, shot_table
from wtours.analysis.window import (
    VideoInput,
    WindowTask,
    build_analyzers,
    is_done,
    load_analyzers,
    part_dir,
    plan_windows,
    window_span,
    window_stem,
)
from wtours.errors import WtoursError
from wtours.frames import StreamInfo, choose_decoder, stream_info
from wtours.manifest import Manifest
from wtours.progress import console, make_progress
from wtours.selection import select_videos
from wtours.store import Store, atomic_path, atomic_write_json, check_writable, read_json

MIB = 1 << 20
RESULT_FILES = ("frames.parquet", "shots.parquet", "objects.parquet", "detector_frames.parquet", "summary.json")


@dataclass
class VideoResult:
    """How one video's analysis went; ``summary`` is its summary.json when it succeeded."""

    video: VideoInput
    analysis_dir: Path
    error: str | None = None
    summary: dict[str, Any] | None = None
    windows_computed: int = 0
    windows_cached: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.error is None


def analyze_videos(
    videos: Sequence[VideoInput],
    store: Store,
    settings: AnalysisSettings | None = None,
    *,
    executor: ExecutorName = "local",
    workers: int = 1,
    ray_address: str | None = None,
    show_progress: bool = True,
) -> list[VideoResult]:
    """Analyze every video (one decode pass per window), merge, and write ``analysis/<id>/``.

    A video that fails (unreadable, truncated) gets an error in its result; the others complete,
    and its finished windows stay cached for the next run. An OSError on the analysis folder (read-only,
    full) is raised at once instead: every other video would fail the same way.
    """
    settings = settings or AnalysisSettings()
    threads = threads_per_worker(workers) if executor == "local" else 1
    results: list[VideoResult] = []
    streams: dict[str, StreamInfo] = {}
    tasks_of: dict[str, list[WindowTask]] = {}
    for video in videos:
        result = VideoResult(video, store.analysis_dir(video.id))
        results.append(result)
        if not Path(video.path).is_file():
            result.error = f"{video.id}: no video at {video.path} (not fetched yet? run `wtours fetch`)"
            continue
        try:
            streams[video.id] = stream_info(video.path)
            content = content_identity(video, store)
            decoder = choose_decoder(video.path, settings.decode)
        except WtoursError as err:
            result.error = str(err)
            continue
        if decoder.notice:
            console.print(f"[yellow]{video.id}[/]: {decoder.notice}", highlight=False, soft_wrap=True)
        tasks_of[video.id] = plan_windows(video, result.analysis_dir, streams[video.id], settings, content, threads,
                                          decoder.name)  # fmt: skip
    pending = [task for tasks in tasks_of.values() for task in tasks if not _window_cached(task)]
    by_id = {result.video.id: result for result in results}
    for video_id, tasks in tasks_of.items():
        by_id[video_id].windows_cached = len(tasks) - sum(task.video_id == video_id for task in pending)
    if pending:
        check_writable(store.analysis_root)  # a read-only data directory: one line, before any decoding
        # Every analyzer loads (a detector's weights, checked on a blank frame) before any frame is decoded:
        # bad weights are an error about the options, not about each video, found in seconds.
        load_analyzers(build_analyzers(pending[0].stream, settings))

    if pending:
        progress = make_progress() if show_progress else None
        if progress:
            progress.start()
            bar = progress.add_task("analyze", total=sum(task.frames for task in pending))
        try:
            for outcome in run_tasks(pending, executor=executor, workers=workers, ray_address=ray_address):
                if outcome.disk_error:
                    raise OSError(*outcome.disk_error)
                result = by_id[outcome.video_id]
                if outcome.error:
                    result.errors.append(outcome.error)
                else:
                    result.windows_computed += 1
                if progress:
                    progress.advance(bar, outcome.end - outcome.start)
        finally:
            if progress:
                progress.stop()

    for result in results:
        if result.error is None and result.errors:
            result.error = result.errors[0]  # one line per video; the first failure says what is wrong
        if result.error is not None:
            continue
        video_id = result.video.id
        try:
            result.summary = merge_video(result.video, result.analysis_dir, streams[video_id], settings,
                                         tasks_of[video_id])
        except WtoursError as err:
            result.error = str(err)
    return results


def videos_from_manifest(
    manifest: Manifest, only: list[str] | None, group: str | None, store: Store
) -> list[VideoInput]:
    """The selected videos (wtours.selection: the manifest's, or any video of the store by id), at their place
    ``videos/<id>.mp4``. Not only the fetched ones: an unfetched video fails alone, with a hint."""
    selected = select_videos(manifest, only, group, store=store)
    return [VideoInput(entry.id, store.video_path(entry.id), entry.group) for entry in selected]


def videos_from_paths(paths: Sequence[Path], group: str = "videos") -> list[VideoInput]:
    """Ad-hoc video files; each one's id is its file name without suffix, made safe for a folder name."""
    videos = []
    for path in paths:
        video_id = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(path).stem).lstrip(".-") or "video"
        if any(video.id == video_id for video in videos):
            raise WtoursError(f"two videos named {video_id!r}: rename one (ids come from file names)")
        videos.append(VideoInput(video_id, Path(path), group))
    return videos


def content_identity(video: VideoInput, store: Store) -> str:
    """What a video's cached window results are keyed by: its content, never its id or its name.

    A fetched video has the SHA-256 its fetch computed (when the sidecar's size still matches); any other
    file is known by size and modification time. Both add a hash of the first, middle and last MiB (a
    few milliseconds on any size), so even a same-size file put in place without a new sidecar differs.
    """
    path = Path(video.path)
    try:
        size = path.stat().st_size
        sampled = hashlib.sha256()
        with open(path, "rb") as handle:
            for offset in sorted({0, max(0, size // 2 - MIB // 2), max(0, size - MIB)}):
                handle.seek(offset)
                sampled.update(handle.read(MIB))
        mtime_ns = path.stat().st_mtime_ns
    except OSError as err:
        raise WtoursError(f"{video.id}: cannot read {path}: {err.strerror or err}") from None
    sidecar = store.sidecar(video.id) if path == store.video_path(video.id) else None
    if sidecar and sidecar.get("sha256") and sidecar.get("size") == size:
        return f"sha256:{sidecar['sha256']}:{sampled.hexdigest()[:16]}"
    return f"file:{size}:{mtime_ns}:{sampled.hexdigest()[:16]}"


def _window_cached(task: WindowTask) -> bool:
    analyzers = build_analyzers(task.stream, task.settings)
    return all(is_done(part_dir(Path(task.analysis_dir), analyzer, task), task.start, task.end)
               for analyzer in analyzers)  # fmt: skip


def merge_video(
    video: VideoInput, analysis_dir: Path, stream: StreamInfo, settings: AnalysisSettings, tasks: list[WindowTask]
) -> dict[str, Any]:
    """Join the window results of one video into its Parquet files and summary.json (atomically).

    Windows number their frames from 0; here they get the video's frame numbers, in order, after a check
    on their timestamps that each window continues the one before. Skipped when summary.json already
    records the same windows and settings: a re-run does nothing.
    """
    analyzers = build_analyzers(stream, settings)
    folders = {analyzer.name: part_dir(analysis_dir, analyzer, tasks[0]) for analyzer in analyzers}
    windows = [(task.start, task.end) for task in tasks]
    stems = [window_stem(*window) for window in windows]
    merge_settings = settings.model_dump(
        include={"shot_detector", "shot_threshold", "adaptive_threshold", "min_scene_len", "duration"}
    )
    key = settings_hash({"parts": sorted(f.name for f in folders.values()), "windows": stems,
                         "merge": merge_settings, "group": video.group})
    previous = read_json(analysis_dir / "summary.json")
    if previous and previous.get("key") == key and all((analysis_dir / name).is_file() for name in RESULT_FILES):
        return previous

    spans = [window_span(folders["lightness"], *window) for window in windows]
    offsets = _check_timeline(video.id, stems, spans)
    frames = _merge_frames(folders["lightness"], folders["shots"], stems, offsets, analysis_dir / "frames.parquet")
    fps = stream.fps
    cuts = detect_cuts(
        frames["content_val"],
        fps,
        times=frames["time"],
        detector=settings.shot_detector,
        threshold=settings.shot_threshold,
        adaptive_threshold=settings.adaptive_threshold,
        min_scene_len=settings.min_scene_len,
    )
    frames["end_time"] = next((span["end"] for span in reversed(spans) if span["end"] is not None), 0.0)
    frames["reached_end"] = spans[-1]["after"] is None
    # How long each frame is shown: on a variable frame rate, frames are not all 1 / fps long.
    shown = np.diff(frames["time"], append=frames["end_time"])
    for flag in ("blank", "frozen"):
        frames[f"{flag}_seconds"] = float(shown[frames[flag]].sum())
        frames[flag] = int(frames[flag].sum())
    shots = shot_table(cuts, frames["n_frames"], fps, frames["time"], frames["end_time"])
    _write_parquet(shots, analysis_dir / "shots.parquet")
    if "objects" in folders:
        detections = _concat([folders["objects"] / f"{stem}.objects.parquet" for stem in stems], offsets)
        sampled = _concat([folders["objects"] / f"{stem}.detector_frames.parquet" for stem in stems], offsets)
    else:
        detections = empty_detections()
        sampled = pd.DataFrame({"frame": [], "time": [], "objects": [], "unique_classes": []}).astype(
            {"frame": np.int64, "time": np.float64, "objects": np.int64, "unique_classes": np.int64}
        )
    _write_parquet(detections, analysis_dir / "objects.parquet")
    _write_parquet(sampled, analysis_dir / "detector_frames.parquet")
    summary = _summary(video, stream, settings, frames, shots, detections, sampled)
    summary["key"] = key
    atomic_write_json(analysis_dir / "summary.json", summary)
    return summary


def _check_timeline(video_id: str, stems: list[str], spans: list[dict[str, Any]]) -> list[int]:
    """Each window's first frame number in the video, after checking on timestamps that the windows join:
    a window's warm-up frame (the one shown just before it) is the last frame of the windows before."""
    offsets, count, last_time = [], 0, None
    for stem, span in zip(stems, spans, strict=True):
        if span["frames"] and span["before"] != last_time:
            raise WtoursError(f"{video_id}: window {stem} does not continue the frame at "
                              f"{last_time or 0:.3f} s (results of another decode?); re-run")  # fmt: skip
        offsets.append(count)
        count += span["frames"]
        if span["frames"]:
            last_time = span["last"]
    return offsets


def _merge_frames(lightness_dir: Path, shots_dir: Path, stems: list[str], offsets: list[int],
                  out: Path) -> dict[str, Any]:  # fmt: skip
    """Stream the per-window frame tables into frames.parquet (one window in memory at a time)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    content_val: list[np.ndarray] = []
    times: list[np.ndarray] = []
    flags: dict[str, list[np.ndarray]] = {"blank": [], "frozen": []}
    stats: dict[str, Any] = defaultdict(float)
    stats["lightness_min"], stats["lightness_max"] = np.inf, -np.inf
    n_frames = 0
    with atomic_path(out) as tmp:
        writer = None
        try:
            for stem, offset in zip(stems, offsets, strict=True):
                light = pd.read_parquet(lightness_dir / f"{stem}.frames.parquet")
                scores = pd.read_parquet(shots_dir / f"{stem}.frames.parquet")
                table = light.merge(scores, on="frame", how="left", validate="one_to_one")
                if not np.array_equal(table["frame"].to_numpy(), np.arange(len(table))) or offset != n_frames:
                    raise WtoursError(f"{out.parent.name}: window {stem} does not continue frame {n_frames}; re-run")
                table["frame"] += n_frames
                n_frames += len(table)
                content_val.append(table["content_val"].to_numpy(np.float32))
                times.append(table["time"].to_numpy(np.float64))
                if len(table):
                    stats["lightness_min"] = min(stats["lightness_min"], float(table["lightness"].min()))
                    stats["lightness_max"] = max(stats["lightness_max"], float(table["lightness"].max()))
                stats["lightness_sum"] += float(table["lightness"].to_numpy(np.float64).sum())
                for flag, kept in flags.items():
                    kept.append(table[flag].to_numpy(bool))
                arrow = pa.Table.from_pandas(table, preserve_index=False)
                if writer is None:
                    writer = pq.ParquetWriter(tmp, arrow.schema)
                writer.write_table(arrow)
        finally:
            if writer is not None:
                writer.close()
        if writer is None or n_frames == 0:
            raise WtoursError(f"{out.parent.name}: no frames were analyzed")
    stats["n_frames"] = n_frames
    stats["content_val"] = np.concatenate(content_val)
    stats["time"] = np.concatenate(times)
    for flag, kept in flags.items():
        stats[flag] = np.concatenate(kept)
    return stats


def _concat(paths: list[Path], offsets: list[int]) -> pd.DataFrame:
    """Window tables in order, their window-local frame numbers made the video's."""
    tables = [pd.read_parquet(path) for path in paths]
    for table, offset in zip(tables, offsets, strict=True):
        table["frame"] += offset
    non_empty = [table for table in tables if len(table)]
    return pd.concat(non_empty, ignore_index=True) if non_empty else tables[0]


def _write_parquet(table: pd.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        table.to_parquet(tmp, index=False)


def _summary(
    video: VideoInput,
    stream: StreamInfo,
    settings: AnalysisSettings,
    frames: dict[str, Any],
    shots: pd.DataFrame,
    detections: pd.DataFrame,
    sampled: pd.DataFrame,
) -> dict[str, Any]:
    fps = stream.fps
    n_frames = frames["n_frames"]
    header_frames = stream.frame_count or stream.estimated_frames
    objects: dict[str, Any] | None = None
    if settings.detector:
        frequency = detections["class_name"].value_counts()
        objects = {
            "detector": settings.detector,
            "sampled_frames": len(sampled),
            "mean_per_frame": _stat(sampled["objects"].mean()),
            "median_per_frame": _stat(sampled["objects"].median()),
            "mean_unique_classes_per_frame": _stat(sampled["unique_classes"].mean()),
            "median_unique_classes_per_frame": _stat(sampled["unique_classes"].median()),
            "unique_classes": int(detections["class_name"].nunique()),
            "class_frequency": {str(name): int(count) for name, count in frequency.items()},
        }
    return {
        "id": video.id,
        "group": video.group,
        "video": str(video.path),
        "wtours_version": wtours.__version__,
        "probe": {
            "codec": stream.codec,
            "fps": fps,
            "frames": header_frames,
            "duration": header_frames / fps,
            "width": stream.width,
            "height": stream.height,
            "resolution": f"{stream.width}x{stream.height}",
        },
        "analyzed": {
            "frames": n_frames,
            "seconds": frames["end_time"],
            "complete": frames["reached_end"],
        },
        "shots": len(shots),
        "cuts": shots["start_frame"].tolist()[1:],
        "objects": objects,
        "lightness": {
            "min": frames["lightness_min"],
            "max": frames["lightness_max"],
            "range": frames["lightness_max"] - frames["lightness_min"],
            "mean": frames["lightness_sum"] / max(1, n_frames),
        },
        "blank": {
            "frames": frames["blank"],
            "seconds": frames["blank_seconds"],
            "fraction": frames["blank"] / max(1, n_frames),
        },
        "frozen": {"frames": frames["frozen"], "seconds": frames["frozen_seconds"]},
        "settings": settings.model_dump(),
    }


def _stat(value: float) -> float | None:
    return None if pd.isna(value) else float(value)


def print_results(results: Sequence[VideoResult]) -> None:
    """One line per video: what was computed and the headline numbers, or the error."""
    from rich.table import Table

    table = Table(title="analysis", title_justify="left")
    for column in ("video", "frames", "shots", "objects/frame", "classes/frame", "L* range", "blank s", "windows"):
        table.add_column(column, justify="left" if column == "video" else "right")
    for result in results:
        summary = result.summary
        if summary is None:
            table.add_row(result.video.id, "[red]failed", *[""] * 6)
            continue
        objects = summary["objects"] or {}
        table.add_row(
            result.video.id,
            str(summary["analyzed"]["frames"]),
            str(summary["shots"]),
            _fmt(objects.get("mean_per_frame")),
            _fmt(objects.get("mean_unique_classes_per_frame")),
            f"{summary['lightness']['min']:.1f}-{summary['lightness']['max']:.1f}",
            f"{summary['blank']['seconds']:.1f}",
            f"{result.windows_computed} new, {result.windows_cached} cached",
        )
    console.print(table)
    for result in results:
        if not result.ok:
            console.print(f"[bold red]error:[/] {result.error}", highlight=False, soft_wrap=True)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"
