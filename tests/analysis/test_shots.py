"""Shots: PySceneDetect's detectors on our frames find the hard cuts exactly, and nothing in one take."""

from __future__ import annotations

import numpy as np
import pytest

from wtours.analysis.shots import ShotScoreAnalyzer, content_score, detect_cuts, hsv_planes, shot_table
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


@pytest.mark.parametrize("detector", ["content", "adaptive"])
def test_real_footage_matches_pyscenedetect_alone(bikes_mp4, detector):
    """Our score and decisions (written from PySceneDetect's algorithm, not through its private hooks) find
    the cuts PySceneDetect finds reading the file itself."""
    from scenedetect import AdaptiveDetector, ContentDetector, detect

    theirs = ContentDetector() if detector == "content" else AdaptiveDetector()
    own = [int(start.frame_num) for start, _ in detect(str(bikes_mp4), theirs)][1:]
    scores, fps = _scores(bikes_mp4)
    assert own == detect_cuts(scores, fps, detector=detector)
    assert len(own) == 5


@pytest.mark.parametrize("luma_only", [False, True])
def test_the_frame_score_is_pyscenedetect_s_to_the_bit(luma_only):
    """content_score against ContentDetector's own score, read through its public statistics manager."""
    import cv2
    from scenedetect import ContentDetector, FrameTimecode, StatsManager

    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (54, 96, 3), dtype=np.uint8) for _ in range(4)]
    frames.append(frames[-1].copy())  # a still frame: 0
    theirs = ContentDetector(luma_only=luma_only)
    theirs.stats_manager = StatsManager()
    previous = None
    for number, rgb in enumerate(frames):
        position = FrameTimecode(number, 30.0)
        theirs.process_frame(position, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        planes = hsv_planes(rgb)
        if previous is not None:
            [expected] = theirs.stats_manager.get_metrics(position, ["content_val"])
            assert content_score(previous, planes, luma_only=luma_only) == expected
        previous = planes
    assert content_score(previous, hsv_planes(frames[-1])) == 0.0


@pytest.mark.parametrize("detector", ["content", "adaptive"])
@pytest.mark.parametrize("min_scene_len", [0, 3, 15])
def test_decisions_are_pyscenedetect_s_on_the_same_frames(detector, min_scene_len):
    """Frames that drift, jump now and then, and flash: PySceneDetect's detector fed the frames through its
    public process_frame, and ours fed their scores, cut at the same frames."""
    import cv2
    from scenedetect import AdaptiveDetector, ContentDetector, FrameTimecode

    rng = np.random.default_rng(min_scene_len)
    frame = rng.integers(0, 256, (24, 32, 3)).astype(np.int16)
    frames = []
    for _ in range(300):
        if rng.random() < 0.06:  # a new shot, or a flash of one frame
            frame = rng.integers(0, 256, (24, 32, 3)).astype(np.int16)
        else:
            frame = frame + rng.integers(-6, 7, frame.shape)
        frames.append(np.clip(frame, 0, 255).astype(np.uint8))
    if detector == "content":
        theirs = ContentDetector(min_scene_len=min_scene_len)
    else:
        theirs = AdaptiveDetector(min_scene_len=min_scene_len)
    expected = []
    for number, rgb in enumerate(frames):
        expected += theirs.process_frame(FrameTimecode(number, 30.0), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    expected += theirs.post_process(FrameTimecode(len(frames) - 1, 30.0))
    planes = [hsv_planes(rgb) for rgb in frames]
    scores = [0.0] + [content_score(before, now) for before, now in zip(planes, planes[1:], strict=False)]
    ours = detect_cuts(scores, 30.0, detector=detector, min_scene_len=min_scene_len)
    assert ours == sorted({int(cut.frame_num) for cut in expected} - {0})
    assert len(ours) >= 5


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
