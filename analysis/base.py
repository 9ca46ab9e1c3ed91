"""The analyzer shape: a small object fed frames, one at a time, by the one decode pass.

Like a PySceneDetect detector, an analyzer has one frame-processing method. It says which frames it
wants (a :class:`~wtours.frames.FrameSize`), what its output depends on (``settings``, which keys its
cached window results), and hands back tables at the end of a window. Adding an analyzer never touches
the decoder or the window runner.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import pandas as pd

from wtours.frames import FrameSize


class Analyzer(Protocol):
    name: str
    """Folder of its window results and prefix of its tables, e.g. ``lightness``."""
    frame_size: FrameSize
    """Size and sampling of the RGB frames it is fed."""
    warmup_frames: int
    """Frames before a window's start it must see, e.g. 1 to compare with the previous frame."""

    def settings(self) -> dict[str, Any]:
        """Everything its per-window tables depend on; a change recomputes only this analyzer."""
        ...

    def process_frame(self, index: int, time: float, rgb: np.ndarray) -> None:
        """Consume one frame (frames arrive in order; warm-up frames included)."""
        ...

    def tables(self) -> dict[str, pd.DataFrame]:
        """Its results so far, by table name; each table has a ``frame`` column."""
        ...
