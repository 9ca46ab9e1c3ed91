"""Probe and verify a video file in-process with PyAV (no ffprobe needed).

`probe_video` trusts nothing the container header claims: it demuxes every video packet to count the
frames, to find where the video really ends and whether its frames come at a constant rate, then decodes
frames at the start, the middle and the end (or every frame with ``full_decode=True``). Memory stays
constant however long the video is.
"""

from __future__ import annotations

import heapq
import os
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from wtours.errors import WtoursError

REORDER_DEPTH = 32  # frames a decoder may hold back before showing them (H.264 allows 16)


@dataclass(frozen=True)
class VideoProbe:
    """What a video file really holds, measured from its packets and decoded frames."""

    codec: str
    width: int
    height: int
    fps: float  # the average rate: frame_count / duration
    duration: float  # seconds, from the first packet's pts to the last packet's pts + duration
    frame_count: int  # video packets demuxed, not the header's claim
    pix_fmt: str | None
    bit_rate: int  # bits per second over the whole file
    has_audio: bool
    # Frames not evenly spaced in time (phones, action cameras): their timestamps, not fps, place them.
    variable_frame_rate: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def probe_video(path: str | os.PathLike[str], *, full_decode: bool = False) -> VideoProbe:
    """Measure ``path``; raise WtoursError (one line) if it is not a complete, decodable video."""
    import av

    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as err:
        raise WtoursError(f"{path}: cannot read: {err.strerror or err}") from None
    if size == 0:
        raise WtoursError(f"{path.name}: empty file (0 bytes)")
    try:
        container = av.open(str(path), metadata_errors="ignore")
    except av.FFmpegError as err:
        raise WtoursError(
            f"{path.name}: not a readable video ({_reason(err)}): not a video file, or truncated"
        ) from None
    with container:
        if not container.streams.video:
            raise WtoursError(f"{path.name}: no video stream")
        stream = container.streams.video[0]
        has_audio = bool(container.streams.audio)
        first_pts, end_pts, frame_count, variable = _demux_every_packet(container, stream, path)
        if frame_count == 0:
            raise WtoursError(f"{path.name}: the video stream holds no frames")
        claimed = stream.frames
        if claimed and frame_count < claimed:
            raise WtoursError(
                f"{path.name}: truncated: the container lists {claimed} frames but only {frame_count} are present"
            )
        time_base = stream.time_base or Fraction(1, 1)
        duration = float((end_pts - first_pts) * time_base)
        if full_decode:
            decoded = _decode_all(container, stream, path)
            if decoded == 0:
                raise WtoursError(f"{path.name}: no frame decodes")
        else:
            for target in (first_pts, first_pts + (end_pts - first_pts) // 2, end_pts - 1):
                _decode_near(container, stream, target, path)
        codec = stream.codec_context
        rate = stream.average_rate or stream.guessed_rate
        fps = float(rate) if rate else frame_count / duration if duration > 0 else 0.0
        return VideoProbe(
            codec=codec.name,
            width=codec.width,
            height=codec.height,
            fps=round(fps, 3),
            duration=round(duration, 3),
            frame_count=frame_count,
            pix_fmt=codec.pix_fmt,
            bit_rate=int(size * 8 / duration) if duration > 0 else 0,
            has_audio=has_audio,
            variable_frame_rate=variable,
        )


def verify_video(
    path: str | os.PathLike[str],
    *,
    expected_duration: float | None = None,
    min_duration_ratio: float = 0.9,
    full_decode: bool = False,
) -> VideoProbe:
    """`probe_video`, and reject a video much shorter than expected (a cut-off download or upload)."""
    probe = probe_video(path, full_decode=full_decode)
    if expected_duration and probe.duration < min_duration_ratio * expected_duration:
        raise WtoursError(
            f"{Path(path).name}: too short: {format_clock(probe.duration)} but the manifest expects "
            f"{format_clock(expected_duration)} (less than {min_duration_ratio:.0%}); truncated?"
        )
    return probe


def _demux_every_packet(container: Any, stream: Any, path: Path) -> tuple[int, int, int, bool]:
    """(first pts, end pts, packet count, variable frame rate?) of the video stream, reading the whole file once.

    The rate is constant when consecutive frames (in display order) are the same number of timestamp
    ticks apart, give or take one tick of the container's rounding (Matroska keeps milliseconds, so 30 fps
    is 33, 33, 34 ms). Display order is restored from decode order with a small heap (B-frames reorder
    a few frames at most), so memory stays constant.
    """
    import av

    first_pts: int | None = None
    end_pts = 0
    count = 0
    reorder: list[int] = []
    shown: int | None = None  # the last pts taken out in display order
    gaps = [0, 0]  # smallest and largest step between consecutive frames

    def show(pts: int) -> None:
        nonlocal shown
        if shown is not None and pts > shown:
            step = pts - shown
            gaps[:] = [step if not gaps[0] else min(gaps[0], step), max(gaps[1], step)]
        shown = pts

    try:
        for packet in container.demux(stream):
            if packet.size == 0 or packet.pts is None:  # the flush packet at the end
                continue
            count += 1
            first_pts = packet.pts if first_pts is None else min(first_pts, packet.pts)
            end_pts = max(end_pts, packet.pts + (packet.duration or 0))
            heapq.heappush(reorder, packet.pts)
            if len(reorder) > REORDER_DEPTH:
                show(heapq.heappop(reorder))
    except av.FFmpegError as err:
        raise WtoursError(f"{path.name}: unreadable after {count} frames ({_reason(err)}); truncated?") from None
    while reorder:
        show(heapq.heappop(reorder))
    return first_pts or 0, end_pts, count, gaps[1] - gaps[0] > 1


def _decode_near(container: Any, stream: Any, target_pts: int, path: Path) -> None:
    """Seek to the keyframe before ``target_pts`` and decode up to the frame showing it."""
    import av

    where = format_clock(float(target_pts * stream.time_base))
    decoded_any = False
    try:
        container.seek(max(target_pts, 0), stream=stream, backward=True, any_frame=False)
        for frame in container.decode(stream):
            decoded_any = True
            if frame.pts is None or frame.pts >= target_pts:
                break
    except av.FFmpegError as err:
        raise WtoursError(f"{path.name}: the frame at {where} does not decode ({_reason(err)})") from None
    # Running out of frames after decoding some is fine: the target was the last frame.
    if not decoded_any:
        raise WtoursError(f"{path.name}: no frame decodes near {where}")


def _decode_all(container: Any, stream: Any, path: Path) -> int:
    import av

    stream.thread_type = "AUTO"
    decoded = 0
    try:
        container.seek(0, stream=stream, backward=True)
        for _frame in container.decode(stream):
            decoded += 1
    except av.FFmpegError as err:
        raise WtoursError(f"{path.name}: frame {decoded} does not decode ({_reason(err)})") from None
    return decoded


def _reason(err: Exception) -> str:
    return str(getattr(err, "strerror", None) or err).splitlines()[0].rstrip(".")


def format_clock(seconds: float | None) -> str:
    """A duration as people read it: ``8.5 s`` under a minute, else ``4:05`` or ``1:50:00``; ``""`` for none
    (a manifest entry that states no duration)."""
    if not isinstance(seconds, (int, float)):
        return ""
    if seconds < 60:
        return f"{seconds:.1f} s"
    whole = int(round(seconds))
    hours, rest = divmod(whole, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"
