"""A video whose every frame shows its own index as a binary code that survives compression and resizing.

The code is a 4 x 4 grid of black (0) and white (1) cells filling the frame: cells 0-14 hold the
index's bits (least significant first, row by row), cell 15 an even-parity bit. Cells are big and
read at their centres, so H.264 blocking, scaling to a thumbnail and a changed aspect ratio all leave
the code readable. Tests of decoders, seeking and frame sampling use it to know which frame they got.
"""

from __future__ import annotations

import os

import numpy as np

from wtours.color import mean_lightness
from wtours.sample.encode import h264_writer
from wtours.sample.truth import SampleTruth

GRID = 4
DATA_BITS = GRID * GRID - 1
MAX_FRAMES = 2**DATA_BITS
# A cell's centre must average below/above these grey levels to be read as black/white.
BLACK_BELOW, WHITE_ABOVE = 80, 176


def code_cells(number: int) -> np.ndarray:
    """The GRID x GRID bits that encode ``number`` (uint8 0/1)."""
    if not 0 <= number < MAX_FRAMES:
        raise ValueError(f"frame number {number} outside 0..{MAX_FRAMES - 1}")
    bits = [(number >> bit) & 1 for bit in range(DATA_BITS)]
    return np.array([*bits, sum(bits) % 2], dtype=np.uint8).reshape(GRID, GRID)


def numbered_frame(number: int, width: int, height: int) -> np.ndarray:
    """An RGB frame showing ``number``'s code."""
    cells = code_cells(number) * np.uint8(255)
    rows = np.minimum(np.arange(height) * GRID // height, GRID - 1)
    cols = np.minimum(np.arange(width) * GRID // width, GRID - 1)
    grey = cells[rows[:, None], cols[None, :]]
    return np.repeat(grey[:, :, None], 3, axis=2)


def read_frame_number(rgb: np.ndarray) -> int:
    """The index encoded in a decoded frame of a numbered video, at any size (a thumbnail works).

    Raises ValueError when a cell is neither clearly black nor clearly white, or the parity is wrong.
    """
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[0] < GRID or rgb.shape[1] < GRID:
        raise ValueError(
            f"expected an H x W x C uint8 image of at least {GRID} x {GRID} pixels, got {rgb.dtype} {rgb.shape}"
        )
    grey = rgb.astype(np.float32).mean(axis=2)
    height, width = grey.shape
    bits = []
    for row in range(GRID):
        for col in range(GRID):
            # The middle half of the cell: far from the edges that compression and resampling blur.
            y0, y1 = (4 * row + 1) * height // (4 * GRID), (4 * row + 3) * height // (4 * GRID)
            x0, x1 = (4 * col + 1) * width // (4 * GRID), (4 * col + 3) * width // (4 * GRID)
            level = grey[y0 : max(y1, y0 + 1), x0 : max(x1, x0 + 1)].mean()
            if BLACK_BELOW <= level <= WHITE_ABOVE:
                raise ValueError(f"cell {len(bits)} is grey ({level:.0f}), not a frame-number code")
            bits.append(int(level > WHITE_ABOVE))
    if sum(bits) % 2:
        raise ValueError("frame-number code fails its parity check")
    return sum(bit << position for position, bit in enumerate(bits[:DATA_BITS]))


def render_numbered(
    path: str | os.PathLike[str],
    *,
    n_frames: int = 120,
    width: int = 160,
    height: int = 96,
    fps: float = 30,
    gop: int | None = None,
) -> SampleTruth:
    """Render ``n_frames`` numbered frames to ``path``, with a keyframe exactly every ``gop`` frames
    (default 2 s) whatever the content."""
    if not 1 <= n_frames <= MAX_FRAMES:
        raise ValueError(f"n_frames must be in 1..{MAX_FRAMES}, got {n_frames}")
    truth = SampleTruth("numbered", width, height, float(fps), n_frames)
    gop = gop if gop is not None else max(1, round(2 * fps))
    with h264_writer(path, width=width, height=height, fps=fps, gop=gop, keyframes_at_cuts=False) as write:
        for number in range(n_frames):
            frame = numbered_frame(number, width, height)
            truth.lightness.append(round(mean_lightness(frame), 4))
            truth.boxes.append([])
            write(frame)
    return truth
