"""The analyzer shape: a small object fed frames, one at a time, by the one decode pass.

Like a PySceneDetect detector, an analyzer has one frame-processing method. It says which frames it
wants (a :class:`~wtours.frames.FrameSize`), what its output depends on (``settings``, which keys its
cached window results), and hands back tables at the end of a window. Adding an analyzer never touches
the decoder or the window runner.
"""

from __future__ import annotations

from pathlib import Path
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

    def load(self) -> None:
        """Load and check what it needs (a detector's weights); raise WtoursError if it cannot. Called
        before the first frame is decoded, so a broken model is reported at once, not after hours of 4K."""
        ...

    def process_frame(self, index: int, time: float, rgb: np.ndarray) -> None:
        """Consume one frame: ``index`` counts the window's frames from 0 (a warm-up frame from before the
        window is negative), ``time`` is when it is shown, in seconds. Frames arrive in order."""
        ...

    def tables(self) -> dict[str, pd.DataFrame]:
        """Its results so far, by table name; each table has a ``frame`` column."""
        ...


def one_line(err: BaseException, *, where: bool = False) -> str:
    """An exception from a library as one line of a message, without repeating its class's name when
    that is no name at all (OpenCV raises ``cv2.error`` whose text starts "OpenCV(4.x) ... error: (-212:...)").

    ``where`` adds the file and line it was raised at: for a bug, what a report needs.
    """
    text = " ".join(str(err).split())
    if "error: (" in text:  # OpenCV: keep "(-212:Parsing error) Failed to parse ..." and drop the source path
        text = text[text.index("error: (") + len("error: "):]
    name = type(err).__name__
    line = text if not text or name.islower() else f"{name}: {text}"
    line = line or name
    if where and err.__traceback__ is not None:
        import traceback

        frame = traceback.extract_tb(err.__traceback__)[-1]
        line += f" ({Path(frame.filename).name}:{frame.lineno})"
    return line
