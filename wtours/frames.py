"""The one frame iterator of wtours: PyAV threaded decoding, scaling done by FFmpeg (libswscale).

Every consumer names the size it wants; each decoded frame is scaled once per size inside
FFmpeg, in C, so Python never touches a full 4K frame::

    for frame in iter_frames("tour.mp4", {"small": (256, 144), "detector": FrameSize(640, 360, every_n=60)}):
        frame.index, frame.time, frame.images["small"]          # RGB uint8, (144, 256, 3)
        frame.images.get("detector")                           # only on frames 0, 60, 120, ...

Sampling (``every_n``) is counted on the absolute frame index, so a window that starts mid-video
sees the same sampled frames as a pass over the whole video. Memory is one frame per size.

Scaling is libswscale called directly, one ``VideoReformatter`` per size. An FFmpeg filter graph
(``buffer -> scale -> format -> buffersink``) costs the same CPU time within noise on a 4K60 H.264 file
(benchmarks/bench_analyze.py) and needs a graph per size.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from wtours.errors import WtoursError


@dataclass(frozen=True)
class FrameSize:
    """One consumer's frames: ``width`` x ``height`` RGB, on frames whose index is a multiple of ``every_n``."""

    width: int
    height: int
    every_n: int = 1

    def __post_init__(self) -> None:
        if self.width < 2 or self.height < 2 or self.every_n < 1:
            raise ValueError(f"invalid frame size {self.width}x{self.height} every {self.every_n} frames")

    def due(self, index: int) -> bool:
        return index % self.every_n == 0


@dataclass
class DecodedFrame:
    """A decoded frame: its index from the start of the video, its time in seconds, its scaled images."""

    index: int
    time: float
    images: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass(frozen=True)
class StreamInfo:
    """What the iterator needs to know about the video stream (see wtours.video for a full probe)."""

    codec: str
    fps: float
    width: int
    height: int
    frame_count: int | None  # from the container header; None when the container does not say
    duration: float  # seconds, from the container header

    @property
    def estimated_frames(self) -> int:
        """The header's frame count, else duration x fps."""
        return self.frame_count or max(1, round(self.duration * self.fps))


def scaled_size(width: int, height: int, target_width: int) -> tuple[int, int]:
    """``(target_width, h)`` keeping the aspect ratio, ``h`` even (what H.264-sized frames expect)."""
    if width <= target_width:
        return width, height
    target_height = max(2, round(height * target_width / width / 2) * 2)
    return target_width, target_height


def stream_info(path: str | os.PathLike[str]) -> StreamInfo:
    """Frame rate, size and header frame count of the first video stream."""
    container = _open(path)
    try:
        stream = container.streams.video[0]
        return StreamInfo(
            codec=stream.codec_context.name,
            fps=float(_frame_rate(stream, path)),
            width=stream.codec_context.width,
            height=stream.codec_context.height,
            frame_count=stream.frames or None,
            duration=_duration(container, stream),
        )
    finally:
        container.close()


def iter_frames(
    path: str | os.PathLike[str],
    sizes: Mapping[str, tuple[int, int] | FrameSize],
    *,
    start_frame: int = 0,
    end_frame: int | None = None,
    every_n: int = 1,
    threads: int = 0,
    interpolation: str = "FAST_BILINEAR",
) -> Iterator[DecodedFrame]:
    """Decode frames ``[start_frame, end_frame)`` and yield each one scaled to every requested size.

    ``sizes`` maps a consumer name to ``(width, height)`` (sampled every ``every_n`` frames) or to a
    :class:`FrameSize` with its own sampling. Frames where no size is due are decoded but not yielded.
    ``threads`` is FFmpeg's decoding thread count (0: one per core). ``interpolation`` is a libswscale
    filter name. The default, ``FAST_BILINEAR`` (two taps, like OpenCV's ``INTER_LINEAR`` that
    PySceneDetect shrinks frames with), costs a few ms per 4K frame; ``AREA`` averages every source
    pixel (about twice the cost) and ``BILINEAR`` widens its filter with the shrink factor (5x slower).
    Decoding errors raise :class:`WtoursError`.
    """
    requests = {
        name: size if isinstance(size, FrameSize) else FrameSize(int(size[0]), int(size[1]), every_n)
        for name, size in sizes.items()
    }
    if start_frame < 0 or (end_frame is not None and end_frame < start_frame):
        raise ValueError(f"invalid frame range [{start_frame}, {end_frame})")
    from av.video.reformatter import VideoReformatter

    # One scaler per size, kept across frames: libswscale then sets up its filters once, not per frame
    # (VideoFrame.reformat would make a new one for every frame).
    scalers = {name: VideoReformatter() for name in requests}
    container = _open(path)
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        stream.thread_count = threads
        fps = _frame_rate(stream, path)
        time_base = stream.time_base or Fraction(1, 1)
        origin = stream.start_time or 0
        if start_frame > 0:
            # Land on the key frame at or before the start, then decode forward to it.
            target = origin + int(Fraction(start_frame) / fps / time_base)
            container.seek(target, stream=stream, backward=True, any_frame=False)
        next_index = 0
        for frame in _decode(container, stream, path):
            index = next_index if frame.pts is None else round((frame.pts - origin) * time_base * fps)
            if index < next_index:
                continue  # a repeated timestamp: keep the first frame shown at this position
            next_index = index + 1
            if index < start_frame:
                continue
            if end_frame is not None and index >= end_frame:
                break
            due = {name: request for name, request in requests.items() if request.due(index)}
            if not due:
                continue
            images = {
                name: scalers[name]
                .reformat(frame, request.width, request.height, "rgb24", interpolation=interpolation)
                .to_ndarray()
                for name, request in due.items()
            }
            yield DecodedFrame(index=index, time=float(index / fps), images=images)
    finally:
        container.close()


def _open(path: str | os.PathLike[str]):
    import av

    if not Path(path).is_file():
        raise WtoursError(f"video not found: {path}")
    try:
        container = av.open(str(path))
    except av.error.FFmpegError as err:
        raise WtoursError(f"cannot open video {path}: {err}") from None
    if not container.streams.video:
        container.close()
        raise WtoursError(f"no video stream in {path}")
    return container


def _frame_rate(stream, path: str | os.PathLike[str]) -> Fraction:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    if not rate or rate <= 0:
        raise WtoursError(f"{path}: the video stream does not state its frame rate")
    return Fraction(rate)


def _duration(container, stream) -> float:
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    return container.duration / 1_000_000 if container.duration else 0.0


def _decode(container, stream, path: str | os.PathLike[str]):
    import av

    try:
        yield from container.decode(stream)
    except av.error.FFmpegError as err:
        raise WtoursError(f"{path}: decoding failed: {err}") from None
