"""Per-frame light: mean CIE L* and luma, near-black (blank) and frozen (repeated) frames.

The figshare copy of the Venice tour is black for its second half; ``blank`` finds such stretches and
``frozen`` finds a stalled stream (a frame repeated as-is)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from wtours.color import LUMINANCE_WEIGHTS, mean_lightness
from wtours.frames import FrameSize


class LightnessAnalyzer:
    """Mean CIE L* (0-100) and mean luma Y' (0-255, Rec. 709 weights) of every frame."""

    name = "lightness"
    warmup_frames = 1  # `frozen` compares with the previous frame
    version = 1

    def __init__(self, frame_size: FrameSize, *, blank_lightness: float = 4.0, frozen_tolerance: float = 0.1):
        self.frame_size = frame_size
        self.blank_lightness = blank_lightness
        self.frozen_tolerance = frozen_tolerance
        self._previous: np.ndarray | None = None
        self._rows: dict[str, list] = {name: [] for name in ("frame", "time", "lightness", "luma", "frame_diff")}

    def settings(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "size": [self.frame_size.width, self.frame_size.height],
            "blank_lightness": self.blank_lightness,
            "frozen_tolerance": self.frozen_tolerance,
        }

    def load(self) -> None:
        """Nothing to load: pure arithmetic on pixels."""

    def process_frame(self, index: int, time: float, rgb: np.ndarray) -> None:
        import cv2

        channel_means = np.asarray(cv2.mean(rgb)[:3])
        if self._previous is None:
            frame_diff = np.nan
        else:
            # Mean absolute difference in 0-255 levels; 0 for a frame repeated as-is.
            frame_diff = float(np.mean(cv2.mean(cv2.absdiff(rgb, self._previous))[:3]))
        self._previous = rgb
        rows = self._rows
        rows["frame"].append(index)
        rows["time"].append(time)
        rows["lightness"].append(mean_lightness(rgb))
        rows["luma"].append(float(channel_means @ LUMINANCE_WEIGHTS))
        rows["frame_diff"].append(frame_diff)

    def tables(self) -> dict[str, pd.DataFrame]:
        table = pd.DataFrame(
            {
                "frame": np.asarray(self._rows["frame"], dtype=np.int64),
                "time": np.asarray(self._rows["time"], dtype=np.float64),
                "lightness": np.asarray(self._rows["lightness"], dtype=np.float32),
                "luma": np.asarray(self._rows["luma"], dtype=np.float32),
                "frame_diff": np.asarray(self._rows["frame_diff"], dtype=np.float32),
            }
        )
        table["blank"] = table["lightness"] < self.blank_lightness
        table["frozen"] = table["frame_diff"] <= self.frozen_tolerance  # NaN (no previous frame) -> False
        return {"frames": table}
