"""Clip index: which clips of T frames at stride s a video offers, and how dark and how still each is.

A clip starting at frame f holds frames f, f+s, ..., f+(T-1)s; its *span* is the (T-1)s + 1 frames from
the first to the last. A start is valid when the span crosses no shot cut (a cut between two sampled
frames still changes the scene) and none of the T frames is blank or frozen (per ``analysis/<id>/``).

The video is cut into windows of ``start_step`` frames (default: the stride). Each window with at least
one valid start gives one row: ``start_frame`` is its first valid start and ``max_shift`` says how many
following starts are valid too (the run within the window), so the DoRA-style "any frame may start a
clip" mode draws from ``start_frame .. start_frame + max_shift`` without re-reading the analysis.

Frame numbers are those of the training proxy the clips are read from: the analysis's own for a
constant-rate video, mapped by time (``on_proxy_frames``) for a variable-rate one, whose proxy is resampled.

Scores are kept for every clip and nothing is dropped for them: ``darkness`` (1 - mean L*/100 of the T
frames) and ``motion`` (mean absolute grey-level change between consecutive sampled frames, 0..1) are
thresholded at training time (``ClipDataset(filters=...)``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from wtours.errors import WtoursError


@dataclass(frozen=True)
class ClipSpec:
    """T frames at stride s, one candidate window every ``start_step`` frames (default: s)."""

    frames_per_clip: int = 8
    stride: int = 60
    start_step: int | None = None

    def __post_init__(self) -> None:
        if self.frames_per_clip < 1 or self.stride < 1 or (self.start_step is not None and self.start_step < 1):
            raise WtoursError(
                f"clip shape must be positive: frames per clip {self.frames_per_clip}, stride {self.stride}, "
                f"start step {self.start_step}"
            )

    @property
    def span(self) -> int:
        return (self.frames_per_clip - 1) * self.stride + 1

    @property
    def step(self) -> int:
        return self.start_step or self.stride

    def frame_numbers(self, start_frame: int) -> np.ndarray:
        return start_frame + self.stride * np.arange(self.frames_per_clip)


def valid_starts(frame_count: int, cut_frames: np.ndarray, bad_frames: np.ndarray, spec: ClipSpec) -> np.ndarray:
    """Boolean per possible start frame (``frame_count - span + 1`` of them): may a clip start here?

    ``cut_frames`` are first frames of new shots; ``bad_frames`` a boolean per frame (blank or frozen).
    """
    start_count = frame_count - spec.span + 1
    if start_count <= 0:
        return np.zeros(0, dtype=bool)
    # cuts_up_to[x] = number of cuts at frames <= x; a span [f, f+span) crosses a cut c when f < c <= last.
    is_cut = np.zeros(frame_count, dtype=np.int64)
    cuts = cut_frames[(cut_frames > 0) & (cut_frames < frame_count)].astype(np.int64)
    is_cut[cuts] = 1
    cuts_up_to = np.cumsum(is_cut)
    starts = np.arange(start_count)
    valid = cuts_up_to[starts + spec.span - 1] == cuts_up_to[starts]
    for t in range(spec.frames_per_clip):
        valid &= ~bad_frames[starts + t * spec.stride]
    return valid


def build_clip_index(
    video_id: str,
    frames: pd.DataFrame,
    shots: pd.DataFrame,
    spec: ClipSpec,
    *,
    motion: Callable[[np.ndarray], np.ndarray] | None = None,
) -> pd.DataFrame:
    """The clip index of one video from its analysis tables (see the module docstring for columns).

    ``frames`` needs ``frame``, ``time``, ``lightness``, ``blank``, ``frozen``; ``shots`` needs
    ``start_frame``. ``motion`` maps an array of start frames to one motion score per clip (it reads
    frames, so the caller supplies it); without it the column is NaN.
    """
    missing = {"frame", "time", "lightness", "blank", "frozen"} - set(frames.columns)
    if missing or "start_frame" not in shots.columns:
        raise WtoursError(f"{video_id}: analysis tables lack {sorted(missing) or ['shots.start_frame']}; "
                          f"re-run `wtours analyze --only {video_id}`")  # fmt: skip
    frames = frames.sort_values("frame")
    frame_count = len(frames)
    if frame_count and not np.array_equal(frames["frame"].to_numpy(), np.arange(frame_count)):
        raise WtoursError(f"{video_id}: frames.parquet does not list frames 0..{frame_count - 1} once each")
    bad = frames["blank"].to_numpy(bool) | frames["frozen"].to_numpy(bool)
    valid = valid_starts(frame_count, shots["start_frame"].to_numpy(np.int64), bad, spec)
    starts, max_shift = _first_valid_start_per_window(valid, spec.step)

    sampled = starts[:, None] + spec.stride * np.arange(spec.frames_per_clip)[None, :]
    lightness = frames["lightness"].to_numpy(np.float64)[sampled] if len(starts) else np.zeros((0, 1))
    shot_starts = np.sort(shots["start_frame"].to_numpy(np.int64))
    index = pd.DataFrame(
        {
            "video_id": pd.Series([video_id] * len(starts), dtype="string"),
            "clip": np.arange(len(starts), dtype=np.int64),
            "start_frame": starts,
            "end_frame": starts + spec.span,  # exclusive: one past the last sampled frame
            "max_shift": max_shift,
            "start_time": frames["time"].to_numpy(np.float64)[starts],
            "shot": np.searchsorted(shot_starts, starts, side="right") - 1,
            "frames_per_clip": spec.frames_per_clip,
            "stride": spec.stride,
            "start_step": spec.step,
            "lightness_mean": lightness.mean(axis=1) if len(starts) else np.zeros(0),
            "lightness_min": lightness.min(axis=1) if len(starts) else np.zeros(0),
        }
    )
    index["darkness"] = 1.0 - index["lightness_mean"] / 100.0
    index["motion"] = motion(starts) if motion is not None and len(starts) else np.nan
    return index


def on_proxy_frames(frames: pd.DataFrame, shots: pd.DataFrame, shown: np.ndarray, times: np.ndarray
                    ) -> tuple[pd.DataFrame, pd.DataFrame]:  # fmt: skip
    """The analysis tables restated in the frames of the training proxy that clips are read from.

    Proxy frame ``i`` shows analysis frame ``shown[i]`` and is shown at ``times[i]`` (see
    ``ProxyReader.frames_shown``): it takes that frame's lightness and blank/frozen flags, and a shot starts
    at the first proxy frame showing one of its frames. For a constant-rate video ``shown`` is ``0..n-1``
    and the tables come back as they were; for a resampled (variable-rate) one, a clip counted in proxy
    frames then crosses a cut, or samples a blank frame, exactly when the frames it shows do.
    """
    frames = frames.sort_values("frame")
    columns = {name: frames[name].to_numpy()[shown] for name in ("lightness", "blank", "frozen")}
    on_proxy = pd.DataFrame({"frame": np.arange(len(shown), dtype=np.int64), "time": times, **columns})
    shot_starts = np.searchsorted(shown, shots["start_frame"].to_numpy(np.int64), side="left")
    return on_proxy, pd.DataFrame({"start_frame": shot_starts.astype(np.int64)})


def _first_valid_start_per_window(valid: np.ndarray, step: int) -> tuple[np.ndarray, np.ndarray]:
    """For each window [g, g+step): its first valid start and the length - 1 of the valid run from it."""
    count = len(valid)
    if count == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    positions = np.arange(count)
    # next_valid[i]: first valid start >= i (count if none); run_end[i]: first invalid start >= i.
    next_valid = np.minimum.accumulate(np.where(valid, positions, count)[::-1])[::-1]
    run_end = np.minimum.accumulate(np.where(~valid, positions, count)[::-1])[::-1]
    window_starts = np.arange(0, count, step)
    firsts = next_valid[window_starts]
    window_ends = np.minimum(window_starts + step, count)
    keep = firsts < window_ends
    firsts, window_ends = firsts[keep], window_ends[keep]
    max_shift = np.minimum(run_end[firsts], window_ends) - 1 - firsts
    return firsts.astype(np.int64), max_shift.astype(np.int64)


def clip_motion(thumbnail: Callable[[int], np.ndarray], starts: np.ndarray, spec: ClipSpec) -> np.ndarray:
    """Mean absolute grey-level change (0..1) between consecutive sampled frames of each clip.

    ``thumbnail(frame)`` returns a small greyscale image; each frame is decoded once however many clips
    share it (with the default start step every sampled frame is shared by T clips).
    """
    if spec.frames_per_clip < 2:
        return np.zeros(len(starts))
    cache: dict[int, np.ndarray] = {}

    def grey(frame: int) -> np.ndarray:
        image = cache.get(frame)
        if image is None:
            image = cache[frame] = thumbnail(frame).astype(np.float32)
        return image

    scores = np.empty(len(starts))
    for row, start in enumerate(starts):
        numbers = spec.frame_numbers(int(start))
        pairs = zip(numbers[:-1], numbers[1:], strict=True)
        scores[row] = np.mean([np.abs(grey(later) - grey(earlier)).mean() for earlier, later in pairs])
        # Clips are in start order, so a frame before this clip's first is never needed again.
        for stale in [frame for frame in cache if frame < numbers[0]]:
            del cache[stale]
    return scores / 255.0
