"""Sample videos with known truth, rendered once per test session (320x180, a few seconds)."""

from __future__ import annotations

from pathlib import Path

import pytest

from wtours.sample import SampleTruth, render_movie_like, render_walking_tour

MOVIE_CUTS = [25, 52, 80, 101]


@pytest.fixture(scope="session")
def walk_video(tmp_path_factory) -> tuple[Path, SampleTruth]:
    """A one-take walking-tour-like video (dusk: lightness falls gradually), 4 s at 30 fps."""
    path = tmp_path_factory.mktemp("videos") / "walk.mp4"
    return path, render_walking_tour(path, seconds=4.0, seed=1)


@pytest.fixture(scope="session")
def movie_video(tmp_path_factory) -> tuple[Path, SampleTruth]:
    """A movie-like video with hard cuts at known frames, 4 s at 30 fps."""
    path = tmp_path_factory.mktemp("videos") / "movie.mp4"
    return path, render_movie_like(path, seconds=4.0, seed=2, cut_frames=MOVIE_CUTS)
