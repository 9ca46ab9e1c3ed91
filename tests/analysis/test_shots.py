"""Shots: PySceneDetect's detectors on our frames find the hard cuts exactly, and nothing in one take."""

from __future__ import annotations

import pytest

from wtours.analysis.shots import ShotScoreAnalyzer, detect_cuts, shot_table
from wtours.frames import FrameSize, iter_frames, scaled_size, stream_info


def _scores(path):
    info = stream_info(path)
    analyzer = ShotScoreAnalyzer(FrameSize(*scaled_size(info.width, info.height, 256)), fps=info.fps)
    for frame in iter_frames(path, {"small": analyzer.frame_size}):
        analyzer.process_frame(frame.index, frame.time, frame.images["small"])
    return analyzer.tables()["frames"]["content_val"].to_numpy(), info.fps


@pytest.mark.parametrize("detector", ["content", "adaptive"])
def test_hard_cuts_are_found_exactly(movie_video, detector):
    path, truth = movie_video
    scores, fps = _scores(path)
    assert detect_cuts(scores, fps, detector=detector, min_scene_len=10) == truth.cut_frames


def test_a_continuous_take_is_one_shot(walk_video):
    path, truth = walk_video
    scores, fps = _scores(path)
    cuts = detect_cuts(scores, fps)
    assert truth.cut_frames == [] and cuts == []
    shots = shot_table(cuts, truth.n_frames, fps)
    assert shots[["shot", "start_frame", "end_frame"]].values.tolist() == [[0, 0, truth.n_frames]]


def test_real_footage_matches_pyscenedetect_alone(bikes_mp4):
    from scenedetect import ContentDetector, detect

    own = [int(start.frame_num) for start, _ in detect(str(bikes_mp4), ContentDetector())][1:]
    scores, fps = _scores(bikes_mp4)
    assert own == detect_cuts(scores, fps)
    assert len(own) == 5


def test_min_scene_len_is_pyscenedetect_s():
    scores = [0.0] * 40
    for cut in (5, 20, 24):
        scores[cut] = 80.0
    # A cut 5 frames into the video is closer than 15 frames to its start, so PySceneDetect drops it;
    # 24 comes only 4 frames after 20 (merged away).
    assert detect_cuts(scores, 30.0) == [20]
    assert detect_cuts(scores, 30.0, min_scene_len=0) == [5, 20, 24]


def test_shot_table_has_the_schema_curation_reads():
    shots = shot_table([30, 76], 100, 25.0)
    assert shots["start_frame"].tolist() == [0, 30, 76] and shots["end_frame"].tolist() == [30, 76, 100]
    assert shots["start_time"].tolist() == [0.0, 1.2, 3.04]
    assert shots["start_timecode"].tolist()[1] == "00:00:01.200"
