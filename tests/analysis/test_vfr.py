"""Variable frame rate (phones, action cameras): frames are placed by their timestamps, never by a frame
rate or a header's frame count, in the frame iterator, the analysis and the training proxy."""

from __future__ import annotations

import json
from fractions import Fraction

import numpy as np
import pandas as pd
import pytest

from wtours.analysis.run import RESULT_FILES, analyze_videos
from wtours.analysis.settings import AnalysisSettings
from wtours.analysis.window import VideoInput
from wtours.frames import FrameSize, iter_frames
from wtours.pipelines.clip_index import ClipSpec
from wtours.pipelines.clipdata import ClipDataset
from wtours.pipelines.curate import CurateOptions, curate_video
from wtours.pipelines.proxy import ProxyReader, ProxySettings, ensure_proxy
from wtours.sample import read_frame_number
from wtours.store import Store, read_json

PARQUETS = [name for name in RESULT_FILES if name.endswith(".parquet")]


def _analyze(path, root, video_id="vfr", **settings):
    [result] = analyze_videos([VideoInput(video_id, path)], Store.at(root),
                              AnalysisSettings(detector=None, **settings), show_progress=False)  # fmt: skip
    assert result.ok, result.error
    return result, {name: pd.read_parquet(root / "analysis" / video_id / name) for name in PARQUETS}


def test_every_frame_is_yielded_at_its_own_time_and_windows_start_where_a_whole_pass_is(vfr_video):
    path, truth = vfr_video
    sizes = {"small": FrameSize(80, 48), "sampled": FrameSize(80, 48, every_n=19)}  # ~1 per second
    whole = list(iter_frames(path, sizes))
    assert len(whole) == len(truth.times)  # none dropped where two frames share a grid place
    np.testing.assert_allclose([frame.time for frame in whole], truth.times, atol=1e-9)
    assert whole[-1].end_time == pytest.approx(truth.end)
    sampled = [frame.index for frame in whole if "sampled" in frame.images]
    assert len(sampled) == 8 and sampled[0] == 0  # the frame on screen at each grid multiple of 19
    # A window from grid place 60 starts with the frame shown just before it, then the same frames,
    # sampled the same way, as the whole pass.
    first = next(number for number, frame in enumerate(whole) if frame.index >= 60)
    window = list(iter_frames(path, sizes, start_frame=60, preroll=1))
    assert [(f.index, f.time, sorted(f.images)) for f in window] == \
        [(f.index, f.time, sorted(f.images)) for f in whole[first - 1:]]  # fmt: skip


def test_analysis_reports_real_times_and_pyscenedetect_s_cut(vfr_video, tmp_path):
    from scenedetect import ContentDetector, detect

    path, truth = vfr_video
    result, tables = _analyze(path, tmp_path / "whole")
    frames, shots = tables["frames.parquet"], tables["shots.parquet"]
    assert frames["frame"].tolist() == list(range(len(truth.times)))
    np.testing.assert_allclose(frames["time"], truth.times, atol=1e-9)
    assert np.abs(frames["lightness"] - truth.lightness).max() < 1.5
    assert np.all(np.diff(frames["lightness"].to_numpy()[: truth.cut_frame]) > -0.5)  # the ramp, per shot
    assert shots["start_frame"].tolist() == [0, truth.cut_frame]
    assert shots["start_time"].tolist() == pytest.approx([0.0, truth.times[truth.cut_frame]], abs=1e-9)
    assert shots["end_time"].iloc[-1] == pytest.approx(truth.end)
    # PySceneDetect, reading the same file itself, puts the cut at the same time (it keeps microseconds).
    own = detect(str(path), ContentDetector())
    np.testing.assert_allclose(shots["start_time"], [start.seconds for start, _ in own], atol=1e-6)
    assert shots["start_timecode"].tolist() == [start.get_timecode() for start, _ in own]
    assert result.summary["analyzed"] == {"frames": len(truth.times), "seconds": pytest.approx(truth.end),
                                          "complete": True}  # fmt: skip
    # Windows of one second (about 19 frames, cut at grid places, not frame counts) change nothing.
    _, split = _analyze(path, tmp_path / "split", window_seconds=1.0)
    for name in PARQUETS:
        pd.testing.assert_frame_equal(split[name], tables[name], obj=name)


def test_dropped_frames_with_timestamps_kept_are_not_a_truncated_video(dropped_video, tmp_path):
    path, truth = dropped_video
    result, tables = _analyze(path, tmp_path, window_seconds=1.0)
    assert result.summary["analyzed"]["frames"] == len(truth.times) == 108
    assert result.summary["analyzed"]["complete"] and result.summary["analyzed"]["seconds"] == 5.0
    np.testing.assert_allclose(tables["frames.parquet"]["time"], truth.times, atol=1e-9)
    assert result.summary["cuts"] == [truth.cut_frame]
    assert tables["shots.parquet"]["start_time"].tolist() == [0.0, 2.5]


def test_windows_join_on_timestamps(vfr_video, tmp_path):
    path, _ = vfr_video
    _analyze(path, tmp_path, window_seconds=1.0)
    folder = tmp_path / "analysis" / "vfr"
    # Make one window claim it follows another frame than the one the window before it ends on.
    marker = sorted(folder.glob(".windows/lightness-*/*.done"))[3]
    done = read_json(marker)
    done["span"]["before"] += 0.01
    marker.write_text(json.dumps(done))
    (folder / "summary.json").unlink()
    [result] = analyze_videos([VideoInput("vfr", path)], Store.at(tmp_path),
                              AnalysisSettings(detector=None, window_seconds=1.0), show_progress=False)  # fmt: skip
    assert not result.ok and "does not continue the frame at" in result.error


def test_the_proxy_resamples_a_variable_rate_video_to_its_average_rate(make_vfr, tmp_path):
    store = Store.at(tmp_path)
    store.videos_dir.mkdir(parents=True)
    truth = make_vfr(store.video_path("phone"), seed=3, numbered=True)
    settings = ProxySettings(short_side=96, frames_per_shard=40)  # four shards, each cut after its own seek
    directory = ensure_proxy(store, "phone", settings, show_progress=False)
    sidecar = read_json(directory / "proxy.json")
    rate = Fraction(sidecar["resampled_fps"])
    assert sidecar["frame_mapping"] == "resampled" and sidecar["source_frame_count"] == len(truth.times)
    assert sidecar["fps"] == float(rate) and sidecar["frame_count"] == round(truth.end * rate)
    reader = ProxyReader(directory)
    shown = [read_frame_number(reader.read([slot])[0]) for slot in range(reader.frame_count)]
    reader.close()
    # Slot n holds the frame on screen at n / rate s: the last one shown at or before that time.
    on_screen = [int(np.searchsorted(truth.times, float(slot / rate) + 1e-9, side="right")) - 1
                 for slot in range(len(shown))]  # fmt: skip
    assert shown == on_screen
    assert len(set(shown)) < len(truth.times)  # some frames lasted less than a slot: resampled, not copied


def test_a_truncated_variable_rate_video_is_still_refused(make_vfr, tmp_path):
    whole = tmp_path / "whole.mp4"
    make_vfr(whole, faststart=True)  # the index first, as when streamed
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size * 6 // 10])
    [result] = analyze_videos([VideoInput("cut", cut)], Store.at(tmp_path),
                              AnalysisSettings(detector=None), show_progress=False)  # fmt: skip
    assert not result.ok and ("truncated" in result.error or "decoding failed" in result.error), result.error


def _shown_colours(reader: ProxyReader) -> list[str]:
    """What each proxy frame shows: 'black', 'blue' (the first shot) or 'orange' (the second)."""
    colours = []
    for image in reader.read(np.arange(reader.frame_count)).astype(np.float32):
        red, blue = image[..., 0].mean(), image[..., 2].mean()
        colours.append("black" if image.mean() < 8 else "blue" if blue > red else "orange")
    return colours


def test_curated_clips_of_a_variable_rate_video_keep_to_one_shot_and_skip_its_blank_frames(make_vfr, tmp_path):
    """2 s at 60 fps, then 6 s at 10 fps, cut at 2 s, black from 5 to 5.5 s: analysis frame k is shown at a
    very different time than proxy frame k (the proxy runs at the 22.5 fps average), so clips are placed by
    time. The analysis of the first 4 s only gives clips of the first 4 s only."""
    times = np.concatenate([np.arange(120) / 60, 2.0 + np.arange(60) / 10])
    spec = ClipSpec(frames_per_clip=3, stride=4)
    for duration in (None, 4.0):
        store = Store.at(tmp_path / f"data-{duration}")
        store.videos_dir.mkdir(parents=True)
        truth = make_vfr(store.video_path("phone"), times=times, cut_time=2.0, blank=(5.0, 5.5))
        [result] = analyze_videos([VideoInput("phone", store.video_path("phone"))], store,
                                  AnalysisSettings(detector=None, duration=duration), show_progress=False)  # fmt: skip
        assert result.ok, result.error
        index = curate_video(store, "phone", CurateOptions(spec, ProxySettings(short_side=96, frames_per_shard=64)),
                             show_progress=False)  # fmt: skip
        reader = ProxyReader(store.proxy_dir("phone", 96))
        rate = Fraction(reader.sidecar["resampled_fps"])
        shown = _shown_colours(reader)
        reader.close()
        assert reader.frame_count == 180 and shown.count("black") == round(0.5 * rate)

        dataset = ClipDataset(store.root, ["phone"], frames_per_clip=3, stride=4, mode="any_start")
        starts = [dataset.locate(item)[1] for item in range(len(dataset))]
        for start in starts:
            span = shown[start : start + spec.span]
            assert len(set(span) - {"black"}) == 1, (duration, start, span)  # one shot, never across the cut
            assert "black" not in [shown[frame] for frame in spec.frame_numbers(start)], (duration, start)
        colours = {shown[start] for start in starts}
        assert colours == {"blue", "orange"}, colours  # clips on both sides of the cut
        if duration is None:  # and after the black stretch, to the end
            assert max(starts) + spec.span == reader.frame_count, max(starts)
        else:
            last_frame = max(starts) + spec.span - 1  # shown before 4 s, the one after it no longer
            assert last_frame / rate < 4.0 <= (last_frame + 1) / rate, last_frame
        assert truth.cut_frame == 120
        # A clip's start time is its first proxy frame's (frame i is shown at i / rate).
        np.testing.assert_allclose(index["start_time"], index["start_frame"] / float(rate), atol=1e-9)
