"""Shot cuts as PySceneDetect finds them, from our frames (no second decode).

A detector's decision at a frame depends on the whole history before it (minimum scene length,
flash filter, the adaptive detector's rolling average), so a window that starts mid-video cannot
decide cuts alone. The work is split where it is exact: each window computes PySceneDetect's
per-frame score ``content_val`` (which only needs the previous frame: one frame of overlap), and the
cuts are decided afterwards over the whole video's scores — cheap, and identical however the video
was split into windows.

Both halves are written here against PySceneDetect's published algorithm rather than by reaching into
its detectors (whose only hook for a score is a private method): ``content_score`` is ContentDetector's
frame score (mean change of hue, saturation and luma in HSV), the content decision is its public
``FlashFilter`` fed ``score >= threshold``, and the adaptive decision is AdaptiveDetector's rolling
ratio. ``tests/analysis/test_shots.py`` checks the cuts against PySceneDetect's own ``detect()`` on
real footage, with both detectors.
"""

from __future__ import annotations

from collections.abc import Iterable
from fractions import Fraction
from typing import Any, Literal

import numpy as np
import pandas as pd

from wtours.frames import FrameSize

ShotDetectorName = Literal["content", "adaptive"]
MICROSECOND = Fraction(1, 1_000_000)  # the time base of PySceneDetect's default (OpenCV) video reader

# PySceneDetect shrinks frames to this width before detecting (scene_manager.DEFAULT_MIN_WIDTH).
SCENEDETECT_WIDTH = 256

# ContentDetector's weights of the change in hue, saturation, luma and edges: its defaults, and luma_only's.
DEFAULT_WEIGHTS = (1.0, 1.0, 1.0, 0.0)
LUMA_ONLY_WEIGHTS = (0.0, 0.0, 1.0, 0.0)
# AdaptiveDetector's defaults: frames averaged on each side, and the least score that can be a cut.
ADAPTIVE_WINDOW_WIDTH = 2
ADAPTIVE_MIN_CONTENT_VAL = 15.0


def hsv_planes(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hue, saturation and value (luma) planes, as PySceneDetect computes them with OpenCV."""
    import cv2

    hue, saturation, luma = cv2.split(cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV))
    return hue, saturation, luma


def content_score(previous: tuple[np.ndarray, ...], current: tuple[np.ndarray, ...], *,
                  luma_only: bool = False) -> float:  # fmt: skip
    """ContentDetector's frame score: the weighted mean absolute change of the HSV planes between two
    frames (0-255), computed in PySceneDetect's order of operations so the floats are the same."""
    weights = LUMA_ONLY_WEIGHTS if luma_only else DEFAULT_WEIGHTS
    pixels = float(current[0].shape[0] * current[0].shape[1])
    components = [np.sum(np.abs(now.astype(np.int32) - before.astype(np.int32))) / pixels
                  for now, before in zip(current, previous, strict=True)]  # fmt: skip
    components.append(0.0)  # edges: weighted 0, never computed
    return float(sum(component * weight for component, weight in zip(components, weights, strict=True))
                 / sum(abs(weight) for weight in weights))  # fmt: skip


class ShotScoreAnalyzer:
    """PySceneDetect's frame score (``content_val``: mean change of hue, saturation, luma) per frame."""

    name = "shots"
    warmup_frames = 1  # the score compares with the previous frame
    version = 1

    def __init__(self, frame_size: FrameSize, *, fps: float, luma_only: bool = False):
        self.frame_size = frame_size
        self.fps = fps
        self.luma_only = luma_only
        self._previous: tuple[np.ndarray, ...] | None = None
        self._frames: list[int] = []
        self._scores: list[float] = []

    def settings(self) -> dict[str, Any]:
        return {"version": self.version, "size": [self.frame_size.width, self.frame_size.height],
                "luma_only": self.luma_only}

    def load(self) -> None:
        """Nothing to load."""

    def process_frame(self, index: int, time: float, rgb: np.ndarray) -> None:
        planes = hsv_planes(rgb)
        # The first frame has nothing to compare with: 0, as in PySceneDetect.
        score = 0.0 if self._previous is None else content_score(self._previous, planes, luma_only=self.luma_only)
        self._previous = planes
        self._frames.append(index)
        self._scores.append(score)

    def tables(self) -> dict[str, pd.DataFrame]:
        return {
            "frames": pd.DataFrame(
                {
                    "frame": np.asarray(self._frames, dtype=np.int64),
                    "content_val": np.asarray(self._scores, dtype=np.float32),
                }
            )
        }


def detect_cuts(
    content_val: np.ndarray,
    fps: float,
    *,
    times: np.ndarray | None = None,
    detector: ShotDetectorName = "content",
    threshold: float = 27.0,
    adaptive_threshold: float = 3.0,
    min_scene_len: int = 15,
) -> list[int]:
    """Frames that start a new shot, from the per-frame scores of a whole video (frame 0 first).

    Decides as PySceneDetect's ContentDetector or AdaptiveDetector do on those scores, so thresholds and
    filters are exactly PySceneDetect's. ``times`` (each frame's time in seconds) places the frames as
    PySceneDetect's own video reader does, by timestamp in microseconds, so on a variable-frame-rate video
    ``min_scene_len`` counts time at the average rate as it does there; without them frame ``i`` is at
    ``i / fps``.
    """
    from scenedetect import FrameTimecode
    from scenedetect.common import Timecode

    if detector not in ("content", "adaptive"):
        raise ValueError(f"unknown shot detector {detector!r} (content or adaptive)")
    scores = np.asarray(content_val, dtype=np.float64)
    if times is not None:
        micros = np.round(np.asarray(times, dtype=np.float64) * 1_000_000).astype(np.int64)

    def position(index: int) -> FrameTimecode:  # made one at a time: hours of video are 10^5-10^6 frames
        if times is None:
            return FrameTimecode(index, fps)
        return FrameTimecode(Timecode(int(micros[index]), MICROSECOND), fps)

    def frame_of(cut: FrameTimecode) -> int:  # a decision names one of the positions it was given
        return int(cut.frame_num) if times is None else int(np.searchsorted(micros, cut.pts))

    frames = ((position(index), float(score)) for index, score in enumerate(scores))
    if detector == "content":
        cuts = _content_cuts(frames, threshold=threshold, min_scene_len=min_scene_len)
    else:
        cuts = _adaptive_cuts(frames, adaptive_threshold=adaptive_threshold, min_scene_len=min_scene_len)
    return sorted({frame for frame in map(frame_of, cuts) if 0 < frame < len(scores)})


def _content_cuts(frames: Iterable[tuple[Any, float]], *, threshold: float, min_scene_len: int) -> list:
    """ContentDetector's decision: a frame scoring at least ``threshold`` is a cut, through PySceneDetect's
    flash filter (cuts closer than ``min_scene_len`` are merged)."""
    from scenedetect.detector import FlashFilter

    flash_filter = FlashFilter(mode=FlashFilter.Mode.MERGE, length=min_scene_len)
    cuts: list = []
    for position, score in frames:
        cuts += flash_filter.filter(timecode=position, above_threshold=score >= threshold)
    return cuts


def _adaptive_cuts(frames: Iterable[tuple[Any, float]], *, adaptive_threshold: float, min_scene_len: int) -> list:
    """AdaptiveDetector's decision: a frame is a cut when its score is ``adaptive_threshold`` times the mean of
    the ``ADAPTIVE_WINDOW_WIDTH`` frames on each side (255 when they are all still) and at least
    ``ADAPTIVE_MIN_CONTENT_VAL``, ``min_scene_len`` after the last cut (the first frame counts as one)."""
    width = ADAPTIVE_WINDOW_WIDTH
    window: list = []  # (position, score) of the last 2 * width + 1 frames; the middle one is decided
    last_cut = None
    cuts: list = []
    for position, score in frames:
        last_cut = position if last_cut is None else last_cut
        window = [*window[-2 * width :], (position, score)]
        if len(window) < 2 * width + 1:
            continue
        target, target_score = window[width]
        average = sum(other for slot, (_, other) in enumerate(window) if slot != width) / (2.0 * width)
        if abs(average) >= 0.00001:
            ratio = min(target_score / average, 255.0)
        else:
            ratio = 255.0 if target_score >= ADAPTIVE_MIN_CONTENT_VAL else 0.0
        if ratio >= adaptive_threshold and target_score >= ADAPTIVE_MIN_CONTENT_VAL and \
                (target - last_cut) >= min_scene_len:  # fmt: skip
            last_cut = target
            cuts.append(target)
    return cuts


def shot_table(cut_frames: list[int], n_frames: int, fps: float, times: np.ndarray | None = None,
               end_time: float | None = None) -> pd.DataFrame:  # fmt: skip
    """One row per shot: ``[start_frame, end_frame)``, times and PySceneDetect-style timecodes.

    ``times`` are the frames' times in seconds and ``end_time`` when the last frame ends (a variable
    frame rate); without them frame ``i`` is at ``i / fps``.
    """

    starts = [0, *cut_frames]
    ends = [*cut_frames, n_frames]
    if times is None:
        start_times = np.asarray(starts, dtype=np.float64) / fps
        end_times = np.asarray(ends, dtype=np.float64) / fps
    else:
        times = np.asarray(times, dtype=np.float64)
        start_times = times[starts] if n_frames else np.zeros(1)
        last = end_time if end_time is not None else float(times[-1]) + 1 / fps if n_frames else 0.0
        end_times = np.asarray([*times[cut_frames], last], dtype=np.float64)
    return pd.DataFrame(
        {
            "shot": np.arange(len(starts), dtype=np.int64),
            "start_frame": np.asarray(starts, dtype=np.int64),
            "end_frame": np.asarray(ends, dtype=np.int64),
            "start_time": start_times,
            "end_time": end_times,
            "start_timecode": [_timecode(seconds, fps) for seconds in start_times],
            "end_timecode": [_timecode(seconds, fps) for seconds in end_times],
        }
    )


def _timecode(seconds: float, fps: float) -> str:
    """HH:MM:SS.nnn as PySceneDetect writes it, from the time itself (not snapped to a frame grid)."""
    from scenedetect import FrameTimecode

    return FrameTimecode(float(seconds), fps).get_timecode(nearest_frame=False)
