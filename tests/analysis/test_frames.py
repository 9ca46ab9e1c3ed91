"""The one frame iterator: exact frame indices after seeking, per-size sampling, sizes done by FFmpeg."""

from __future__ import annotations

import pytest

from wtours.errors import WtoursError
from wtours.frames import FrameSize, iter_frames, scaled_size, stream_info
from wtours.sample import read_frame_number, render_numbered


@pytest.fixture(scope="module")
def numbered(tmp_path_factory):
    path = tmp_path_factory.mktemp("numbered") / "numbered.mp4"
    render_numbered(path, n_frames=90, width=160, height=96, fps=30, gop=20)
    return path


def test_every_frame_has_its_own_index_and_requested_sizes(numbered):
    frames = list(iter_frames(numbered, {"small": (64, 38), "full": (160, 96)}))
    assert [f.index for f in frames] == list(range(90))
    assert all(read_frame_number(f.images["full"]) == f.index for f in frames)
    assert frames[0].images["small"].shape == (38, 64, 3)
    assert frames[30].time == pytest.approx(1.0)


def test_a_window_mid_video_starts_exactly_at_its_first_frame(numbered):
    # 33 is between keyframes (every 20): the iterator seeks back and decodes forward.
    frames = list(iter_frames(numbered, {"full": (160, 96)}, start_frame=33, end_frame=47))
    assert [f.index for f in frames] == list(range(33, 47))
    assert [read_frame_number(f.images["full"]) for f in frames] == list(range(33, 47))


def test_sampling_counts_absolute_frame_indices_per_size(numbered):
    sizes = {"every": FrameSize(32, 20), "detector": FrameSize(160, 96, every_n=25)}
    frames = list(iter_frames(numbered, sizes, start_frame=10))
    assert [f.index for f in frames if "detector" in f.images] == [25, 50, 75]
    assert [read_frame_number(f.images["detector"]) for f in frames if "detector" in f.images] == [25, 50, 75]
    assert len(frames) == 80


def test_stream_info_and_scaled_size(numbered):
    info = stream_info(numbered)
    assert (info.fps, info.width, info.height, info.frame_count) == (30.0, 160, 96, 90)
    assert scaled_size(3840, 2160, 256) == (256, 144)
    assert scaled_size(640, 272, 256) == (256, 108)
    assert scaled_size(200, 100, 256) == (200, 100)


def test_unreadable_file_is_a_one_line_error(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video at all" * 100)
    with pytest.raises(WtoursError, match="cannot open video"):
        list(iter_frames(bad, {"small": (32, 20)}))
    with pytest.raises(WtoursError, match="not found"):
        stream_info(tmp_path / "missing.mp4")
