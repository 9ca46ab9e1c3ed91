"""The embedded sample as a folder: two videos, their ground truth, and a manifest that lists them."""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from wtours.sample.render import render_movie_like, render_walking_tour
from wtours.store import atomic_write_text

WALK_ID, MOVIE_ID = "sample_walk", "sample_movie"
WALK_GROUP, MOVIE_GROUP = "walking_tours_sample", "movie_sample"
# Each sample video's manifest id -> its file name stem in the sample folder (<stem>.mp4, <stem>.truth.json).
SAMPLE_NAMES = {WALK_ID: "walk", MOVIE_ID: "movie"}

_MANIFEST_HEADER = """\
# The embedded sample, rendered by `wtours sample` from photos that installed packages ship.
# Synthetic stand-ins with known truth (*.truth.json): a one-take walk into dusk, and a movie-like
# sequence of hard cuts. Fetch it like any manifest: wtours fetch --manifest {name}
"""


def frame_height(width: int) -> int:
    """The even height of a 16:9 frame ``width`` wide."""
    return max(2, round(width * 9 / 16 / 2) * 2)


def sample_manifest(sources: dict[str, str], seconds: float) -> str:
    """Manifest YAML of the sample videos; ``sources`` maps each id to its source (path or URL)."""
    videos = [
        {
            "id": WALK_ID,
            "group": WALK_GROUP,
            "duration": round(seconds, 3),
            "notes": "one continuous take: slow pan and zoom, people and a bus crossing, light fading to dusk",
            "sources": [sources[WALK_ID]],
        },
        {
            "id": MOVIE_ID,
            "group": MOVIE_GROUP,
            "duration": round(seconds, 3),
            "notes": "movie-like: hard cuts between photos, framings and exposures at known frames",
            "sources": [sources[MOVIE_ID]],
        },
    ]
    body = yaml.safe_dump({"version": 1, "videos": videos}, sort_keys=False, width=110)
    return _MANIFEST_HEADER.format(name="manifest.yaml") + body


def write_sample_set(
    out_dir: str | os.PathLike[str], *, seconds: float = 8.0, width: int = 640, fps: float = 30, seed: int = 0
) -> list[Path]:
    """Render walk.mp4 and movie.mp4 with their truth JSON and a manifest.yaml (path sources) into ``out_dir``.

    Returns the written paths. ``width`` is rounded down to even; the height follows 16:9.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    width -= width % 2
    size = {"width": width, "height": frame_height(width), "fps": fps, "seconds": seconds, "seed": seed}
    written = []
    for video_id, render in ((WALK_ID, render_walking_tour), (MOVIE_ID, render_movie_like)):
        name = SAMPLE_NAMES[video_id]
        video, truth_path = out_dir / f"{name}.mp4", out_dir / f"{name}.truth.json"
        render(video, **size).save(truth_path)
        written += [video, truth_path]
    manifest = out_dir / "manifest.yaml"
    atomic_write_text(
        manifest, sample_manifest({video_id: f"{name}.mp4" for video_id, name in SAMPLE_NAMES.items()}, seconds)
    )
    written.append(manifest)
    return written
