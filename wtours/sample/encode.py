"""Encode RGB frames to H.264 MP4 in-process with PyAV, one frame at a time, atomically."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from fractions import Fraction

import av
import numpy as np

from wtours.store import atomic_path


def frame_rate(fps: float) -> Fraction:
    """fps as an exact fraction: 30 -> 30/1, 29.97 -> 2997/100 (NTSC's 30000/1001 stays exact too)."""
    return Fraction(fps).limit_denominator(1001)


@contextlib.contextmanager
def h264_writer(
    path: str | os.PathLike[str],
    *,
    width: int,
    height: int,
    fps: float,
    gop: int,
    crf: int = 18,
    keyframes_at_cuts: bool = True,
) -> Iterator[Callable[[np.ndarray], None]]:
    """Yield ``write(rgb_uint8_frame)``; the MP4 appears at ``path`` only once every frame is encoded.

    yuv420p needs even dimensions. ``gop`` is the keyframe interval in frames; x264 also starts a GOP
    at a scene cut, as real encoders do, unless ``keyframes_at_cuts`` is False (keyframes exactly every
    ``gop`` frames, for seeking tests).
    """
    if width % 2 or height % 2:
        raise ValueError(f"H.264 yuv420p needs even dimensions, got {width}x{height}")
    with atomic_path(path) as tmp:
        # faststart puts the index first, so players and yt-dlp can stream the file over HTTP.
        container = av.open(str(tmp), mode="w", format="mp4", options={"movflags": "+faststart"})
        try:
            stream = container.add_stream("libx264", rate=frame_rate(fps))
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            options = {"crf": str(crf), "preset": "veryfast", "g": str(gop)}
            if not keyframes_at_cuts:
                options["sc_threshold"] = "0"
            stream.options = options

            def write(rgb: np.ndarray) -> None:
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
                container.mux(stream.encode(frame))

            yield write
            container.mux(stream.encode(None))
        finally:
            container.close()
