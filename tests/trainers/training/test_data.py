"""In-memory clips for small studies: any start, never across a segment boundary."""

from __future__ import annotations

import pytest
import torch

from wtours.trainers.training.data import FrameClips


def test_clips_start_anywhere_inside_a_segment_and_never_cross_a_cut() -> None:
    frames = torch.arange(20, dtype=torch.uint8).view(20, 1, 1, 1).expand(20, 3, 2, 2).contiguous()
    clips = FrameClips(frames, frames_per_clip=3, stride=2, segments=[(0, 8), (8, 20)])
    # Spans of 5 frames: starts 0..3 fit in [0, 8), starts 8..15 in [8, 20).
    assert clips.starts.tolist() == [0, 1, 2, 3, *range(8, 16)]
    first = clips[0]["frames"][:, 0, 0, 0].tolist()
    assert first == [0, 2, 4] and clips[4]["frames"][:, 0, 0, 0].tolist() == [8, 10, 12]
    assert all(max(item["frames"][:, 0, 0, 0]) < 8 or min(item["frames"][:, 0, 0, 0]) >= 8 for item in clips)


def test_a_segment_too_short_for_any_clip_is_an_error() -> None:
    with pytest.raises(ValueError, match="no clip of 4 frames"):
        FrameClips(torch.zeros(6, 3, 2, 2, dtype=torch.uint8), frames_per_clip=4, stride=2)
