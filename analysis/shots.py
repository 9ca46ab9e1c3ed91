"""Shot cuts with PySceneDetect's own detectors, fed our frames (no second decode).

A detector's decision at a frame depends on the whole history before it (minimum scene length,
flash filter, the adaptive detector's rolling average), so a window that starts mid-video cannot
decide cuts alone. The work is split where it is exact: each window computes PySceneDetect's
per-frame ``content_val`` (which only needs the previous frame: one frame of overlap), and the cuts
are decided afterwards by replaying the same detector over the whole video's scores — cheap, and
identical however the video was split into windows.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any, Literal

import numpy as np
import pandas as pd

from wtours.frames import FrameSize

ShotDetectorName = Literal["content", "adaptive"]
MICROSECOND = Fraction(1, 1_000_000)  # the time base of PySceneDetect's default (OpenCV) video reader

# PySceneDetect shrinks frames to this width before detecting (scene_manager.DEFAULT_MIN_WIDTH).
SCENEDETECT_WIDTH = 256


class ShotScoreAnalyzer:
    """PySceneDetect's frame score (``content_val``: mean change of hue, saturation, luma) per frame."""

    name = "shots"
    warmup_frames = 1  # the score compares with the previous frame
    version = 1

    def __init__(self, frame_size: FrameSize, *, fps: float, luma_only: bool = False):
        from scenedetect.detectors import ContentDetector

        self.frame_size = frame_size
        self.fps = fps
        self.luma_only = luma_only
        self._detector = ContentDetector(luma_only=luma_only)
        self._frames: list[int] = []
        self._scores: list[float] = []

    def settings(self) -> dict[str, Any]:
        return {"version": self.version, "size": [self.frame_size.width, self.frame_size.height],
                "luma_only": self.luma_only}

    def load(self) -> None:
        """Nothing to load: PySceneDetect's detector is built with the analyzer."""

    def process_frame(self, index: int, time: float, rgb: np.ndarray) -> None:
        import cv2
        from scenedetect import FrameTimecode

        bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)  # PySceneDetect's detectors take OpenCV's BGR
        # The detector's own scoring, without its cut decision (made later over the whole video).
        score = self._detector._calculate_frame_score(FrameTimecode(max(time, 0.0), self.fps), bgr)
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

    Runs PySceneDetect's ContentDetector or AdaptiveDetector with the scores given instead of
    recomputing them from pixels, so thresholds and filters are exactly PySceneDetect's. ``times`` (each
    frame's time in seconds) places the frames as PySceneDetect's own video reader does, by timestamp
    in microseconds, so on a variable-frame-rate video ``min_scene_len`` counts time at the average
    rate as it does there; without them frame ``i`` is at ``i / fps``.
    """
    from scenedetect import FrameTimecode
    from scenedetect.common import Timecode
    from scenedetect.detectors import AdaptiveDetector, ContentDetector

    scores = np.asarray(content_val, dtype=np.float64)
    if detector == "content":
        base: type = ContentDetector
        kwargs: dict[str, Any] = {"threshold": threshold, "min_scene_len": min_scene_len}
    elif detector == "adaptive":
        base = AdaptiveDetector
        kwargs = {"adaptive_threshold": adaptive_threshold, "min_scene_len": min_scene_len}
    else:
        raise ValueError(f"unknown shot detector {detector!r} (content or adaptive)")
    if times is not None:
        micros = np.round(np.asarray(times, dtype=np.float64) * 1_000_000).astype(np.int64)

    def position(index: int) -> FrameTimecode:  # made one at a time: hours of video are 10^5-10^6 frames
        if times is None:
            return FrameTimecode(index, fps)
        return FrameTimecode(Timecode(int(micros[index]), MICROSECOND), fps)

    def frame_of(cut: FrameTimecode) -> int:  # a detector reports one of the positions it was given
        return int(cut.frame_num) if times is None else int(np.searchsorted(micros, cut.pts))

    replayed = iter(scores)

    class ReplayedScores(base):
        def _calculate_frame_score(self, timecode, frame_img):
            return float(next(replayed))  # called once per frame, in order

    replay = ReplayedScores(**kwargs)
    cuts: list = []
    last = None
    for index in range(len(scores)):
        last = position(index)
        cuts += replay.process_frame(last, None)
    if last is not None:
        cuts += replay.post_process(last)
    return sorted({frame for frame in map(frame_of, cuts) if 0 < frame < len(scores)})


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
