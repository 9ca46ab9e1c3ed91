"""DAVIS label propagation and the J / F measures, on constructed masks and a synthetic DAVIS folder."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from wtours.errors import WtoursError
from wtours.trainers.eval_davis import (
    PropagationConfig,
    boundary_map,
    boundary_tolerance,
    contour_accuracy,
    davis_palette,
    dilate_disk,
    model_input_size,
    neighbourhood_mask,
    per_frame_statistics,
    propagate_labels,
    read_mask,
    region_similarity,
    run_davis,
    run_davis_for_encoder,
    segment_sequence,
    soft_labels_to_mask,
)


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


def test_model_input_size_follows_dino():
    assert model_input_size(480, 854, 480, 16) == (480, 832)  # DAVIS 480p: the long side to a multiple of 64
    assert model_input_size(854, 480, 480, 16) == (832, 480)
    assert model_input_size(1080, 1920, 480, 8) == (480, 832)
    assert model_input_size(64, 96, 64, 8, long_side_multiple=8) == (64, 96)
    with pytest.raises(WtoursError):
        model_input_size(480, 854, 480, 16, long_side_multiple=24)


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
