"""Windows, caching and executors: splitting changes nothing, re-runs do nothing, failures stay local."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from wtours.analysis.run import RESULT_FILES, analyze_videos
from wtours.analysis.settings import AnalysisSettings
from wtours.analysis.window import VideoInput
from wtours.sample import render_numbered
from wtours.store import Store, file_sha256

PARQUETS = [name for name in RESULT_FILES if name.endswith(".parquet")]


@pytest.fixture(scope="module")
def videos(walk_video, movie_video) -> list[VideoInput]:
    return [VideoInput("walk", walk_video[0], "walking"), VideoInput("movie", movie_video[0], "movies")]


@pytest.fixture(scope="module")
def darknet_cfg(darknet_yolov3_tiny) -> str:
    return str(darknet_yolov3_tiny["cfg"])


def _analyze(videos, root: Path, **settings):
    return analyze_videos(videos, Store.at(root), AnalysisSettings(**settings), show_progress=False)


def _tables(root: Path, video_id: str) -> dict[str, pd.DataFrame]:
    return {name: pd.read_parquet(root / "analysis" / video_id / name) for name in PARQUETS}


def _window_markers(root: Path, video_id: str) -> dict[str, float]:
    folder = root / "analysis" / video_id / ".windows"
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.glob("*/*.done")}


def test_window_splitting_gives_the_same_results_as_one_window(videos, darknet_cfg, tmp_path, movie_video):
    common = {"detector": darknet_cfg, "detector_fps": 1.0, "detector_width": 320}
    whole = _analyze(videos, tmp_path / "whole", window_seconds=60, **common)
    split = _analyze(videos, tmp_path / "split", window_seconds=0.7, **common)  # 21-frame windows
    assert all(r.ok for r in whole + split), [r.error for r in whole + split]
    assert [r.windows_computed for r in split] == [6, 6]
    for video in videos:
        one, many = _tables(tmp_path / "whole", video.id), _tables(tmp_path / "split", video.id)
        for name in PARQUETS:
            pd.testing.assert_frame_equal(one[name], many[name], obj=f"{video.id}/{name}")
    assert split[1].summary["cuts"] == movie_video[1].cut_frames  # cuts at 25, 52, 80, 101 straddle windows
    assert split[0].summary["shots"] == 1


def test_rerun_does_nothing_and_a_changed_setting_recomputes_only_its_analyzer(videos, darknet_cfg, tmp_path):
    walk = videos[:1]
    _analyze(walk, tmp_path, window_seconds=1.0, detector=darknet_cfg)
    markers = _window_markers(tmp_path, "walk")
    outputs = {name: (tmp_path / "analysis" / "walk" / name).stat().st_mtime_ns for name in RESULT_FILES}

    [again] = _analyze(walk, tmp_path, window_seconds=1.0, detector=darknet_cfg)
    assert (again.windows_computed, again.windows_cached) == (0, 4)
    assert {n: (tmp_path / "analysis" / "walk" / n).stat().st_mtime_ns for n in RESULT_FILES} == outputs

    # A shot threshold is applied at merge time: no window is decoded again.
    [rethreshold] = _analyze(walk, tmp_path, window_seconds=1.0, detector=darknet_cfg, shot_threshold=5.0)
    assert rethreshold.windows_computed == 0 and rethreshold.summary["settings"]["shot_threshold"] == 5.0

    # A detector setting reruns the detector only; lightness and shot windows stay as they were.
    [redetect] = _analyze(walk, tmp_path, window_seconds=1.0, detector=darknet_cfg, detector_confidence=0.5)
    assert redetect.windows_computed == 4
    after = _window_markers(tmp_path, "walk")
    assert {k: v for k, v in after.items() if k in markers} == markers
    assert sorted({k.split("-")[0] for k in set(after) - set(markers)}) == ["objects"]


def test_a_truncated_video_fails_alone_and_keeps_its_finished_windows(videos, tmp_path):
    # A faststart MP4 lists all its frames up front; cutting the file loses the last ones.
    numbered = tmp_path / "numbered.mp4"
    render_numbered(numbered, n_frames=90, width=160, height=96, fps=30)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(numbered.read_bytes()[: int(numbered.stat().st_size * 0.6)])
    # Two local worker processes: the failure must not stop the pool.
    results = analyze_videos([VideoInput("cut", cut), videos[0]], Store.at(tmp_path),
                             AnalysisSettings(window_seconds=0.5, detector=None), workers=2, show_progress=False)
    broken, fine = results
    assert fine.ok and fine.summary["analyzed"]["frames"] == 120
    assert not broken.ok and "cut" in broken.error
    assert "truncated" in broken.error or "decoding failed" in broken.error
    assert "\n" not in broken.error
    kept = _window_markers(tmp_path, "cut")
    assert any(name.endswith("0000000000-0000000015.done") for name in kept)
    assert not (tmp_path / "analysis" / "cut" / "summary.json").exists()


def test_kill_and_resume_gives_identical_parquet(walk_video, darknet_cfg, tmp_path):
    source = tmp_path / "walk.mp4"
    shutil.copy(walk_video[0], source)
    command = [sys.executable, "-m", "wtours", "analyze", str(source), "--window-seconds", "0.5",
               "--detector", darknet_cfg, "--detector-fps", "30", "--detector-width", "160"]
    subprocess.run([*command, "--data-dir", str(tmp_path / "straight")], check=True, capture_output=True)

    killed_dir = tmp_path / "killed"
    process = subprocess.Popen([*command, "--data-dir", str(killed_dir)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    windows = killed_dir / "analysis" / "walk" / ".windows"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(list(windows.glob("objects-*/*.done"))) < 2:
        time.sleep(0.01)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert not (killed_dir / "analysis" / "walk" / "summary.json").exists(), "killed too late"
    finished_before_kill = len(list(windows.glob("objects-*/*.done")))
    assert 2 <= finished_before_kill < 8

    subprocess.run([*command, "--data-dir", str(killed_dir)], check=True, capture_output=True)
    for name in PARQUETS:
        straight = (tmp_path / "straight" / "analysis" / "walk" / name).read_bytes()
        assert (killed_dir / "analysis" / "walk" / name).read_bytes() == straight, name


def test_another_file_under_the_same_id_is_analyzed_afresh(walk_video, movie_video, tmp_path):
    # Same name, same codec, size, rate and frame count: only the content differs.
    first, second = tmp_path / "a" / "clip.mp4", tmp_path / "b" / "clip.mp4"
    for source, target in ((walk_video[0], first), (movie_video[0], second)):
        target.parent.mkdir()
        shutil.copy(source, target)
    settings = {"window_seconds": 1.0, "detector": None}
    [walk] = _analyze([VideoInput("clip", first)], tmp_path / "data", **settings)
    assert walk.summary["shots"] == 1
    [movie] = _analyze([VideoInput("clip", second)], tmp_path / "data", **settings)
    assert (movie.windows_computed, movie.windows_cached) == (4, 0)
    assert movie.summary["cuts"] == movie_video[1].cut_frames
    [again] = _analyze([VideoInput("clip", second)], tmp_path / "data", **settings)
    assert (again.windows_computed, again.windows_cached) == (0, 4)


def test_a_fetched_video_is_known_by_its_sha256_not_its_name(walk_video, movie_video, tmp_path):
    # Both videos padded to one size (MP4 players ignore trailing bytes), so only their content differs.
    size = max(walk_video[0].stat().st_size, movie_video[0].stat().st_size) + 1000
    walk, movie = (path.read_bytes() for path in (walk_video[0], movie_video[0]))
    walk, movie = walk + bytes(size - len(walk)), movie + bytes(size - len(movie))
    store = Store.at(tmp_path)
    store.videos_dir.mkdir(parents=True)
    video = store.video_path("tour")
    video.write_bytes(walk)
    store.sidecar_path("tour").write_text(json.dumps({"size": size, "sha256": file_sha256(video)}))
    settings = AnalysisSettings(window_seconds=1.0, detector=None)
    [first] = analyze_videos([VideoInput("tour", video)], store, settings, show_progress=False)
    assert first.summary["shots"] == 1
    # Written again (a new modification time, the same bytes): the fetch's digest still holds, nothing is decoded.
    video.write_bytes(walk)
    [same] = analyze_videos([VideoInput("tour", video)], store, settings, show_progress=False)
    assert (same.windows_computed, same.windows_cached) == (0, 4)
    # Replaced behind fetch's back by another video of the same size: the sidecar no longer describes it.
    video.write_bytes(movie)
    [other] = analyze_videos([VideoInput("tour", video)], store, settings, show_progress=False)
    assert other.windows_computed == 4 and other.summary["cuts"] == movie_video[1].cut_frames


def test_asking_for_gpu_decoding_without_nvdec_analyzes_on_the_cpu_after_one_line(videos, tmp_path, monkeypatch):
    from wtours import frames as frames_module
    from wtours.progress import console

    monkeypatch.setattr(frames_module, "cuda_device_count", lambda: 0)
    with console.capture() as captured:
        on_gpu = _analyze(videos[:1], tmp_path / "gpu", detector=None, decode="gpu")
    lines = captured.get().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("walk: h264_cuvid") and "decoding on the CPU" in lines[0]
    on_cpu = _analyze(videos[:1], tmp_path / "cpu", detector=None, decode="cpu")
    assert on_gpu[0].ok and on_cpu[0].ok
    for name, table in _tables(tmp_path / "cpu", "walk").items():
        pd.testing.assert_frame_equal(_tables(tmp_path / "gpu", "walk")[name], table)
