"""The embedded sample: real decodable videos whose recorded truth matches what a decoder sees."""

from __future__ import annotations

import functools
import importlib.util
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

import wtours.sample.render as sample_render
from wtours.color import mean_lightness
from wtours.errors import WtoursError
from wtours.manifest import load_manifest
from wtours.sample import (
    ObjectBox,
    SampleTruth,
    photo_paths,
    read_frame_number,
    render_movie_like,
    render_numbered,
    render_walking_tour,
    write_sample_set,
)
from wtours.sample.encode import h264_writer

COCO_LABELS_USED = {"person", "bus", "tie"}


@functools.lru_cache(maxsize=2)  # the walk and the movie are decoded once for all the tests that read them
def decode_rgb(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


def frame_differences(frames: list[np.ndarray]) -> np.ndarray:
    """Mean absolute grey-level change from each frame to the next (index i: frame i vs i - 1)."""
    grey = [frame.astype(np.float32).mean(axis=2) for frame in frames]
    return np.array([0.0] + [np.abs(b - a).mean() for a, b in zip(grey, grey[1:], strict=False)])


@pytest.fixture(scope="module")
def walk(tmp_path_factory) -> tuple[Path, SampleTruth]:
    path = tmp_path_factory.mktemp("walk") / "walk.mp4"
    return path, render_walking_tour(path, seconds=4.0)


@pytest.fixture(scope="module")
def movie(tmp_path_factory) -> tuple[Path, SampleTruth]:
    path = tmp_path_factory.mktemp("movie") / "movie.mp4"
    return path, render_movie_like(path)


def test_photo_paths_finds_the_shipped_photos():
    photos = photo_paths()
    assert "grace_hopper" in photos  # matplotlib is a core dependency
    if importlib.util.find_spec("ultralytics") is None:
        pytest.skip("ultralytics not installed: bus.jpg and zidane.jpg come with it")
    assert {"bus", "zidane"} <= set(photos)
    assert all(path.is_file() and path.suffix == ".jpg" for path in photos.values())


@pytest.mark.parametrize("sample", ["walk", "movie"])
def test_videos_decode_with_the_promised_size_rate_and_length(sample, request):
    path, truth = request.getfixturevalue(sample)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert stream.average_rate == 30
        frames = list(container.decode(stream))
    assert len(frames) == truth.n_frames == len(truth.lightness) == len(truth.boxes)
    assert (frames[0].width, frames[0].height) == (truth.width, truth.height) == (320, 180)
    assert frames[-1].time == pytest.approx((truth.n_frames - 1) / 30, abs=1e-6)


@pytest.mark.parametrize("sample", ["walk", "movie"])
def test_lightness_truth_matches_the_decoded_frames(sample, request):
    path, truth = request.getfixturevalue(sample)
    decoded = [mean_lightness(frame) for frame in decode_rgb(path)]
    assert np.abs(np.array(decoded) - np.array(truth.lightness)).max() < 2.0


def test_walk_darkens_steadily_towards_dusk(walk):
    _, truth = walk
    lightness = np.array(truth.lightness)
    half_second = np.convolve(lightness, np.ones(15) / 15, mode="valid")
    assert np.diff(half_second).max() < 0.5  # never brightens noticeably
    assert half_second[0] - half_second[-1] > 10


def test_walk_is_one_take_and_movie_cuts_exactly_where_its_truth_says(walk, movie):
    walk_path, walk_truth = walk
    movie_path, movie_truth = movie
    assert walk_truth.cut_frames == []
    steady = frame_differences(decode_rgb(walk_path)).max()
    movie_diffs = frame_differences(decode_rgb(movie_path))
    cuts = movie_truth.cut_frames
    assert 4 <= len(cuts) <= 7
    assert min(b - a for a, b in movie_truth.shot_bounds()) >= 15  # shots last at least half a second
    within_shots = np.delete(movie_diffs, cuts).max()
    assert movie_diffs[cuts].min() > 3 * max(within_shots, steady)
    assert set(np.flatnonzero(movie_diffs > 3 * within_shots)) == set(cuts)


def test_no_frame_repeats_its_predecessor(walk, movie):
    """Both samples keep moving, so a frozen-frame detector finds nothing (the encoder would otherwise
    turn a still, noise-free stretch into repeated frames)."""
    for path, truth in (walk, movie):
        diffs = frame_differences(decode_rgb(path))
        assert np.delete(diffs, [0, *truth.cut_frames]).min() > 0.3


def test_pyscenedetect_content_detector_agrees_with_the_truth(walk, movie):
    scenedetect = pytest.importorskip("scenedetect")
    for path, truth in (walk, movie):
        scenes = scenedetect.detect(str(path), scenedetect.ContentDetector())
        assert [start.frame_num for start, _ in scenes[1:]] == truth.cut_frames


def test_boxes_are_labelled_and_inside_the_frame(walk, movie):
    for _, truth in (walk, movie):
        boxes = [box for frame in truth.boxes for box in frame]
        assert boxes and {box.label for box in boxes} <= COCO_LABELS_USED
        for box in boxes:
            assert 0 <= box.x0 < box.x1 <= truth.width and 0 <= box.y0 < box.y1 <= truth.height


def test_walkers_cross_the_frame(walk):
    _, truth = walk
    # The people and the bus cut out of the photos move by several pixels a frame; the panorama's own
    # objects drift with the slow pan. So a box that moves fast somewhere is a walker.
    fastest = 0.0
    for before, after in zip(truth.boxes, truth.boxes[1:], strict=False):
        for box in after:
            nearest = min((abs(box.x0 - old.x0) + abs(box.y1 - old.y1) for old in before), default=0.0)
            if box.x0 > 0 and box.x1 < truth.width:  # entering or leaving boxes change by clipping
                fastest = max(fastest, nearest)
    assert fastest >= 1.5


def test_rendering_is_deterministic_given_the_seed(tmp_path):
    size = {"width": 96, "height": 54, "seconds": 2.0}
    first = render_movie_like(tmp_path / "a.mp4", seed=3, **size)
    again = render_movie_like(tmp_path / "b.mp4", seed=3, **size)
    other = render_movie_like(tmp_path / "c.mp4", seed=4, **size)
    assert first == again
    assert other.cut_frames != first.cut_frames


def test_movie_uses_the_cut_frames_it_is_given(tmp_path):
    truth = render_movie_like(tmp_path / "m.mp4", width=96, height=54, seconds=2.0, cut_frames=[20, 41])
    assert truth.cut_frames == [20, 41]
    assert truth.shot_bounds() == [(0, 20), (20, 41), (41, 60)]
    with pytest.raises(ValueError, match="cut frames"):
        render_movie_like(tmp_path / "bad.mp4", seconds=2.0, cut_frames=[30, 10])
    assert not (tmp_path / "bad.mp4").exists()


def test_odd_sizes_are_refused(tmp_path):
    with pytest.raises(ValueError, match="even"):
        render_walking_tour(tmp_path / "odd.mp4", width=321, height=180, seconds=1.0)


def test_an_interrupted_encode_leaves_no_file(tmp_path):
    target = tmp_path / "half.mp4"
    with pytest.raises(RuntimeError), h264_writer(target, width=32, height=32, fps=30, gop=30) as write:
        write(np.zeros((32, 32, 3), np.uint8))
        raise RuntimeError("stopped")
    assert list(tmp_path.iterdir()) == []


def test_truth_round_trips_through_json(walk, tmp_path):
    _, truth = walk
    truth.save(tmp_path / "walk.truth.json")
    loaded = SampleTruth.load(tmp_path / "walk.truth.json")
    assert loaded == truth
    assert isinstance(loaded.boxes[0][0], ObjectBox)
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(WtoursError, match="not a sample truth"):
        SampleTruth.load(tmp_path / "broken.json")


def test_numbered_frames_read_back_after_h264_and_resizing(tmp_path):
    path = tmp_path / "numbered.mp4"
    truth = render_numbered(path, n_frames=120, gop=10)
    assert truth.kind == "numbered" and truth.n_frames == 120
    frames = decode_rgb(path)
    assert [read_frame_number(frame) for frame in frames] == list(range(120))
    thumbnails = [np.asarray(Image.fromarray(frame).resize((64, 36), Image.BILINEAR)) for frame in frames]
    assert [read_frame_number(thumbnail) for thumbnail in thumbnails] == list(range(120))
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        keyframes = [
            round(packet.pts * stream.time_base * 30) for packet in container.demux(stream) if packet.is_keyframe
        ]
    assert keyframes == list(range(0, 120, 10))


def test_read_frame_number_refuses_frames_without_a_code():
    grey = np.full((36, 64, 3), 128, np.uint8)
    with pytest.raises(ValueError, match="grey"):
        read_frame_number(grey)
    with pytest.raises(ValueError, match="uint8"):  # a [0, 1] float frame would silently read as 0
        read_frame_number(np.zeros((36, 64, 3), np.float32))


def test_renders_with_only_matplotlibs_photo(tmp_path, monkeypatch):
    """Without ultralytics (no bus.jpg, zidane.jpg) the sample still renders, with no empty borders."""
    monkeypatch.setattr(sample_render, "available_photos", lambda: ["grace_hopper"])
    for make in (sample_render.render_walking_tour, sample_render.render_movie_like):
        path = tmp_path / f"{make.__name__}.mp4"
        truth = make(path, width=320, height=180, seconds=2.0)
        frames = decode_rgb(path)
        assert len(frames) == truth.n_frames == 60
        # Columns outside the photo would be black: every edge column keeps the photo's content.
        assert min(frame[:, [0, -1]].mean() for frame in frames) > 10
        assert {box.label for frame in truth.boxes for box in frame} <= {"person"}


def test_sample_set_is_a_fetchable_manifest_with_truth(tmp_path):
    written = write_sample_set(tmp_path / "sample", seconds=2.0, width=160)
    names = sorted(path.name for path in written)
    assert names == ["manifest.yaml", "movie.mp4", "movie.truth.json", "walk.mp4", "walk.truth.json"]
    manifest = load_manifest(tmp_path / "sample" / "manifest.yaml")
    assert {video.group for video in manifest.videos} == {"walking_tours_sample", "movie_sample"}
    for video in manifest.videos:
        assert manifest.resolve_path(video.sources[0]).is_file()
        assert video.duration == 2.0
    walk_truth = SampleTruth.load(tmp_path / "sample" / "walk.truth.json")
    assert (walk_truth.width, walk_truth.height, walk_truth.n_frames) == (160, 90, 60)


def test_ntsc_frame_rate_is_kept_exactly(tmp_path):
    path = tmp_path / "ntsc.mp4"
    truth = render_numbered(path, n_frames=30, fps=30000 / 1001)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.average_rate == Fraction(30000, 1001)
        times = [frame.time for frame in container.decode(stream)]
    assert truth.fps == pytest.approx(29.97, abs=0.001)
    assert times[-1] == pytest.approx(29 * 1001 / 30000, abs=1e-4)
