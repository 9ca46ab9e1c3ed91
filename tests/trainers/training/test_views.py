"""Batched augmentation equals the official torchvision pipelines image by image, for the same random draws.

The references are torchvision's own functions (``torchvision.transforms.v2.functional``), applied one image
at a time with the parameters our batched draw produced; DINO's pipeline is the same steps on PIL images,
which a last test holds within PIL's uint8 rounding.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torchvision.transforms.v2.functional as TF
from PIL import Image, ImageFilter, ImageOps
from torchvision.transforms import InterpolationMode

from wtours.trainers.training.views import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ViewSpec,
    apply_view,
    draw_view_params,
    gaussian_blur,
    random_resized_crop_boxes,
    resized_crop,
)

JITTER_STEPS = (TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, TF.adjust_hue)
MODES = {
    "bicubic_aa": (InterpolationMode.BICUBIC, True),  # DINO's RandomResizedCrop(..., BICUBIC)
    "bilinear": (InterpolationMode.BILINEAR, False),  # the DoRA release's RandomResizedCropVideo
    "bilinear_aa": (InterpolationMode.BILINEAR, True),  # VideoMAE's PIL resize
}


def torchvision_view(image: torch.Tensor, params, i: int, spec: ViewSpec) -> torch.Tensor:
    """One view of one image through torchvision's functions, with the draws of row ``i`` of ``params``."""
    top, left, height, width = params.boxes[i].tolist()
    interpolation, antialias = MODES[spec.resample]
    x = TF.resized_crop(image, top, left, height, width, [spec.size, spec.size], interpolation, antialias=antialias)
    x = x.clamp(0, 1)
    draws = params.photometric
    if draws.flip[i]:
        x = TF.horizontal_flip(x)
    if draws.jitter[i]:
        for step in draws.jitter_order[i].tolist():  # ColorJitter's fn_idx order
            x = JITTER_STEPS[step](x, float(draws.jitter_factors[i, step]))
    if draws.grayscale[i]:
        x = TF.rgb_to_grayscale(x, num_output_channels=3)
    if draws.blur[i]:
        sigma = float(draws.sigma[i])
        kernel = 2 * math.ceil(3 * sigma) + 1
        x = TF.gaussian_blur(x, [kernel, kernel], [sigma, sigma])
    if draws.solarize[i]:
        x = TF.solarize(x, 0.5)
    return TF.normalize(x, list(IMAGENET_MEAN), list(IMAGENET_STD))


@pytest.mark.parametrize("resample", ["bicubic_aa", "bilinear", "bilinear_aa"])
@pytest.mark.parametrize("size", [24, 64, 150])  # down-, near- and up-sampling
def test_resized_crop_equals_torchvision(resample: str, size: int) -> None:
    generator = torch.Generator().manual_seed(size)
    images = torch.rand(8, 3, 90, 160, generator=generator)
    boxes = random_resized_crop_boxes(8, 90, 160, (0.05, 1.0), generator)
    interpolation, antialias = MODES[resample]
    reference = torch.stack(
        [
            TF.resized_crop(images[i], *boxes[i].tolist(), [size, size], interpolation, antialias=antialias)
            for i in range(8)
        ]
    ).clamp(0, 1)
    assert (resized_crop(images, boxes, size, resample) - reference).abs().max() < 2e-5


@pytest.mark.parametrize(
    "spec",
    [
        ViewSpec(48, (0.4, 1.0), blur_p=1.0),  # DINO global 1
        ViewSpec(48, (0.4, 1.0), blur_p=0.1, solarize_p=0.2),  # DINO global 2
        ViewSpec(24, (0.05, 0.4), blur_p=0.5),  # DINO local
        ViewSpec(32, (0.05, 0.4), flip_p=0.0, blur_p=0.5, solarize_p=0.5),  # every step exercised
    ],
)
def test_views_equal_torchvision_for_the_same_draws(spec: ViewSpec) -> None:
    generator = torch.Generator().manual_seed(3)
    images = torch.rand(24, 3, 72, 96, generator=generator)
    params = draw_view_params(24, 72, 96, spec, generator)
    ours = apply_view(images, params, spec)
    reference = torch.stack([torchvision_view(images[i], params, i, spec) for i in range(24)])
    assert (ours - reference).abs().max() < 5e-5


def test_draws_have_the_official_rates_and_ranges() -> None:
    spec = ViewSpec(32, (0.05, 0.4), blur_p=0.5, solarize_p=0.2)
    draws = draw_view_params(20000, 90, 160, spec, torch.Generator().manual_seed(0)).photometric
    for flags, p in ((draws.flip, 0.5), (draws.jitter, 0.8), (draws.grayscale, 0.2), (draws.blur, 0.5)):
        assert float(flags.double().mean()) == pytest.approx(p, abs=0.015)
    assert float(draws.solarize.double().mean()) == pytest.approx(0.2, abs=0.015)
    factors = draws.jitter_factors
    for column, (low, high) in enumerate([(0.6, 1.4), (0.6, 1.4), (0.8, 1.2), (-0.1, 0.1)]):
        values = factors[:, column]
        assert low <= float(values.min()) < low + 0.01 and high - 0.01 < float(values.max()) <= high
    assert float(draws.sigma.min()) >= 0.1 and float(draws.sigma.max()) <= 2.0
    # A uniform random order of the four jitter steps (torch.randperm(4) in ColorJitter): all 24 appear.
    orders = {tuple(row) for row in draws.jitter_order.tolist()}
    assert len(orders) == 24 and all(sorted(order) == [0, 1, 2, 3] for order in orders)


def test_crop_boxes_follow_random_resized_crops_rule() -> None:
    generator = torch.Generator().manual_seed(0)
    boxes = random_resized_crop_boxes(4000, 90, 160, (0.05, 0.4), generator).double()
    top, left, height, width = boxes.unbind(1)
    assert torch.all(top >= 0) and torch.all(left >= 0)
    assert torch.all(top + height <= 90) and torch.all(left + width <= 160)
    area = height * width / (90 * 160)
    assert area.min() > 0.04 and area.max() < 0.42  # rounding to whole pixels only
    aspect = width / height
    assert aspect.min() > 0.7 and aspect.max() < 1.4
    # An image too narrow for any draw falls back to the central crop clamped to the aspect range.
    fallback = random_resized_crop_boxes(3, 100, 10, (0.9, 1.0), generator)
    assert fallback.tolist() == [[43, 0, 13, 10]] * 3


def test_blur_kernel_is_each_images_own() -> None:
    generator = torch.Generator().manual_seed(1)
    images = torch.rand(3, 3, 40, 40, generator=generator)
    sigma = torch.tensor([0.1, 0.7, 2.0], dtype=torch.float64)
    ours = gaussian_blur(images, sigma)
    for i, s in enumerate(sigma.tolist()):
        kernel = 2 * math.ceil(3 * s) + 1
        assert (ours[i] - TF.gaussian_blur(images[i], [kernel, kernel], [s, s])).abs().max() < 1e-5


def test_dino_view_is_within_pil_rounding_of_the_official_pil_pipeline() -> None:
    """DINO's transforms on a PIL image (RandomResizedCrop bicubic, flip, ColorJitter, grayscale, solarize) with
    our draws: every step rounds to uint8 in PIL, so agreement is to a couple of grey levels, not exact."""
    from wtours.sample.photos import load_photo

    photo = load_photo("grace_hopper").convert("RGB").resize((160, 188))
    image = TF.to_image(photo).float().div(255)
    spec = ViewSpec(64, (0.4, 1.0), blur_p=0.0, solarize_p=0.5)
    params = draw_view_params(12, 188, 160, spec, torch.Generator().manual_seed(5))
    ours = apply_view(image.expand(12, -1, -1, -1), params, spec)
    differences = []
    for i in range(12):
        top, left, height, width = params.boxes[i].tolist()
        # torchvision's resized_crop on a PIL image: crop, then resize (no pixels from outside the box)
        pil = photo.crop((left, top, left + width, top + height)).resize((64, 64), Image.BICUBIC)
        draws = params.photometric
        if draws.flip[i]:
            pil = pil.transpose(Image.FLIP_LEFT_RIGHT)
        if draws.jitter[i]:
            for step in draws.jitter_order[i].tolist():
                pil = JITTER_STEPS[step](pil, float(draws.jitter_factors[i, step]))
        if draws.grayscale[i]:
            pil = pil.convert("L").convert("RGB")
        if draws.solarize[i]:
            pil = ImageOps.solarize(pil)
        reference = TF.normalize(TF.to_image(pil).float().div(255), list(IMAGENET_MEAN), list(IMAGENET_STD))
        difference = ((ours[i] - reference) * torch.tensor(IMAGENET_STD).view(3, 1, 1)).abs() * 255
        differences.append(difference)
    # Each PIL step rounds to whole grey levels (about 0.4 level on average per step, up to 5 steps).
    difference = torch.stack(differences)
    assert float(difference.mean()) < 1.5 and float(np.percentile(difference.numpy(), 99)) < 8


def test_pil_blur_is_close_to_the_gaussian_of_the_same_radius() -> None:
    """DINO blurs with PIL's GaussianBlur(radius=sigma) (a box-blur approximation); ours is the exact Gaussian."""
    from wtours.sample.photos import load_photo

    photo = load_photo("grace_hopper").convert("RGB").resize((96, 112))
    image = TF.to_image(photo).float().div(255).unsqueeze(0)
    for sigma in (0.5, 1.0, 2.0):
        pil = TF.to_image(photo.filter(ImageFilter.GaussianBlur(radius=sigma))).float().div(255)
        ours = gaussian_blur(image, torch.tensor([sigma], dtype=torch.float64))[0]
        assert float((ours - pil)[:, 8:-8, 8:-8].abs().mean() * 255) < 1.5
