"""Batched image augmentation on the training device (GPU when there is one).

The loader only decodes frames (uint8); cropping, resizing, flips, colour jitter, blur and solarization
run here on whole batches, so that a few CPU workers can feed a fast GPU. Every random draw comes from
one ``torch.Generator`` that the engine seeds per step, which keeps a resumed run bit-exact.

Pure functions on float images in [0, 1], shape [N, 3, H, W]; `normalize` comes last.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
LUMA = (0.299, 0.587, 0.114)


@dataclass(frozen=True)
class ViewSpec:
    """One kind of view: output size, crop area range, and the chances of the photometric changes."""

    size: int
    scale: tuple[float, float]
    blur_p: float = 0.0
    solarize_p: float = 0.0
    flip_p: float = 0.5
    jitter_p: float = 0.8
    jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.2, 0.1)  # brightness, contrast, saturation, hue
    grayscale_p: float = 0.2


def _uniform(n: int, low: float, high: float, generator: torch.Generator) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=generator, dtype=torch.float64)


def random_resized_crop_boxes(
    n: int,
    height: int,
    width: int,
    scale: tuple[float, float],
    generator: torch.Generator,
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    attempts: int = 10,
) -> torch.Tensor:
    """torchvision's RandomResizedCrop box rule, for ``n`` images at once: [n, 4] as (x0, y0, x1, y1).

    Up to ``attempts`` (area, aspect) draws per image; the first that fits wins; else the central crop.
    """
    area = height * width
    target_area = area * _uniform(n * attempts, scale[0], scale[1], generator).view(n, attempts)
    log_ratio = _uniform(n * attempts, math.log(ratio[0]), math.log(ratio[1]), generator).view(n, attempts)
    aspect = torch.exp(log_ratio)
    crop_w = torch.sqrt(target_area * aspect).round()
    crop_h = torch.sqrt(target_area / aspect).round()
    fits = (crop_w > 0) & (crop_h > 0) & (crop_w <= width) & (crop_h <= height)
    first_fit = torch.where(fits.any(dim=1), fits.float().argmax(dim=1), -1)
    # Central fallback, clamped to the aspect range (as torchvision does).
    image_ratio = width / height
    if image_ratio < ratio[0]:
        fallback_w, fallback_h = width, round(width / ratio[0])
    elif image_ratio > ratio[1]:
        fallback_w, fallback_h = round(height * ratio[1]), height
    else:
        fallback_w, fallback_h = width, height
    rows = torch.arange(n)
    chosen = first_fit.clamp(min=0)
    w = torch.where(
        first_fit >= 0, crop_w[rows, chosen], torch.tensor(float(fallback_w), dtype=torch.float64)
    )
    h = torch.where(
        first_fit >= 0, crop_h[rows, chosen], torch.tensor(float(fallback_h), dtype=torch.float64)
    )
    x0 = torch.floor(torch.rand(n, generator=generator, dtype=torch.float64) * (width - w + 1))
    y0 = torch.floor(torch.rand(n, generator=generator, dtype=torch.float64) * (height - h + 1))
    x0 = torch.where(first_fit >= 0, x0, (width - w) // 2)
    y0 = torch.where(first_fit >= 0, y0, (height - h) // 2)
    return torch.stack([x0, y0, x0 + w, y0 + h], dim=1).float()


def crop_resize(
    images: torch.Tensor, boxes: torch.Tensor, size: int, image_index: torch.Tensor | None = None
) -> torch.Tensor:
    """Cut ``boxes`` out of ``images`` and resample each to ``size`` x ``size`` (bilinear, one kernel call).

    ``image_index[i]`` says which image box i is cut from (default: box i from image i).
    """
    from torchvision.ops import roi_align

    if image_index is None:
        image_index = torch.arange(len(boxes))
    rois = torch.cat([image_index.to(boxes).view(-1, 1), boxes], dim=1).to(images.device, images.dtype)
    # Two samples per output pixel and axis: enough smoothing for ~2-4x down-sampling, cheap on GPU.
    return roi_align(
        images, rois, output_size=(size, size), spatial_scale=1.0, sampling_ratio=2, aligned=True
    )


def _chance(n: int, p: float, generator: torch.Generator) -> torch.Tensor:
    return torch.rand(n, generator=generator) < p


def _per_image(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return values.to(like.device, like.dtype).view(-1, 1, 1, 1)


def grayscale(images: torch.Tensor) -> torch.Tensor:
    weights = torch.tensor(LUMA, device=images.device, dtype=images.dtype).view(1, 3, 1, 1)
    return (images * weights).sum(dim=1, keepdim=True)


def color_jitter(images: torch.Tensor, spec: ViewSpec, generator: torch.Generator) -> torch.Tensor:
    """Brightness, contrast, saturation and hue changes, each factor drawn per image, applied with
    probability ``spec.jitter_p`` (fixed order, unlike torchvision's random order)."""
    n = len(images)
    brightness, contrast, saturation, hue = spec.jitter
    apply = _per_image(_chance(n, spec.jitter_p, generator).double(), images)
    b = _per_image(_uniform(n, 1 - brightness, 1 + brightness, generator), images)
    c = _per_image(_uniform(n, 1 - contrast, 1 + contrast, generator), images)
    s = _per_image(_uniform(n, 1 - saturation, 1 + saturation, generator), images)
    h = _uniform(n, -hue, hue, generator)
    out = (images * b).clamp(0, 1)
    mean_gray = grayscale(out).mean(dim=(1, 2, 3), keepdim=True)
    out = (mean_gray + c * (out - mean_gray)).clamp(0, 1)
    gray = grayscale(out)
    out = (gray + s * (out - gray)).clamp(0, 1)
    out = rotate_hue(out, h)
    return apply * out + (1 - apply) * images


def rotate_hue(images: torch.Tensor, turns: torch.Tensor) -> torch.Tensor:
    """Shift hue by ``turns`` (fraction of the colour wheel) per image: a rotation of the YIQ chroma plane,
    a cheap, differentiable stand-in for an HSV round trip."""
    to_yiq = torch.tensor(
        [[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]],
        device=images.device,
        dtype=images.dtype,
    )
    from_yiq = torch.linalg.inv(to_yiq)
    angle = (2 * math.pi * turns).to(images.device, images.dtype)
    cos, sin = torch.cos(angle), torch.sin(angle)
    n = len(images)
    rotation = torch.zeros(n, 3, 3, device=images.device, dtype=images.dtype)
    rotation[:, 0, 0] = 1
    rotation[:, 1, 1], rotation[:, 1, 2] = cos, -sin
    rotation[:, 2, 1], rotation[:, 2, 2] = sin, cos
    transform = from_yiq @ rotation @ to_yiq  # [n, 3, 3]
    out = torch.einsum("nij,njhw->nihw", transform, images)
    return out.clamp(0, 1)


def gaussian_blur(images: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian blur with one sigma per image (grouped convolution, reflect padding)."""
    n, channels, height, width = images.shape
    radius = max(1, math.ceil(3 * float(sigma.max())))
    offsets = torch.arange(-radius, radius + 1, device=images.device, dtype=images.dtype)
    sigma = sigma.to(images.device, images.dtype).view(-1, 1)
    kernel = torch.exp(-0.5 * (offsets.view(1, -1) / sigma) ** 2)
    kernel = (kernel / kernel.sum(dim=1, keepdim=True)).repeat_interleave(channels, dim=0)  # [n*c, K]
    flat = images.reshape(1, n * channels, height, width)
    flat = F.pad(flat, (radius, radius, 0, 0), mode="reflect")
    flat = F.conv2d(flat, kernel.view(n * channels, 1, 1, -1), groups=n * channels)
    flat = F.pad(flat, (0, 0, radius, radius), mode="reflect")
    flat = F.conv2d(flat, kernel.view(n * channels, 1, -1, 1), groups=n * channels)
    return flat.view(n, channels, height, width)


def normalize(images: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(IMAGENET_MEAN, device=images.device, dtype=images.dtype).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=images.device, dtype=images.dtype).view(1, 3, 1, 1)
    return (images - mean) / std


def photometric(views: torch.Tensor, spec: ViewSpec, generator: torch.Generator) -> torch.Tensor:
    """Flip, colour jitter, grayscale, blur, solarize — each decided per view — then normalise."""
    n = len(views)
    flip = _chance(n, spec.flip_p, generator).to(views.device)
    views = torch.where(flip.view(-1, 1, 1, 1), views.flip(-1), views)
    views = color_jitter(views, spec, generator)
    to_gray = _chance(n, spec.grayscale_p, generator).to(views.device).view(-1, 1, 1, 1)
    views = torch.where(to_gray, grayscale(views).expand_as(views), views)
    blur = _chance(n, spec.blur_p, generator)
    sigma = _uniform(n, 0.1, 2.0, generator)
    if blur.any():
        chosen = blur.nonzero().squeeze(1).to(views.device)
        views = views.index_copy(0, chosen, gaussian_blur(views[chosen], sigma[blur]))
    solarize = _chance(n, spec.solarize_p, generator).to(views.device).view(-1, 1, 1, 1)
    views = torch.where(solarize & (views >= 0.5), 1 - views, views)
    return normalize(views)


def multi_crop(
    images_uint8: torch.Tensor, specs: list[ViewSpec], generator: torch.Generator
) -> list[torch.Tensor]:
    """One augmented view per spec for each image: returns ``len(specs)`` tensors [N, 3, size, size]."""
    images = images_uint8.float().div_(255)
    n, _, height, width = images.shape
    views = []
    for spec in specs:
        boxes = random_resized_crop_boxes(n, height, width, spec.scale, generator)
        views.append(photometric(crop_resize(images, boxes, spec.size), spec, generator))
    return views
