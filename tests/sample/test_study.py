"""The study set: a walk over >= 16 real photos with known scenes, and labelled crops whose train and val
parts never share a pixel, on which an untrained network is far from perfect."""

from __future__ import annotations

import functools
import itertools
import json
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from wtours.errors import WtoursError
from wtours.sample import StudyTruth, make_study_labelled_set, render_study_walk
from wtours.sample.study import (
    MIN_SCENES,
    STUDY_SCENES,
    available_study_scenes,
    load_study_photo,
    split_boxes,
)

SMALL_SET = {"per_class_train": 6, "per_class_val": 3}


@functools.lru_cache(maxsize=2)
def decode_rgb(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


@pytest.fixture(scope="module")
def walk(tmp_path_factory) -> tuple[Path, StudyTruth]:
    path = tmp_path_factory.mktemp("study") / "walk.mp4"
    return path, render_study_walk(path, fps=4, seconds_per_scene=1.5)


@pytest.fixture(scope="module")
def labelled(tmp_path_factory) -> Path:
    return make_study_labelled_set(tmp_path_factory.mktemp("study") / "set", **SMALL_SET)


def crop_index(labelled_dir: Path) -> list[dict]:
    return json.loads((labelled_dir / "crops.json").read_text(encoding="utf-8"))


def overlaps(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def inside(box, region) -> bool:
    return region[0] <= box[0] and region[1] <= box[1] and box[2] <= region[2] and box[3] <= region[3]


def grey(rgb: np.ndarray) -> np.ndarray:
    return rgb.astype(np.float32).mean(axis=2)


# --- the photos -----------------------------------------------------------------------------------


def test_at_least_16_distinct_real_photos_are_installed():
    names = available_study_scenes()
    assert len(names) >= MIN_SCENES
    # Pairwise distinct: their grey thumbnails are far from proportional (a copy such as `cat` of `chelsea`,
    # or a photo at another size or exposure, would correlate near 1).
    thumbs = [grey(np.asarray(load_study_photo(name).resize((32, 32), Image.BILINEAR))).ravel() for name in names]
    correlation = np.corrcoef(np.stack(thumbs))
    for a, b in itertools.combinations(range(len(names)), 2):
        assert abs(correlation[a, b]) < 0.7, (names[a], names[b], correlation[a, b])


def test_photos_are_rgb_and_equal_to_what_skimage_data_returns():
    data = pytest.importorskip("skimage.data")
    for name in available_study_scenes():
        photo = np.asarray(load_study_photo(name))
        assert photo.ndim == 3 and photo.shape[2] == 3
        if STUDY_SCENES[name].package == "skimage":
            expected = getattr(data, name)()
            if expected.ndim == 2:  # grey photos become 3-channel grey
                assert (photo == expected[..., None]).all(), name
            else:
                assert (photo == expected).all(), name


def test_split_boxes_tile_each_photo_into_a_training_part_and_a_disjoint_band():
    for name in available_study_scenes():
        width, height = load_study_photo(name).size
        boxes = split_boxes(name)
        assert not overlaps(boxes["train"], boxes["val"])
        areas = {split: (x1 - x0) * (y1 - y0) for split, (x0, y0, x1, y1) in boxes.items()}
        assert areas["train"] + areas["val"] == width * height
        assert 0.3 < areas["val"] / (width * height) < 0.5


def test_unknown_or_duplicate_scenes_are_refused(tmp_path):
    with pytest.raises(WtoursError, match="distinct names"):
        render_study_walk(tmp_path / "walk.mp4", scenes=["coffee", "no_such_photo"])
    with pytest.raises(WtoursError, match="distinct names"):
        make_study_labelled_set(tmp_path / "set", scenes=["coffee", "coffee"])


# --- the walk -------------------------------------------------------------------------------------


def test_walk_decodes_with_the_promised_size_rate_and_frame_count(walk):
    path, truth = walk
    frames = decode_rgb(path)
    assert len(frames) == truth.n_frames == 6 * len(truth.scenes)
    assert frames[0].shape == (truth.height, truth.width, 3) == (96, 128, 3)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert stream.average_rate == Fraction(4)


def test_walk_visits_every_scene_once_in_contiguous_runs(walk):
    _, truth = walk
    assert sorted(truth.scenes) == sorted(available_study_scenes())
    starts = [start for start, _ in truth.scene_bounds]
    assert starts[0] == 0 and truth.scene_bounds[-1][1] == truth.n_frames
    assert truth.cut_frames == starts[1:]
    assert [end for _, end in truth.scene_bounds] == [*starts[1:], truth.n_frames]
    assert truth.frame_scenes() == [truth.scene_of_frame(index) for index in range(truth.n_frames)]
    with pytest.raises(IndexError):
        truth.scene_of_frame(truth.n_frames)


def test_walk_never_shows_the_held_out_band(walk):
    _, truth = walk
    for index, name in enumerate(truth.frame_scenes()):
        view = truth.views[index]
        assert inside(view, truth.train_boxes[name]), (index, name, view)
        assert not overlaps(view, split_boxes(name)["val"])


def correlation_with_photo(frame: np.ndarray, name: str, relative_view: tuple[float, ...]) -> float:
    """Correlation of a frame's grey levels with photo ``name`` seen through a window given as fractions of
    its size, resampled to the frame's size."""
    photo = load_study_photo(name)
    box = tuple(value * size for value, size in zip(relative_view, photo.size * 2, strict=True))
    height, width = frame.shape[:2]
    seen = grey(np.asarray(photo.resize((width, height), Image.BILINEAR, box=box)))
    return float(np.corrcoef(grey(frame).ravel(), seen.ravel())[0, 1]) if seen.std() > 0 else 0.0


def test_each_frame_shows_its_own_photo(walk):
    """A frame correlates with its photo seen through the recorded window (at a scene's first, middle and
    last frame), and far better than with any other photo seen through the same relative window."""
    path, truth = walk
    frames = decode_rgb(path)
    for name, (start, end) in zip(truth.scenes, truth.scene_bounds, strict=True):
        for index in (start, (start + end) // 2, end - 1):
            x0, y0, x1, y1 = truth.views[index]
            photo_w, photo_h = load_study_photo(name).size
            relative_view = (x0 / photo_w, y0 / photo_h, x1 / photo_w, y1 / photo_h)
            own = correlation_with_photo(frames[index], name, relative_view)
            assert own > 0.9, (name, index, own)
        # The scene's last frame against every photo: only its own fits.
        others = [correlation_with_photo(frames[index], other, relative_view) for other in truth.scenes]
        assert sorted(others)[-2] < own - 0.2, name


def test_walk_moves_slowly_inside_a_scene(walk):
    """Consecutive frames of a scene stay alike (a walk, not a slideshow); a cut changes the picture."""
    path, truth = walk
    frames = [grey(frame) for frame in decode_rgb(path)]
    within = [np.abs(frames[i] - frames[i - 1]).mean() for i in range(1, truth.n_frames) if i not in truth.cut_frames]
    across = [np.abs(frames[i] - frames[i - 1]).mean() for i in truth.cut_frames]
    assert np.median(within) < 0.5 * np.median(across)


def test_walk_is_deterministic_by_seed_and_its_truth_round_trips(tmp_path, walk):
    path, truth = walk
    again = render_study_walk(tmp_path / "again.mp4", fps=4, seconds_per_scene=1.5)
    assert again == truth
    assert all((a == b).all() for a, b in zip(decode_rgb(path), decode_rgb(tmp_path / "again.mp4"), strict=True))
    other = render_study_walk(tmp_path / "other.mp4", fps=4, seconds_per_scene=1.5, seed=1)
    assert other.scenes != truth.scenes and other.views != truth.views
    truth.save(tmp_path / "walk.truth.json")
    assert StudyTruth.load(tmp_path / "walk.truth.json") == truth


def test_the_walk_s_sensor_noise_and_encoder_quality_are_what_they_are_set_to(tmp_path):
    # Lossless (crf 0), the same walk with and without its noise differs by the noise alone: std 1.5 code values,
    # the same on R, G and B, so on their mean too (yuv420p's conversion adds a little rounding).
    common = {"fps": 2, "seconds_per_scene": 1.0}
    clean = render_study_walk(tmp_path / "clean.mp4", noise_std=0, crf=0, **common)
    noisy = render_study_walk(tmp_path / "noisy.mp4", crf=0, **common)
    assert clean == noisy  # the same views: noise and quality change pixels, not what the walk shows
    differences = [grey(a) - grey(b) for a, b in zip(decode_rgb(tmp_path / "noisy.mp4"),
                                                      decode_rgb(tmp_path / "clean.mp4"), strict=True)]  # fmt: skip
    assert 1.3 < float(np.std(differences)) < 1.8 and abs(float(np.mean(differences))) < 0.2
    with pytest.raises(ValueError, match="noise_std"):
        render_study_walk(tmp_path / "bad.mp4", noise_std=-1, **common)
    assert not (tmp_path / "bad.mp4").exists()


# --- the labelled set -----------------------------------------------------------------------------


def test_labelled_set_is_an_image_folder_with_balanced_classes(labelled):
    scenes = sorted(available_study_scenes())
    for split, count in (("train", SMALL_SET["per_class_train"]), ("val", SMALL_SET["per_class_val"])):
        assert sorted(folder.name for folder in (labelled / split).iterdir()) == scenes
        for scene in scenes:
            files = sorted((labelled / split / scene).glob("*.png"))
            assert len(files) == count, (split, scene)
            with Image.open(files[0]) as image:
                assert image.size == (64, 64) and image.mode == "RGB"


def test_train_and_val_crops_never_share_a_pixel(labelled):
    index = crop_index(labelled)
    assert len(index) == len(available_study_scenes()) * sum(SMALL_SET.values())
    for scene in available_study_scenes():
        boxes = split_boxes(scene)
        train = [entry["box"] for entry in index if entry["scene"] == scene and entry["split"] == "train"]
        val = [entry["box"] for entry in index if entry["scene"] == scene and entry["split"] == "val"]
        assert all(inside(box, boxes["train"]) for box in train)
        assert all(inside(box, boxes["val"]) for box in val)
        assert not any(overlaps(a, b) for a in train for b in val), scene


def test_every_crop_is_its_box_of_its_photo(labelled):
    """The pixels of a saved crop come from its recorded box (so the disjointness above is about pixels)."""
    for entry in crop_index(labelled)[:: SMALL_SET["per_class_train"] + 1]:
        expected = load_study_photo(entry["scene"]).crop(tuple(entry["box"])).resize((64, 64), Image.BICUBIC)
        with Image.open(labelled / entry["file"]) as saved:
            assert (np.asarray(saved) == np.asarray(expected)).all(), entry


def test_labelled_set_is_idempotent_atomic_and_rebuilt_when_its_recipe_changes(tmp_path):
    out = tmp_path / "set"
    scenes = ["coffee", "brick", "moon"]
    make_study_labelled_set(out, scenes=scenes, **SMALL_SET)
    marker_time = (out / ".complete").stat().st_mtime_ns
    assert make_study_labelled_set(out, scenes=scenes, **SMALL_SET) == out
    assert (out / ".complete").stat().st_mtime_ns == marker_time
    make_study_labelled_set(out, scenes=scenes, crop_size=32, **SMALL_SET)
    with Image.open(next((out / "val" / "moon").glob("*.png"))) as image:
        assert image.size == (32, 32)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["set"]  # no staging folder left behind


def test_labelled_set_is_deterministic_by_seed(tmp_path):
    scenes = ["coffee", "brick", "moon"]
    first = crop_index(make_study_labelled_set(tmp_path / "a", scenes=scenes, **SMALL_SET))
    again = crop_index(make_study_labelled_set(tmp_path / "b", scenes=scenes, **SMALL_SET))
    other = crop_index(make_study_labelled_set(tmp_path / "c", scenes=scenes, seed=1, **SMALL_SET))
    assert first == again
    assert [entry["box"] for entry in first] != [entry["box"] for entry in other]
    # A scene's crops do not depend on which other scenes are in the set.
    alone = crop_index(make_study_labelled_set(tmp_path / "d", scenes=["moon"], **SMALL_SET))
    assert [entry["box"] for entry in alone] == [entry["box"] for entry in first if entry["scene"] == "moon"]


@pytest.mark.slow  # 5 s on an idle 2-core machine, 25 s on a busy one
def test_an_untrained_network_is_far_from_solving_the_default_set(tmp_path):
    """The point of the set: a random tiny ViT must leave room for a pretrained one to show a gain."""
    torch = pytest.importorskip("torch")
    timm = pytest.importorskip("timm")
    from wtours.trainers.evaluation.knn import evaluate_knn

    torch.manual_seed(0)
    encoder = timm.create_model(
        "vit_tiny_patch16_224",
        num_classes=0,
        img_size=64,
        patch_size=8,
        embed_dim=96,
        depth=4,
        num_heads=3,
        dynamic_img_size=True,
    )
    result = evaluate_knn(
        encoder, make_study_labelled_set(tmp_path / "set"), ks=(20,), image_size=64, device=torch.device("cpu")
    )
    assert len(result.classes) >= MIN_SCENES and result.n_val == 20 * len(result.classes)
    assert 40 < result.top1[20] < 75  # measured 54.8 (seed 0) and 58.0 (seed 1)
