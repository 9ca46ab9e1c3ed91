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
from typing import Literal, TypeVar

import numpy as np

from wtours.errors import WtoursError

T = TypeVar("T")


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
    """Frame rate, size and header frame count of the first video stream.

    Read from the container's header when it says all of that (MP4, WebM, Matroska do): FFmpeg's probe
    would otherwise decode frames to learn what the header already holds, a third of a second for the
    first 4K frames of an H.264 or VP9 file, paid again by the decode pass that follows.
    """
    return _header_stream_info(path, header_only=True) or _header_stream_info(path, header_only=False)


def _header_stream_info(path: str | os.PathLike[str], *, header_only: bool) -> StreamInfo | None:
    container = _open(path, header_only=header_only)
    try:
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        if header_only and not (stream.codec_context.width and stream.codec_context.height and rate):
            return None  # a raw or transport stream: only decoding tells
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
    decoder: str | None = None,
    read_ahead: int = 0,
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
    ``decoder`` names the FFmpeg decoder (e.g. ``h264_cuvid``, see :func:`choose_decoder`); None is the
    stream's default. ``read_ahead`` > 0 decodes and scales on a background thread, up to that many frames
    ahead of the consumer (see :func:`prefetched`): the decoder never waits while the consumer works.
    Decoding errors raise :class:`WtoursError`.
    """
    requests = {
        name: size if isinstance(size, FrameSize) else FrameSize(int(size[0]), int(size[1]), every_n)
        for name, size in sizes.items()
    }
    if start_frame < 0 or (end_frame is not None and end_frame < start_frame) or preroll < 0:
        raise ValueError(f"invalid frame range [{start_frame}, {end_frame}) with {preroll} frames of preroll")
    frames = _scaled_frames(path, requests, start_frame, end_frame, threads, interpolation, preroll, decoder)
    return prefetched(frames, read_ahead) if read_ahead > 0 else frames


def _scaled_frames(path, requests: dict[str, FrameSize], start_frame: int, end_frame: int | None, threads: int,
                   interpolation: str, preroll: int, decoder: str | None) -> Iterator[DecodedFrame]:  # fmt: skip
    from av.video.reformatter import VideoReformatter

    # One scaler per size, kept across frames: libswscale then sets up its filters once, not per frame
    # (VideoFrame.reformat would make a new one for every frame).
    scalers = {name: VideoReformatter() for name in requests}
    container = _open(path)
    try:
        stream = container.streams.video[0]
        codec = _Decoder(container, stream, decoder, threads, path)
        clock = _Clock(stream, path)
        # Sampling a frame depends on the place of the frame before it, so a window past the start
        # always decodes at least that one.
        before = max(preroll, 1) if start_frame > 0 else preroll
        for frame, index, previous in _positioned(codec, clock, start_frame, before, preroll):
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


_DONE = object()


def prefetched(items: Iterator[T], depth: int) -> Iterator[T]:
    """``items``, produced on a background thread at most ``depth`` items ahead of the consumer.

    Why: a decoder's threads only work while someone hands them packets. In one thread, every moment spent
    on a frame (scaling, analyzers) is a moment the decoder stands still once its few frames in flight are
    done; here the producer keeps it fed and the consumer works at the same time (FFmpeg, libswscale,
    OpenCV and NumPy's array loops release the GIL). Memory: ``depth`` items. An exception of the
    producer is raised in the consumer; a consumer that stops early stops the producer, and ``items`` is
    closed on its own thread (where its files were opened).
    """
    import queue
    import threading

    handoff: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(entry: tuple) -> bool:
        while not stop.is_set():
            try:
                handoff.put(entry, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put((item, None)):
                    return
            put((_DONE, None))
        except BaseException as err:  # handed to the consumer, raised there
            put((_DONE, err))
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    producer = threading.Thread(target=produce, name="wtours-read-ahead", daemon=True)
    producer.start()
    try:
        while True:
            item, error = handoff.get()
            if item is _DONE:
                if error is not None:
                    raise error
                return
            yield item
    finally:
        stop.set()
        producer.join()


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


def _positioned(codec: _Decoder, clock: _Clock, start_frame: int, before: int, preroll: int):
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
            codec.seek(max(target, clock.origin))
        timeline = _timeline(codec.frames(), clock)
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


def _open(path: str | os.PathLike[str], *, header_only: bool = False):
    """The container, probed by FFmpeg; ``header_only``: no decoder runs in the probe (no decoder is allowed),
    so only what the container's header says is known, and what only a decoded frame tells is missing."""
    import av

    if not Path(path).is_file():
        raise WtoursError(f"video not found: {path}")
    try:
        container = av.open(str(path), options={"codec_whitelist": "none"} if header_only else None)
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


class _Decoder:
    """The stream's frames, from its default decoder (FFmpeg's threads) or from a decoder named by the
    caller (an NVDEC ``*_cuvid`` decoder) fed the demuxed packets."""

    def __init__(self, container, stream, name: str | None, threads: int, path: str | os.PathLike[str]):
        self.container, self.stream, self.path = container, stream, path
        if name is None:
            stream.thread_type = "AUTO"
            stream.thread_count = threads
            self.context = None
        else:
            self.context = open_decoder(name, stream, threads, path)

    def seek(self, target: int) -> None:
        self.container.seek(target, stream=self.stream, backward=True, any_frame=False)
        if self.context is not None:  # the container flushes only the stream's own decoder
            self.context.flush_buffers()

    def frames(self):
        import av

        try:
            if self.context is None:
                yield from self.container.decode(self.stream)
            else:
                for packet in self.container.demux(self.stream):
                    yield from self.context.decode(packet if packet.size else None)  # empty: end of stream
        except av.error.FFmpegError as err:
            raise WtoursError(f"{self.path}: decoding failed: {err}") from None


def open_decoder(name: str, stream, threads: int, path: str | os.PathLike[str]):
    """An opened decoder ``name`` for ``stream`` (its extradata, size and pixel format copied); WtoursError
    when this FFmpeg lacks it or it does not open here (an NVDEC decoder without a CUDA driver)."""
    import av

    source = stream.codec_context
    try:
        context = av.CodecContext.create(name, "r")
        context.extradata = source.extradata
        context.width, context.height = source.width, source.height
        if source.pix_fmt:
            context.pix_fmt = source.pix_fmt  # what NVDEC reads the bit depth from
        context.thread_type, context.thread_count = "AUTO", threads
        context.open()
    except (av.error.FFmpegError, ValueError) as err:
        raise WtoursError(f"{Path(path).name}: decoder {name} does not open here ({err})") from None
    return context


# FFmpeg's NVDEC decoders (PyAV's wheels carry them): the GPU's video engine decodes, the CPU only demuxes.
NVDEC_DECODERS = ("h264_cuvid", "hevc_cuvid", "vp9_cuvid", "av1_cuvid", "vp8_cuvid", "mpeg1_cuvid",
                  "mpeg2_cuvid", "mpeg4_cuvid", "vc1_cuvid", "mjpeg_cuvid")  # fmt: skip
DecodeMode = Literal["auto", "cpu", "gpu"]


@dataclass(frozen=True)
class DecoderChoice:
    """The decoder to use for a video: ``name`` (None: the stream's default, on the CPU) and, when the GPU
    was asked for or available but is not used, a one-line ``notice`` saying why."""

    name: str | None
    notice: str | None = None


def choose_decoder(path: str | os.PathLike[str], decode: DecodeMode = "auto") -> DecoderChoice:
    """NVDEC when ``decode`` allows it (``auto``, ``gpu``), a CUDA device is present and the stream's NVDEC
    decoder opens and decodes its first frame here; else the CPU decoder, with a notice unless ``auto``
    found no CUDA device at all (a CPU machine: nothing to fall back from)."""
    if decode not in ("auto", "cpu", "gpu"):
        raise WtoursError(f"decode must be auto, cpu or gpu, got {decode!r}")
    if decode == "cpu":
        return DecoderChoice(None)
    devices = cuda_device_count()
    if decode == "auto" and devices == 0:
        return DecoderChoice(None)
    container = _open(path)
    try:
        stream = container.streams.video[0]
        codec = stream.codec_context.codec
        name = nvdec_decoder_for(codec.id)
        if name is None:
            return DecoderChoice(None, f"no NVDEC decoder for {codec.name} in this FFmpeg; decoding on the CPU")
        if devices == 0:
            return DecoderChoice(None, f"{name}: no CUDA device found; decoding on the CPU")
        try:
            context = open_decoder(name, stream, 0, path)
            if not _decodes_a_frame(container, stream, context):
                return DecoderChoice(None, f"{name} decodes no frame of {Path(path).name}; decoding on the CPU")
        except (WtoursError, OSError) as err:
            return DecoderChoice(None, f"{err}; decoding on the CPU")
        return DecoderChoice(name)
    finally:
        container.close()


def nvdec_decoder_for(codec_id: int) -> str | None:
    """This FFmpeg's NVDEC decoder of an FFmpeg codec id, or None."""
    from av.codec.codec import Codec

    for name in NVDEC_DECODERS:
        try:
            if Codec(name, "r").id == codec_id:
                return name
        except Exception:  # av.codec.codec.UnknownCodecError: not in this FFmpeg build
            continue
    return None


def _decodes_a_frame(container, stream, context, max_packets: int = 64) -> bool:
    """Whether ``context`` turns the stream's first packets into a frame (a GPU may open a decoder and
    still refuse the stream: a profile or size beyond its video engine)."""
    import av

    try:
        for count, packet in enumerate(container.demux(stream)):
            if count >= max_packets:
                return False
            if context.decode(packet if packet.size else None):
                return True
    except av.error.FFmpegError:
        return False
    return False


def cuda_device_count() -> int:
    """CUDA devices the driver reports (0 without a driver), asked of libcuda directly: importing torch
    for it would cost seconds, and a machine may have the driver without torch's CUDA build."""
    import ctypes
    import ctypes.util

    names = ["libcuda.so.1", "libcuda.so", ctypes.util.find_library("cuda") or "", "nvcuda.dll"]
    for name in filter(None, names):
        try:
            driver = ctypes.CDLL(name)
        except OSError:
            continue
        count = ctypes.c_int(0)
        if driver.cuInit(0) != 0 or driver.cuDeviceGetCount(ctypes.byref(count)) != 0:
            return 0
        return count.value
    return 0
