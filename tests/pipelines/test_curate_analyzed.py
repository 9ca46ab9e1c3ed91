"""Analyze -> curate -> ClipDataset on a rendered movie-like video: no returned clip crosses a true cut."""

from __future__ import annotations

from pathlib import Path

from wtours.analysis.run import analyze_videos
from wtours.analysis.settings import AnalysisSettings
from wtours.analysis.window import VideoInput
from wtours.pipelines.clip_index import ClipSpec
from wtours.pipelines.clipdata import ClipDataset
from wtours.pipelines.curate import CurateOptions, curate_video
from wtours.pipelines.proxy import ProxySettings
from wtours.sample.render import render_movie_like
from wtours.store import Store

T, STRIDE = 4, 6


def test_clips_from_real_analysis_never_cross_a_true_cut(tmp_path: Path) -> None:
    store = Store.at(tmp_path / "data")
    store.videos_dir.mkdir(parents=True)
    truth = render_movie_like(store.video_path("movie"), width=256, height=144, fps=30, seconds=5.0, seed=1)
    assert len(truth.cut_frames) >= 2
    [result] = analyze_videos([VideoInput("movie", store.video_path("movie"))], store,
                              AnalysisSettings(detector="none"), show_progress=False)  # fmt: skip
    assert result.ok, result.error
    index = curate_video(store, "movie", CurateOptions(ClipSpec(T, STRIDE), ProxySettings(short_side=144)),
                         show_progress=False)  # fmt: skip
    assert len(index) > 0

    last_offset = (T - 1) * STRIDE
    for mode in ("index", "any_start"):
        dataset = ClipDataset(store.root, ["movie"], frames_per_clip=T, stride=STRIDE, mode=mode)
        starts = [dataset.locate(i)[1] for i in range(len(dataset))]
        crossing = [(s, cut) for s in starts for cut in truth.cut_frames if s < cut <= s + last_offset]
        assert crossing == [], mode
        # Every true shot long enough for a clip contributes clips (the analysis found its cuts, no more).
        for shot_start, shot_end in truth.shot_bounds():
            if shot_end - shot_start > last_offset + STRIDE:
                assert any(shot_start <= s < shot_end for s in starts), (mode, shot_start, shot_end)
        assert dataset[0]["frames"].shape == (T, 3, 144, 256)
