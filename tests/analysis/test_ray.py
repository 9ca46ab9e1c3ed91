"""The same window tasks on a local 2-CPU Ray instance give the same results as the local executor."""

from __future__ import annotations

import pandas as pd
import pytest

from wtours.analysis.run import analyze_videos
from wtours.analysis.settings import AnalysisSettings
from wtours.analysis.window import VideoInput
from wtours.store import Store


@pytest.mark.slow
def test_ray_executor_matches_local(walk_video, movie_video, tmp_path):
    pytest.importorskip("ray", reason="the ray extra is not installed")
    videos = [VideoInput("walk", walk_video[0], "walking"), VideoInput("movie", movie_video[0], "movies")]
    settings = AnalysisSettings(detector=None, window_seconds=1.0)
    local = analyze_videos(videos, Store.at(tmp_path / "local"), settings, show_progress=False)
    on_ray = analyze_videos(videos, Store.at(tmp_path / "ray"), settings, executor="ray", workers=2,
                            show_progress=False)
    assert all(r.ok for r in local + on_ray), [r.error for r in on_ray]
    assert [r.windows_computed for r in on_ray] == [4, 4]
    assert on_ray[1].summary["cuts"] == movie_video[1].cut_frames
    for video in videos:
        for name in ("frames.parquet", "shots.parquet"):
            pd.testing.assert_frame_equal(
                pd.read_parquet(tmp_path / "local" / "analysis" / video.id / name),
                pd.read_parquet(tmp_path / "ray" / "analysis" / video.id / name),
            )
