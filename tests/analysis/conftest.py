"""Sample videos with known truth, rendered once per test session (a few seconds each): constant-rate
samples from wtours.sample, and variable-frame-rate videos made here with PyAV."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from wtours.color import mean_lightness
from wtours.sample import SampleTruth, render_movie_like, render_walking_tour
from wtours.sample.numbered import numbered_frame

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


@dataclass
class VfrTruth:
    """A variable-frame-rate test video: when each frame is shown, where the cut is, its lightness."""

    times: np.ndarray  # seconds, one per frame
    end: float  # when the last frame ends
    cut_time: float  # frames shown at or after it belong to the second shot
    lightness: np.ndarray  # mean CIE L* of each rendered frame

    @property
    def cut_frame(self) -> int:
        return int(np.searchsorted(self.times, self.cut_time))


def render_vfr(path: Path, times: np.ndarray, *, cut_time: float, numbered: bool = False,
               time_base: Fraction = Fraction(1, 90000), width: int = 160, height: int = 96,
               faststart: bool = False, blank: tuple[float, float] | None = None) -> VfrTruth:  # fmt: skip
    """Encode frames at the given times with PyAV, setting each frame's pts as a phone's encoder does.

    The content is two flat-coloured shots (blue, then orange from ``cut_time``) under a brightness ramp
    rising over the whole video, or, with ``numbered``, each frame's own number (wtours.sample.numbered).
    Frames shown from ``blank[0]`` until ``blank[1]`` are black (a lens cap, a camera turned off).
    """
    times = np.asarray(times, dtype=np.float64)
    lightness = []
    options = {"movflags": "+faststart"} if faststart else {}
    with av.open(str(path), "w", options=options) as container:
        stream = container.add_stream("libx264", rate=30)  # the nominal rate; the timestamps decide
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.time_base = stream.codec_context.time_base = time_base
        stream.options = {"preset": "ultrafast", "crf": "18", "g": "12", "sc_threshold": "0"}
        across = np.linspace(0.8, 1.2, width, dtype=np.float32)[None, :, None]
        for number, time in enumerate(times):
            if numbered:
                rgb = numbered_frame(number, width, height)
            else:
                level = 40 + 150 * time / times[-1]
                colour = np.array((0.3, 0.5, 1.0) if time < cut_time else (1.0, 0.4, 0.2), np.float32) * level
                rgb = np.clip(np.broadcast_to(colour * across, (height, width, 3)), 0, 255).astype(np.uint8)
            if blank is not None and blank[0] <= time < blank[1]:
                rgb = np.zeros((height, width, 3), np.uint8)
            lightness.append(mean_lightness(rgb))
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            frame.pts, frame.time_base = round(time / time_base), time_base
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        end = float(video.duration * video.time_base)
    return VfrTruth(times, end, cut_time, np.asarray(lightness))


def irregular_times(count: int = 150, seed: int = 0) -> np.ndarray:
    """Frame times a phone might write: steps of 1/60 to 1/10 s, at random."""
    steps = np.random.default_rng(seed).choice([1 / 60, 1 / 30, 1 / 20, 1 / 10], size=count - 1)
    return np.concatenate([[0.0], np.cumsum(steps)])


@pytest.fixture(scope="session")
def vfr_video(tmp_path_factory) -> tuple[Path, VfrTruth]:
    """150 frames at irregular times (7.9 s, average 19 fps, 90 kHz timestamps), a cut at 2.0 s."""
    path = tmp_path_factory.mktemp("vfr") / "irregular.mp4"
    return path, render_vfr(path, irregular_times(), cut_time=2.0)


@pytest.fixture(scope="session")
def dropped_video(tmp_path_factory) -> tuple[Path, VfrTruth]:
    """A 30 fps recording (5 s) that dropped two frames in every seven, timestamps kept; a cut at 2.5 s."""
    path = tmp_path_factory.mktemp("vfr") / "dropped.mp4"
    kept = np.array([index for index in range(150) if index % 7 not in (3, 4)])
    return path, render_vfr(path, kept / 30, cut_time=2.5, time_base=Fraction(1, 15360))


@pytest.fixture
def make_vfr():
    """Factory: ``make_vfr(path, seed=3, numbered=True, ...)`` renders irregular frame times, or the ``times``
    given (see `render_vfr` for the options)."""

    def make(path: Path, *, seed: int = 0, times: np.ndarray | None = None, **options) -> VfrTruth:
        times = irregular_times(seed=seed) if times is None else times
        return render_vfr(path, times, **{"cut_time": 2.0, **options})

    return make
