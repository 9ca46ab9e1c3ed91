"""Shot cuts with PySceneDetect's own detectors, fed our frames (no second decode).

A detector's decision at a frame depends on the whole history before it (minimum scene length,
flash filter, the adaptive detector's rolling average), so a window that starts mid-video cannot
decide cuts alone. The work is split where it is exact: each window computes PySceneDetect's
per-frame ``content_val`` (which only needs the previous frame: one frame of overlap), and the cuts
are decided afterwards by replaying the same detector over the whole video's scores — cheap, and
identical however the video was split into windows.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import pandas as pd

from wtours.frames import FrameSize

ShotDetectorName = Literal["content", "adaptive"]

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

    def process_frame(self, index: int, time: float, rgb: np.ndarray) -> None:
        import cv2
        from scenedetect import FrameTimecode

        bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)  # PySceneDetect's detectors take OpenCV's BGR
        # The detector's own scoring, without its cut decision (made later over the whole video).
        score = self._detector._calculate_frame_score(FrameTimecode(index, self.fps), bgr)
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
    detector: ShotDetectorName = "content",
    threshold: float = 27.0,
    adaptive_threshold: float = 3.0,
    min_scene_len: int = 15,
) -> list[int]:
    """Frames that start a new shot, from the per-frame scores of a whole video (frame 0 first).

    Runs PySceneDetect's ContentDetector or AdaptiveDetector with the scores given instead of
    recomputing them from pixels, so thresholds and filters are exactly PySceneDetect's.
    """
    from scenedetect import FrameTimecode
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

    class ReplayedScores(base):
        def _calculate_frame_score(self, timecode, frame_img):
            return float(scores[timecode.frame_num])

    replay = ReplayedScores(**kwargs)
    cuts: list = []
    for index in range(len(scores)):
        cuts += replay.process_frame(FrameTimecode(index, fps), None)
    if len(scores):
        cuts += replay.post_process(FrameTimecode(len(scores) - 1, fps))
    return sorted({int(cut.frame_num) for cut in cuts if 0 < cut.frame_num < len(scores)})


def shot_table(cut_frames: list[int], n_frames: int, fps: float) -> pd.DataFrame:
    """One row per shot: ``[start_frame, end_frame)``, times and PySceneDetect-style timecodes."""
    from scenedetect import FrameTimecode

    starts = [0, *cut_frames]
    ends = [*cut_frames, n_frames]
    return pd.DataFrame(
        {
            "shot": np.arange(len(starts), dtype=np.int64),
            "start_frame": np.asarray(starts, dtype=np.int64),
            "end_frame": np.asarray(ends, dtype=np.int64),
            "start_time": np.asarray(starts, dtype=np.float64) / fps,
            "end_time": np.asarray(ends, dtype=np.float64) / fps,
            "start_timecode": [FrameTimecode(start, fps).get_timecode() for start in starts],
            "end_timecode": [FrameTimecode(end, fps).get_timecode() for end in ends],
        }
    )
