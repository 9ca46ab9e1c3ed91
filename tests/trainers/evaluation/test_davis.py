"""DAVIS label propagation and the J / F measures, on constructed masks and a synthetic DAVIS folder, held to
DINO's `eval_video_segmentation.py` and the DAVIS-2017 toolkit transcribed in tests/trainers/dino_official.py."""

from __future__ import annotations

import csv
import json
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import dino_official as official
import numpy as np
import pytest
import torch
from PIL import Image

from wtours.errors import WtoursError
from wtours.trainers.evaluation.davis import (
    PropagationConfig,
    boundary_map,
    boundary_tolerance,
    contour_accuracy,
    davis_palette,
    dilate_disk,
    load_frame,
    model_input_size,
    neighbourhood_mask,
    per_frame_statistics,
    predict_sequence,
    propagate_labels,
    read_mask,
    region_similarity,
    run_davis,
    run_davis_for_encoder,
    segment_sequence,
    soft_labels_to_mask,
)
from wtours.trainers.evaluation.features import load_encoder, patch_features


def square(size: int, top: int, left: int, side: int) -> np.ndarray:
    mask = np.zeros((size, size), dtype=bool)
    mask[top : top + side, left : left + side] = True
    return mask


# --- J ---------------------------------------------------------------------------------------------------------


def test_region_similarity_identical_disjoint_and_empty():
    mask = square(40, 5, 5, 10)
    assert region_similarity(mask, mask) == 1.0
    assert region_similarity(mask, square(40, 25, 25, 10)) == 0.0
    assert region_similarity(np.zeros((8, 8)), np.zeros((8, 8))) == 1.0  # object absent and not predicted
    assert region_similarity(np.zeros((8, 8)), square(8, 0, 0, 2)) == 0.0


def test_region_similarity_of_shifted_square_is_hand_computed_iou():
    # 10x10 squares shifted by k=3 columns: overlap 10*7 = 70, union 100 + 100 - 70 = 130.
    assert region_similarity(square(40, 5, 5, 10), square(40, 5, 8, 10)) == pytest.approx(70 / 130)
    # Shifted diagonally by 2: overlap 8*8 = 64, union 136.
    assert region_similarity(square(40, 5, 5, 10), square(40, 7, 7, 10)) == pytest.approx(64 / 136)


def test_region_similarity_ignores_void_pixels():
    truth = square(20, 0, 0, 10)
    prediction = square(20, 0, 0, 10) | square(20, 15, 15, 5)  # 25 extra pixels, all void
    void = square(20, 15, 15, 5)
    assert region_similarity(prediction, truth) == pytest.approx(100 / 125)
    assert region_similarity(prediction, truth, void) == 1.0


# --- F ---------------------------------------------------------------------------------------------------------


def test_boundary_map_marks_the_pixels_before_each_transition():
    mask = np.zeros((6, 6), dtype=bool)
    mask[:, :3] = True  # left half
    boundary = boundary_map(mask)
    assert boundary[:, 2].all()  # the last foreground column, in every row
    assert boundary.sum() == 6


def test_dilate_disk_uses_a_round_disk():
    point = np.zeros((9, 9), dtype=bool)
    point[4, 4] = True
    assert dilate_disk(point, 1).sum() == 5  # a plus
    assert dilate_disk(point, 2).sum() == 13  # dy^2 + dx^2 <= 4
    assert boundary_tolerance((480, 854)) == 8  # ceil(0.008 * 979.6): DAVIS 480p
    assert boundary_tolerance((100, 100), 3) == 3


def test_dilation_and_f_are_the_davis_toolkits():
    """The toolkit dilates with skimage's disk (not OpenCV's fuller ellipse): the same pixels, the same F."""
    import cv2
    from skimage.morphology import disk

    rng = np.random.default_rng(0)
    for radius in range(11):
        mask = rng.random((41, 57)) < 0.03
        expected = cv2.dilate(mask.astype(np.uint8), disk(radius).astype(np.uint8)).astype(bool)
        assert np.array_equal(dilate_disk(mask, radius), expected), radius
    for trial in range(12):
        blobs = [cv2.GaussianBlur(rng.random((60, 90)), (0, 0), 3) > 0.5 for _ in range(2)]
        bound_th = 0.008 if trial % 2 else 3
        expected = official.f_measure(*blobs, bound_th=bound_th)
        assert contour_accuracy(*blobs, bound_th=bound_th) == pytest.approx(expected)


def test_contour_accuracy_identical_disjoint_empty_and_within_tolerance():
    mask = square(100, 20, 20, 30)
    assert contour_accuracy(mask, mask) == 1.0
    assert contour_accuracy(mask, square(100, 60, 60, 30)) == 0.0
    assert contour_accuracy(np.zeros((10, 10)), np.zeros((10, 10))) == 1.0
    assert contour_accuracy(np.zeros((100, 100)), mask) == 0.0
    # Tolerance at 100x100 is ceil(0.008 * 141.4) = 2 px: a one-pixel shift matches every boundary pixel,
    # though the regions differ (J < 1).
    shifted = square(100, 21, 21, 30)
    assert contour_accuracy(shifted, mask) == 1.0
    assert region_similarity(shifted, mask) < 1.0


def test_contour_accuracy_vertical_edges_match_only_within_the_radius():
    truth = np.zeros((100, 100), dtype=bool)
    truth[:, :50] = True  # boundary: column 49
    prediction = np.zeros_like(truth)
    prediction[:, :60] = True  # boundary: column 59, 10 px away
    assert contour_accuracy(prediction, truth, bound_th=10) == 1.0
    assert contour_accuracy(prediction, truth, bound_th=9) == 0.0


def test_contour_accuracy_partial_match_is_hand_computed():
    truth = np.zeros((100, 100), dtype=bool)
    truth[:, :50] = True  # boundary: column 49, rows 0..99 -> 100 px
    prediction = np.zeros_like(truth)
    prediction[:50, :50] = True
    prediction[50:, :60] = True
    # Predicted boundary: column 49 rows 0..49 (50 px), row 49 columns 50..59 (10 px, below them is
    # foreground), column 59 rows 50..99 (50 px): 110 px. With a 1-px tolerance (a plus-shaped disk) the
    # matches are column 49 rows 0..49 plus (49, 50): 51 of 110. Truth pixels near a predicted one:
    # rows 0..49 plus (50, 49), whose upper neighbour (49, 49) is predicted: 51 of 100.
    precision, recall = 51 / 110, 51 / 100
    expected = 2 * precision * recall / (precision + recall)
    assert contour_accuracy(prediction, truth, bound_th=1) == pytest.approx(expected)


def test_per_frame_statistics_mean_recall_decay():
    stats = per_frame_statistics([1.0, 1.0, 0.4, 0.4, 0.2, 0.2, 0.0, 0.0])
    assert stats["mean"] == pytest.approx(0.4)
    assert stats["recall"] == pytest.approx(2 / 8)
    # The toolkit's quarters share their edge frames: bin edges round(linspace(1, 8, 5)) - 1 = 0, 2, 4, 5, 7,
    # first quarter frames 0..2 (mean 0.8), last quarter frames 5..7 (mean 0.2 / 3).
    assert stats["decay"] == pytest.approx(0.8 - 0.2 / 3)


# --- propagation -----------------------------------------------------------------------------------------------


def test_propagate_labels_follows_feature_identity():
    # Two source patches with orthogonal features labelled 0 and 1; target patches swap places.
    sources = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    labels = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])  # (sources, labels, patches)
    target = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    soft = propagate_labels(target, sources, labels, temperature=0.1, topk=1)
    assert torch.allclose(soft, torch.tensor([[0.0, 1.0], [1.0, 0.0]]))


def test_propagate_labels_weights_are_softmax_of_topk_with_temperature():
    sources = torch.tensor([[[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]]])
    labels = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]]])
    target = torch.tensor([[1.0, 0.0]])
    soft = propagate_labels(target, sources, labels, temperature=0.5, topk=2)
    # Top-2 sources: cosine 1.0 (label 0) and 0.6 (label 1); the third (cosine 0) is dropped.
    weight_0, weight_1 = np.exp(1.0 / 0.5), np.exp(0.6 / 0.5)
    assert soft[0, 0].item() == pytest.approx(weight_0 / (weight_0 + weight_1), rel=1e-5)
    assert soft[1, 0].item() == pytest.approx(weight_1 / (weight_0 + weight_1), rel=1e-5)


def test_neighbourhood_restricts_sources_to_nearby_patches():
    mask = neighbourhood_mask(3, 4, 1)
    assert mask.shape == (12, 12)
    assert mask[0].sum() == 4  # corner: itself, right, below, below-right
    assert mask[5].sum() == 9  # interior (row 1, col 1)
    # Identical features everywhere: with radius 0 each patch copies the label at its own position.
    features = torch.ones(1, 12, 4)
    labels = torch.arange(12).remainder(2)
    soft = propagate_labels(
        torch.ones(12, 4), features, F_one_hot(labels, 2)[None], topk=5, neighbourhood=neighbourhood_mask(3, 4, 0)
    )
    assert torch.equal(soft.argmax(dim=0), labels)


def F_one_hot(labels: torch.Tensor, num: int) -> torch.Tensor:
    return torch.nn.functional.one_hot(labels.flatten(), num).T.float()


def moving_object_labels(frames: int, rows: int, cols: int) -> list[torch.Tensor]:
    """Label maps on a patch grid: a 2x2 object (label 1) moving one patch right per frame."""
    maps = []
    for t in range(frames):
        labels = torch.zeros(rows, cols, dtype=torch.long)
        labels[1:3, 1 + t : 3 + t] = 1
        maps.append(labels)
    return maps


def test_segment_sequence_with_perfect_features_reproduces_the_moving_object():
    maps = moving_object_labels(6, 5, 10)
    # Frame-independent code: the one-hot object identity of each patch.
    features = [torch.nn.functional.one_hot(m, 2).float() for m in maps]
    predicted = list(segment_sequence(features, maps[0], 2, PropagationConfig(neighbourhood=3)))
    assert len(predicted) == 5
    for soft, truth in zip(predicted, maps[1:], strict=True):
        assert torch.equal(soft.argmax(dim=0), truth)


def corner_pixels(labels: np.ndarray) -> np.ndarray:
    """Pixels within 2 px (row and column) of a corner of some label's bounding box."""
    near = np.zeros(labels.shape, dtype=bool)
    for label in np.unique(labels[labels > 0]):
        rows, cols = np.nonzero(labels == label)
        for row in (rows.min(), rows.max()):
            for col in (cols.min(), cols.max()):
                near[max(row - 2, 0) : row + 3, max(col - 2, 0) : col + 3] = True
    return near


def test_soft_labels_to_mask_keeps_patch_aligned_edges_and_rounds_corners():
    labels = torch.zeros(4, 6, dtype=torch.long)
    labels[1:3, 2:5] = 1
    mask = soft_labels_to_mask(F_one_hot(labels, 2).reshape(2, 4, 6), patch_size=8, output_size=(32, 48))
    expected = np.kron(labels.numpy(), np.ones((8, 8), dtype=np.uint8))
    # Bilinear upsampling (as DINO) keeps straight edges where they are; at a corner the object's weight is
    # 0.5625^2 < 0.5 in the outermost pixels, so each corner loses the 6 pixels of a small triangle.
    wrong = mask != expected
    assert not (wrong & ~corner_pixels(expected)).any()
    assert wrong.sum() == 4 * 6


# --- the whole pipeline on a synthetic DAVIS folder ------------------------------------------------------------

COLOURS = {0: (0, 0, 255), 1: (255, 0, 0), 2: (0, 255, 0)}  # background blue, object 1 red, object 2 green


def write_synthetic_davis(root: Path, name: str = "squares", frames: int = 6) -> list[np.ndarray]:
    """A 64x96 sequence: a red square moving right and a green one moving down, on patch-aligned positions."""
    truth = []
    for t in range(frames):
        labels = np.zeros((64, 96), dtype=np.uint8)
        labels[8:24, 8 + 8 * t : 24 + 8 * t] = 1
        labels[8 + 8 * t : 24 + 8 * t, 72:88] = 2
        truth.append(labels)
        rgb = np.zeros((64, 96, 3), dtype=np.uint8)
        for label, colour in COLOURS.items():
            rgb[labels == label] = colour
        frame_dir = root / "JPEGImages" / "480p" / name
        frame_dir.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rgb).save(frame_dir / f"{t:05d}.jpg", quality=98)
        mask = Image.fromarray(labels, mode="P")
        mask.putpalette(davis_palette())
        (root / "Annotations" / "480p" / name).mkdir(parents=True, exist_ok=True)
        mask.save(root / "Annotations" / "480p" / name / f"{t:05d}.png")
    (root / "ImageSets" / "2017").mkdir(parents=True, exist_ok=True)
    (root / "ImageSets" / "2017" / "val.txt").write_text(f"{name}\n")
    return truth


def colour_features(frame: torch.Tensor, patch: int = 8) -> torch.Tensor:
    """A 'perfect' encoder for the synthetic sequence: each patch's mean colour (object identity)."""
    pooled = torch.nn.functional.avg_pool2d(frame[None], patch)[0]
    return pooled.permute(1, 2, 0)


def test_run_davis_with_perfect_features_reproduces_the_masks_as_palette_pngs(tmp_path):
    root, out = tmp_path / "davis", tmp_path / "out"
    truth = write_synthetic_davis(root)
    config = PropagationConfig(short_side=64, long_side_multiple=8)
    summary = run_davis(root, out, colour_features, patch_size=8, config=config)
    for t, labels in enumerate(truth):
        predicted, palette = read_mask(out / "squares" / f"{t:05d}.png")
        assert palette[:9] == davis_palette()[:9]
        # Propagation is exact on the patch grid; only the upsampling rounds the corners (see above).
        wrong = predicted != labels
        assert not (wrong & ~corner_pixels(labels)).any(), f"frame {t}"
        # 6 pixels per corner; in the last frame object 2 touches the bottom border, where its corners stay square.
        assert wrong.sum() == {0: 0, 5: 6 * 6}.get(t, 8 * 6)
    # Each 16x16 object loses 4 corners x 6 pixels in every scored frame: J = 232 / 256 exactly.
    assert summary["J_mean"] == pytest.approx(232 / 256)
    assert summary["J_recall"] == 1.0 and summary["J_decay"] == pytest.approx(0.0)
    assert summary["F_mean"] > 0.8
    assert summary["objects"] == 2
    with open(out / "per_object.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [(row["sequence"], row["object"]) for row in rows] == [("squares", "1"), ("squares", "2")]
    assert int(rows[0]["frames"]) == 4  # 6 frames minus the first and the last
    assert json.loads((out / "summary.json").read_text())["JF_mean"] == pytest.approx(summary["JF_mean"])


def test_run_davis_with_blind_features_scores_below_one(tmp_path):
    root, out = tmp_path / "davis", tmp_path / "out"
    write_synthetic_davis(root)

    def blind(frame: torch.Tensor) -> torch.Tensor:  # same feature everywhere: labels cannot follow motion
        return torch.ones(frame.shape[1] // 8, frame.shape[2] // 8, 4)

    summary = run_davis(
        root, out, blind, patch_size=8, config=PropagationConfig(short_side=64, long_side_multiple=8, neighbourhood=0)
    )
    assert summary["J_mean"] < 0.7


def test_run_davis_for_a_tiny_vit_from_safetensors_writes_every_frame(tmp_path):
    import timm
    from safetensors.torch import save_file

    root, out = tmp_path / "davis", tmp_path / "out"
    write_synthetic_davis(root, frames=4)
    overrides = {"embed_dim": 32, "depth": 2, "num_heads": 2, "patch_size": 8}
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0, **overrides)
    weights = tmp_path / "vit.safetensors"
    metadata = {"timm_name": "vit_tiny_patch16_224", "kwargs": json.dumps(overrides)}
    save_file({name: tensor.contiguous() for name, tensor in model.state_dict().items()}, str(weights), metadata)
    config = PropagationConfig(short_side=64, long_side_multiple=8)
    summary = run_davis_for_encoder(weights, root, out, device="cpu", config=config)
    assert 0.0 <= summary["JF_mean"] <= 1.0
    assert len(summary["weights_sha256_16"]) == 16
    assert sorted(p.name for p in (out / "squares").iterdir()) == [f"{t:05d}.png" for t in range(4)]


def test_model_input_size_follows_dino_read_frame():
    assert model_input_size(480, 854) == (480, 832)  # DAVIS 480p: the long side to a multiple of 64
    assert model_input_size(854, 480) == (832, 480)
    assert model_input_size(1080, 1920, 480) == (480, 853 // 64 * 64)
    assert model_input_size(64, 96, 64, long_side_multiple=8) == (64, 96)
    assert model_input_size(500, 700, 500) == (500, 640)  # the short side is not rounded to the patch size
    for height, width, short in ((480, 854, 480), (854, 480, 480), (1080, 1920, 480), (333, 517, 300)):
        # DINO's read_frame sizes (th, tw), its arithmetic copied: cv2 is only asked for the image's shape.
        if height > width:
            tw, th = short, int((((short * height) / width) // 64) * 64)
        else:
            th, tw = short, int((((short * width) / height) // 64) * 64)
        assert model_input_size(height, width, short) == (th, tw)
    assert model_input_size(40, 40, 40) == (40, 64)  # DINO would resize to 0 px: one multiple at least


def write_frame(path: Path, height: int, width: int, seed: int) -> Path:
    """A textured JPEG: smooth random colours plus noise, so bilinear resizing has something to get wrong."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (height // 16 + 1, width // 16 + 1, 3), dtype=np.uint8)
    smooth = np.asarray(Image.fromarray(coarse).resize((width, height), Image.BICUBIC)).astype(np.int16)
    pixels = np.clip(smooth + rng.integers(-40, 41, smooth.shape), 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, quality=90)
    return path


def test_frames_are_read_as_dino_read_frame(tmp_path):
    for height, width in ((480, 854), (500, 333)):
        path = write_frame(tmp_path / f"{height}x{width}.jpg", height, width, seed=height)
        expected, ori_h, ori_w = official.read_frame(path, (480,))
        frame = load_frame(path, model_input_size(ori_h, ori_w, 480))
        assert frame.shape == expected.shape
        assert torch.equal(frame, expected) or (frame - expected).abs().max() < 1e-6


def test_patch_features_at_480_px_equal_dino_extract_feature(tmp_path):
    """A ViT trained at 224 px meets 832 x 480 frames: position table, tokens and features as DINO's."""
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(0)
    overrides = {"embed_dim": 32, "depth": 2, "num_heads": 2}  # patch 16: a 30 x 52 grid from a 14 x 14 table
    timm_model = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0, **overrides).eval()
    weights = tmp_path / "vit.safetensors"
    metadata = {"timm_name": "vit_tiny_patch16_224", "kwargs": json.dumps(overrides)}
    save_file({name: tensor.contiguous() for name, tensor in timm_model.state_dict().items()}, str(weights), metadata)
    path = write_frame(tmp_path / "frame.jpg", 480, 854, seed=0)
    frame, _, _ = official.read_frame(path, (480,))
    with torch.no_grad():
        expected = official.extract_feature(official.dino_vit_from_timm(timm_model), frame)
    features = patch_features(load_encoder(None, weights), load_frame(path, (480, 832))[None])[0]
    assert features.shape == (30, 52, 32)
    assert torch.allclose(features.reshape(-1, 32), expected, atol=1e-5)


VOID = 255


def write_textured_davis(root: Path, frames: int, height: int, width: int) -> None:
    """A DAVIS folder of one sequence, "walk": textured frames panning right with two objects moving over them,
    and a void (255) strip in the first annotation."""
    name = "walk"
    for kind in ("JPEGImages", "Annotations"):
        (root / kind / "480p" / name).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    background = rng.integers(0, 256, (height, width + 8 * frames, 3), dtype=np.uint8)
    for t in range(frames):
        rgb = background[:, 4 * t : 4 * t + width].copy()
        labels = np.zeros((height, width), dtype=np.uint8)
        labels[20:60, 30 + 6 * t : 70 + 6 * t] = 1
        labels[height - 50 : height - 10, width - 60 - 5 * t : width - 20 - 5 * t] = 2
        rgb[labels == 1] = (220, 30, 30)
        rgb[labels == 2] = (30, 200, 30)
        if t == 0:
            labels[18:20, 30:70] = VOID  # a void strip above object 1, as DAVIS marks unclear edges
        Image.fromarray(rgb).save(root / "JPEGImages" / "480p" / name / f"{t:05d}.jpg", quality=90)
        mask = Image.fromarray(labels, mode="P")
        mask.putpalette(davis_palette())
        mask.save(root / "Annotations" / "480p" / name / f"{t:05d}.png")
    (root / "ImageSets" / "2017").mkdir(parents=True, exist_ok=True)
    (root / "ImageSets" / "2017" / "val.txt").write_text(f"{name}\n")


def test_propagation_writes_what_dino_eval_video_tracking_davis_writes(tmp_path):
    """The whole of DINO's pipeline (read_frame, read_seg, extract_feature, label_propagation, norm_mask, the
    upsampling and the resize back) on a tiny ViT at a 120-px short side, against wtours' PNGs."""
    import timm

    from wtours.trainers.evaluation.davis import DavisLayout, vit_patch_feature_fn
    from wtours.trainers.training.backbones import with_pos_embed_resize

    root = tmp_path / "davis"
    write_textured_davis(root, frames=5, height=120, width=200)
    torch.manual_seed(0)
    overrides = {"embed_dim": 32, "depth": 2, "num_heads": 2, "patch_size": 8}
    timm_model = timm.create_model(
        "vit_tiny_patch16_224", pretrained=False, num_classes=0, dynamic_img_size=True, **overrides
    ).eval()
    model = with_pos_embed_resize(timm_model, "dino").eval()
    config = PropagationConfig(short_side=120, n_last_frames=2, neighbourhood=3, topk=5)
    layout = DavisLayout(root)
    predict_sequence(layout, "walk", tmp_path / "out", vit_patch_feature_fn(model, torch.device("cpu")), 8, config)

    frames = layout.frames("walk")
    args = SimpleNamespace(n_last_frames=2, size_mask_neighborhood=3, topk=5, patch_size=8)
    first_seg, seg_ori = official.read_seg(layout.annotation("walk", frames[0]), 8, (120,))
    expected = official.eval_video_tracking_davis(
        args, official.dino_vit_from_timm(timm_model), frames, first_seg, (120,)
    )
    for frame, reference in zip(frames[1:], expected, strict=True):
        predicted, _ = read_mask(tmp_path / "out" / "walk" / f"{frame.stem}.png")
        assert predicted.shape == reference.shape
        assert (predicted != reference).sum() == 0, frame.name
    assert np.array_equal(read_mask(tmp_path / "out" / "walk" / "00000.png")[0], seg_ori)


def test_scores_treat_void_as_background_as_the_davis_toolkit(tmp_path):
    """Annotations with 255 inside the predicted object: the toolkit's semi-supervised J, F and J&F."""
    root, out = tmp_path / "davis", tmp_path / "out"
    truth = write_synthetic_davis(root)
    annotations = sorted((root / "Annotations" / "480p" / "squares").glob("*.png"))
    for path, labels in zip(annotations, truth, strict=True):  # the object's top two rows become void
        labels = labels.copy()
        rows = np.nonzero((labels == 1).any(axis=1))[0]
        labels[rows[:2]] = np.where(labels[rows[:2]] == 1, VOID, labels[rows[:2]])
        mask = Image.fromarray(labels, mode="P")
        mask.putpalette(davis_palette())
        mask.save(path)
    config = PropagationConfig(short_side=64, long_side_multiple=8)
    summary = run_davis(root, out, colour_features, patch_size=8, config=config)
    results = sorted((out / "squares").glob("*.png"))[1:-1]
    expected = official.evaluate_semisupervised(annotations, results)
    for key in ("J_mean", "F_mean", "JF_mean"):
        assert summary[key] == pytest.approx(expected[key], abs=1e-12), key
    assert summary["config"]["void"] == "background"
    ignoring = run_davis(root, tmp_path / "ignore", colour_features, 8, config=replace(config, void="ignore"))
    assert ignoring["J_mean"] > summary["J_mean"] + 0.01  # dropping void pixels forgives the predicted strip
    with pytest.raises(WtoursError, match="--void"):
        run_davis(root, out, colour_features, 8, config=replace(config, void="drop"))


def test_bad_davis_folders_are_one_line_errors(tmp_path):
    with pytest.raises(WtoursError, match="ImageSets"):
        run_davis(tmp_path, tmp_path / "out", colour_features, 8)
    root = tmp_path / "davis"
    write_synthetic_davis(root)
    with pytest.raises(WtoursError, match="not in val.txt"):
        run_davis(root, tmp_path / "out", colour_features, 8, sequences=["bear"])
    (root / "Annotations" / "480p" / "squares" / "00000.png").unlink()
    with pytest.raises(WtoursError, match="first-frame mask missing"):
        run_davis(root, tmp_path / "out", colour_features, 8)
