"""Lightness: the sample's dusk ramp is recovered; black and repeated frames are flagged."""

from __future__ import annotations

import numpy as np

from wtours.analysis.lightness import LightnessAnalyzer
from wtours.frames import FrameSize, iter_frames, scaled_size, stream_info
from wtours.sample.encode import h264_writer


def _analyze(path) -> dict:
    info = stream_info(path)
    analyzer = LightnessAnalyzer(FrameSize(*scaled_size(info.width, info.height, 256)))
    for frame in iter_frames(path, {"small": analyzer.frame_size}):
        analyzer.process_frame(frame.index, frame.time, frame.images["small"])
    return analyzer.tables()["frames"]


def test_lightness_ramp_is_recovered(walk_video):
    path, truth = walk_video
    table = _analyze(path)
    assert list(table["frame"]) == list(range(truth.n_frames))
    error = np.abs(table["lightness"].to_numpy() - np.asarray(truth.lightness))
    assert error.max() < 1.5, error.max()
    # The walk gets darker over the take, gradually: no jump bigger than a couple of L* units.
    assert truth.lightness[0] - truth.lightness[-1] > 10
    assert table["lightness"].iloc[0] - table["lightness"].iloc[-1] > 10
    assert np.abs(np.diff(table["lightness"].to_numpy())).max() < 3
    assert not table["blank"].any() and not table["frozen"].any()
    assert table.dtypes["lightness"] == np.float32 and table.dtypes["luma"] == np.float32


def test_black_and_frozen_frames_are_flagged(tmp_path):
    rng = np.random.default_rng(0)
    textured = rng.integers(40, 220, size=(96, 160, 3), dtype=np.uint8)
    path = tmp_path / "stall.mp4"
    with h264_writer(path, width=160, height=96, fps=10, gop=10) as write:
        for index in range(30):
            if index < 10:
                write(np.roll(textured, 3 * index, axis=1))  # moving
            elif index < 20:
                write(textured)  # the stream stalls: the same picture ten times
            else:
                write(np.zeros_like(textured))  # black, like the end of the figshare Venice copy
    table = _analyze(path)
    assert table["blank"].tolist() == [False] * 20 + [True] * 10
    # Frame 10 differs from frame 9; 11..19 repeat 10; 21..29 repeat black frame 20.
    assert table["frozen"].tolist() == [False] * 11 + [True] * 9 + [False] + [True] * 9
    assert table["lightness"].iloc[25] < 1.0
