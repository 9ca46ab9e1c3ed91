"""`wtours analyze` on a manifest: per-group Figure 2 and Table 1; bad input is one line, exit 2."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pandas as pd
from typer.testing import CliRunner

from wtours.cli import app


def test_analyze_a_manifest_and_draw_figure_2(walk_video, movie_video, tmp_path):
    data = tmp_path / "data"
    (data / "videos").mkdir(parents=True)
    shutil.copy(walk_video[0], data / "videos" / "walk.mp4")
    shutil.copy(movie_video[0], data / "videos" / "movie.mp4")
    manifest = tmp_path / "manifest.yaml"
    manifest.write_text(
        "version: 1\nvideos:\n"
        "  - {id: walk, group: walking, sources: [walk.mp4]}\n"
        "  - {id: movie, group: movies, sources: [movie.mp4]}\n"
        "  - {id: absent, group: movies, sources: [absent.mp4]}\n"
    )
    args = ["analyze", "--manifest", str(manifest), "--data-dir", str(data), "--detector", "none"]
    result = CliRunner().invoke(app, [*args, "--only", "walk,movie", "--figure", "2", "--duration", "3"])
    assert result.exit_code == 0, result.output
    figures = data / "figures"
    for name in ("figure2.png", "figure2.pdf", "table1.csv", "table1.md", "table1.tex"):
        assert (figures / name).stat().st_size > 0, name
    assert (figures / "figure2.pdf").read_bytes().startswith(b"%PDF")
    table = pd.read_csv(figures / "table1.csv")
    assert table["video"].tolist() == ["walk", "movie", "walking (mean of 1)", "movies (mean of 1)"]
    assert table["frames"].tolist()[:2] == [90, 90]  # --duration 3: the first 3 s at 30 fps
    assert table["shots"].tolist()[:2] == [1, 4]  # cuts at 25, 52 and 80 fall in the first 3 s (90 frames)
    assert "\\toprule" in (figures / "table1.tex").read_text()

    # A video that was never fetched fails alone, with a hint; the others are reused from the cache.
    result = CliRunner().invoke(app, [*args, "--group", "movies"])
    assert result.exit_code == 1
    assert "absent" in result.output and "wtours fetch" in result.output


def test_bad_options_are_one_line_errors(tmp_path):
    command = [sys.executable, "-m", "wtours", "analyze", str(tmp_path / "x.mp4"), "--figure", "3"]
    done = subprocess.run(command, capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "Figure 2" in done.stderr
