"""Batched augmentation: crop boxes follow the scale rule, and each photometric step does what it says."""

from __future__ import annotations

import torch

from wtours.trainers.views import (
    ViewSpec,
    crop_resize,
    gaussian_blur,
    multi_crop,
    random_resized_crop_boxes,
    rotate_hue,
)


def test_crop_boxes_stay_inside_and_cover_the_scale_range() -> None:
    generator = torch.Generator().manual_seed(0)
    boxes = random_resized_crop_boxes(2000, 90, 160, (0.05, 0.4), generator)
    width, height = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    assert torch.all(boxes[:, :2] >= 0) and torch.all(boxes[:, 2] <= 160) and torch.all(boxes[:, 3] <= 90)
    area = width * height / (90 * 160)
    assert area.min() > 0.04 and area.max() < 0.42  # rounding to whole pixels only
    aspect = width / height
    assert aspect.min() > 0.7 and aspect.max() < 1.4


def test_crop_resize_cuts_the_right_region() -> None:
    images = torch.zeros(1, 3, 40, 40)
    images[:, :, 10:20, 20:30] = 1.0  # a white square
    inside = crop_resize(images, torch.tensor([[20.0, 10.0, 30.0, 20.0]]), 8)
    outside = crop_resize(images, torch.tensor([[0.0, 25.0, 15.0, 40.0]]), 8)
    # Bilinear samples near the crop's edge mix in the neighbouring pixels, as resampling does.
    assert torch.all(inside[..., 1:-1, 1:-1] == 1) and inside.min() > 0.8
    assert torch.all(outside == 0)


def test_blur_keeps_flat_images_and_smooths_edges() -> None:
    flat = torch.full((2, 3, 16, 16), 0.3)
    assert torch.allclose(gaussian_blur(flat, torch.tensor([0.5, 2.0])), flat, atol=1e-6)
    edge = torch.zeros(1, 3, 16, 16)
    edge[..., 8:] = 1.0
    blurred = gaussian_blur(edge, torch.tensor([1.5]))
    assert 0.0 < blurred[0, 0, 0, 7] < 0.5 < blurred[0, 0, 0, 8] < 1.0


def test_hue_rotation_keeps_grey_and_a_full_turn_is_identity() -> None:
    grey = torch.full((1, 3, 4, 4), 0.5)
    assert torch.allclose(rotate_hue(grey, torch.tensor([0.3])), grey, atol=1e-5)
    colour = torch.rand(2, 3, 4, 4, generator=torch.Generator().manual_seed(1)) * 0.5 + 0.25
    assert torch.allclose(rotate_hue(colour, torch.tensor([1.0, 0.0])), colour, atol=1e-4)


def test_multi_crop_shapes_and_reproducibility() -> None:
    generator = torch.Generator().manual_seed(2)
    frames = torch.randint(0, 256, (3, 3, 72, 128), dtype=torch.uint8, generator=generator)
    specs = [ViewSpec(48, (0.4, 1.0), blur_p=1.0), ViewSpec(24, (0.05, 0.4), solarize_p=1.0)]
    first = multi_crop(frames, specs, torch.Generator().manual_seed(7))
    again = multi_crop(frames, specs, torch.Generator().manual_seed(7))
    other = multi_crop(frames, specs, torch.Generator().manual_seed(8))
    assert [tuple(v.shape) for v in first] == [(3, 3, 48, 48), (3, 3, 24, 24)]
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not torch.equal(first[0], other[0])
