"""The one frame iterator of wtours: PyAV threaded decoding, scaling done by FFmpeg (libswscale).

Every consumer names the size it wants; each decoded frame is scaled once per size inside
FFmpeg, in C, so Python never touches a full 4K frame::

    for frame in iter_frames("tour.mp4", {"small": (256, 144), "detector": FrameSize(640, 360, every_n=60)}):
        frame.index, frame.time, frame.images["small"]          # RGB uint8, (144, 256, 3)
        frame.images.get("detector")                           # only on frames 0, 60, 120, ...

Frames are placed by their presentation timestamps. ``time`` is when a frame is shown, in seconds from
the first frame; ``index`` is its place on the stream's average-rate grid, ``round(time * fps)``. For a
constant frame rate that is the frame number; a variable-frame-rate video (phones, action cameras)
skips grid places where it shows no new frame and may show two frames in one place, and its frames
are all yielded all the same, each with its real time. Ranges (``start_frame``, ``end_frame``) and
sampling (``every_n``) are expressed on that grid, so a window that starts mid-video sees the same
frames, and the same sampled frames, as a pass over the whole video. Memory is one frame per size.

Scaling is libswscale called directly, one ``VideoReformatter`` per size. An FFmpeg filter graph
(``buffer -> scale -> format -> buffersink``) costs the same CPU time within noise on a 4K60 H.264 file
(benchmarks/bench_analyze.py) and needs a graph per size.
"""

from __future__ import annotations

import math
import os
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from wtours.errors import WtoursError


@dataclass(frozen=True)
class FrameSize:
    """One consumer's frames: ``width`` x ``height`` RGB, every frame (``every_n`` = 1) or one frame per
    ``every_n`` grid places."""

    width: int
    height: int
    every_n: int = 1

    def __post_init__(self) -> None:
        if self.width < 2 or self.height < 2 or self.every_n < 1:
            raise ValueError(f"invalid frame size {self.width}x{self.height} every {self.every_n} frames")

    def due(self, index: int, previous: int | None = None) -> bool:
        """Whether the frame at grid place ``index`` is sampled, ``previous`` being the place of the frame
        before it (None: ``index - 1``).

        A frame is due when it is the first at or after a multiple of ``every_n``: for a constant frame
        rate exactly the multiples (0, 60, 120, ...); for a variable one, the frame on screen at each of
        them, so a multiple that falls in a gap between frames is not lost.
        """
        if self.every_n == 1:
            return True
        previous = index - 1 if previous is None else previous
        return index // self.every_n > previous // self.every_n


@dataclass
class DecodedFrame:
    """A decoded frame: its place on the grid, when it is shown and replaced (seconds), its images (only the
    sizes due on this frame)."""

    index: int
    time: float
    images: dict[str, np.ndarray] = field(default_factory=dict)
    end_time: float = 0.0  # when the next frame replaces it (its timestamp plus its duration)


@dataclass(frozen=True)
class StreamInfo:
    """What the iterator needs to know about the video stream (see wtours.video for a full probe)."""

    codec: str
    fps: float  # the average rate: frames per second over the whole stream
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
    preroll: int = 0,
) -> Iterator[DecodedFrame]:
    """Decode the frames whose grid place is in ``[start_frame, end_frame)`` and yield each one scaled to
    every requested size.

    ``sizes`` maps a consumer name to ``(width, height)`` (sampled every ``every_n`` grid places) or to a
    :class:`FrameSize` with its own sampling. A frame where no size is due comes without images (so a
    consumer of sampled frames still knows where the video ends).
    ``preroll`` frames shown just before ``start_frame`` come first (their ``index`` is below it), or
    alone when the video ends before ``start_frame``: what an analyzer comparing each frame with the
    previous one needs at the start of a window, wherever the previous frame is on a variable-rate
    timeline. A frame repeating the previous frame's timestamp is
    dropped. ``threads`` is FFmpeg's decoding thread count (0: one per core). ``interpolation`` is a
    libswscale filter name. The default, ``FAST_BILINEAR`` (two taps, like OpenCV's ``INTER_LINEAR`` that
    PySceneDetect shrinks frames with), costs a few ms per 4K frame; ``AREA`` averages every source
    pixel (about twice the cost) and ``BILINEAR`` widens its filter with the shrink factor (5x slower).
    Decoding errors raise :class:`WtoursError`.
    """
    requests = {
        name: size if isinstance(size, FrameSize) else FrameSize(int(size[0]), int(size[1]), every_n)
        for name, size in sizes.items()
    }
    if start_frame < 0 or (end_frame is not None and end_frame < start_frame) or preroll < 0:
        raise ValueError(f"invalid frame range [{start_frame}, {end_frame}) with {preroll} frames of preroll")
    from av.video.reformatter import VideoReformatter

    # One scaler per size, kept across frames: libswscale then sets up its filters once, not per frame
    # (VideoFrame.reformat would make a new one for every frame).
    scalers = {name: VideoReformatter() for name in requests}
    container = _open(path)
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        stream.thread_count = threads
        clock = _Clock(stream, path)
        # Sampling a frame depends on the place of the frame before it, so a window past the start
        # always decodes at least that one.
        before = max(preroll, 1) if start_frame > 0 else preroll
        for frame, index, previous in _positioned(container, stream, clock, start_frame, before, preroll, path):
            if end_frame is not None and index >= end_frame:
                break
            due = {name: request for name, request in requests.items() if request.due(index, previous)}
            images = {
                name: scalers[name]
                .reformat(frame, request.width, request.height, "rgb24", interpolation=interpolation)
                .to_ndarray()
                for name, request in due.items()
            }
            time, end_time = clock.times(frame)
            yield DecodedFrame(index=index, time=time, images=images, end_time=end_time)
    finally:
        container.close()


class _Clock:
    """A stream's timestamps as grid places and seconds from its first frame."""

    def __init__(self, stream, path: str | os.PathLike[str]):
        self.fps = _frame_rate(stream, path)
        self.time_base = stream.time_base or Fraction(1, 1)
        self.origin = stream.start_time or 0
        self.frame_ticks = max(1, round(1 / (self.fps * self.time_base)))  # one grid step in timestamp ticks

    def index(self, pts: int) -> int:
        return round((pts - self.origin) * self.time_base * self.fps)

    def seconds(self, pts: int) -> float:
        """Seconds from the start. A time within half a tick of the grid is the grid's: a constant-rate
        video whose container rounds timestamps (Matroska keeps milliseconds) still has frame i at i / fps."""
        exact = (pts - self.origin) * self.time_base
        grid = Fraction(round(exact * self.fps)) / self.fps
        return float(grid if abs(exact - grid) <= self.time_base / 2 else exact)

    def times(self, frame) -> tuple[float, float]:
        """(shown at, replaced at) of a decoded frame, in seconds."""
        ticks = frame.duration or self.frame_ticks
        return self.seconds(frame.pts), self.seconds(frame.pts + ticks)

    def seek_target(self, index: int) -> int:
        """A timestamp before every frame whose grid place is ``index`` or later."""
        earliest = (Fraction(2 * index - 1, 2) / self.fps) / self.time_base  # the grid place's lower edge
        return self.origin + math.floor(earliest) - 1


def _positioned(container, stream, clock: _Clock, start_frame: int, before: int, preroll: int, path):
    """``(frame, index, index of the frame before)`` from ``start_frame`` on, after the ``preroll`` frames
    just before it, having decoded at least ``before`` (>= ``preroll``) frames before it.

    Seeking lands on a key frame at or before the target; when that leaves fewer than ``before`` frames
    ahead of the start (a key frame just after the target's gap, or decode order differing from display
    order), seek again from further back, doubling the distance, up to the start of the stream.
    """
    target = clock.seek_target(start_frame) if start_frame > 0 else None
    step = clock.frame_ticks * max(before, 1)
    while True:
        if target is not None:
            container.seek(max(target, clock.origin), stream=stream, backward=True, any_frame=False)
        timeline = _timeline(_decode(container, stream, path), clock)
        waiting: deque = deque(maxlen=before)
        seen_before = 0
        first = None
        for placed in timeline:
            if placed[1] >= start_frame:
                first = placed
                break
            waiting.append(placed)
            seen_before += 1
        if seen_before < before and target is not None and target > clock.origin:
            target -= step  # landed too late: seek from further back
            step *= 2
            continue
        yield from list(waiting)[len(waiting) - min(preroll, len(waiting)):]  # alone if the video ends first
        if first is not None:
            yield first
            yield from timeline
        return


def _timeline(frames, clock: _Clock):
    """``(frame, index, previous index)`` in display order; a frame repeating (or going back from) the
    previous timestamp is dropped: the first frame shown there stays."""
    last_pts = previous = None
    for frame in frames:
        if frame.pts is None:  # a stream without timestamps: one grid step after the frame before
            frame.pts = clock.origin if last_pts is None else last_pts + clock.frame_ticks
        if last_pts is not None and frame.pts <= last_pts:
            continue
        last_pts = frame.pts
        index = clock.index(frame.pts)
        yield frame, index, previous
        previous = index


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
