"""Batched image augmentation on the training device, equal to the official torchvision pipelines.

The loader only decodes frames (uint8); crops, flips, colour jitter, grayscale, blur and solarization run
here on whole batches, so that a few CPU workers can feed a fast GPU. Each kind of view is a `ViewSpec`
(DINO's three, DoRA's two, VideoMAE's multi-scale crop). A step first draws every random parameter of every
view (`draw_view_params`, from the generator the engine seeds per step, so a resumed run is bit-exact), then
applies them (`apply_view`). For the same parameters, the result equals what torchvision computes image by
image (`torchvision.transforms.v2.functional`, on float tensors; `tests/trainers/test_views.py` holds each
step against it):

- crops: ``resized_crop`` — bicubic with antialias as DINO's ``RandomResizedCrop(..., BICUBIC)`` (the same
  kernel as PIL's), bilinear without antialias as the DoRA release's video crops (``_transforms_video``), or
  bilinear with antialias as VideoMAE's PIL resize; all computed as two batched matrix products;
- ``ColorJitter(0.4, 0.4, 0.2, 0.1)`` in a random order per image, as torchvision's (HSV hue shift);
- ``rgb_to_grayscale`` (0.2989, 0.587, 0.114), ``gaussian_blur`` (sigma drawn in [0.1, 2.0], kernel of
  2 * ceil(3 sigma) + 1 taps, reflect padding) and ``solarize`` (threshold 0.5);
- the ImageNet normalisation (timm's constants).

The official pipelines run the same steps on PIL images (uint8 at every step; PIL's box-approximated
Gaussian blur): those agree with these float results to about 1/255 per pixel, not exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

IMAGENET_MEAN = IMAGENET_DEFAULT_MEAN
IMAGENET_STD = IMAGENET_DEFAULT_STD
GRAY_WEIGHTS = (0.2989, 0.587, 0.114)  # torchvision's rgb_to_grayscale

Resample = Literal["bicubic_aa", "bilinear", "bilinear_aa"]


@dataclass(frozen=True)
class ViewSpec:
    """One kind of view: output size, the crop rule and resampling, and the chances of each photometric step."""

    size: int
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    resample: Resample = "bicubic_aa"
    flip_p: float = 0.5
    jitter_p: float = 0.8
    jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.2, 0.1)  # brightness, contrast, saturation, hue
    grayscale_p: float = 0.2
    blur_p: float = 0.0
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    solarize_p: float = 0.0


@dataclass
class PhotometricParams:
    """The photometric draws of n views, one row per view."""

    flip: torch.Tensor  # [n] bool
    jitter: torch.Tensor  # [n] bool: colour jitter applied at all
    jitter_order: torch.Tensor  # [n, 4] long: a permutation of (brightness, contrast, saturation, hue)
    jitter_factors: torch.Tensor  # [n, 4] float64: brightness, contrast, saturation factors and hue shift
    grayscale: torch.Tensor  # [n] bool
    blur: torch.Tensor  # [n] bool
    sigma: torch.Tensor  # [n] float64
    solarize: torch.Tensor  # [n] bool


@dataclass
class ViewParams:
    """Every random draw of n views: crop boxes and the photometric draws."""

    boxes: torch.Tensor  # [n, 4] long: top, left, height, width (torchvision's crop convention)
    photometric: PhotometricParams


# ------------------------------------------------------------------------------------------------ random draws


def _uniform(n: int, low: float, high: float, generator: torch.Generator) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=generator, dtype=torch.float64)


def _chance(n: int, p: float, generator: torch.Generator) -> torch.Tensor:
    return torch.rand(n, generator=generator, dtype=torch.float64) < p


def random_resized_crop_boxes(
    n: int,
    height: int,
    width: int,
    scale: tuple[float, float],
    generator: torch.Generator,
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    attempts: int = 10,
) -> torch.Tensor:
    """torchvision's ``RandomResizedCrop.get_params`` for ``n`` images at once: [n, 4] (top, left, h, w).

    Up to ``attempts`` (area, log-aspect) draws per image, sizes rounded half to even as Python's round; the
    first that fits wins, placed uniformly; else the central crop clamped to the aspect range.
    """
    area = height * width
    target_area = area * _uniform(n * attempts, scale[0], scale[1], generator).view(n, attempts)
    log_ratio = _uniform(n * attempts, math.log(ratio[0]), math.log(ratio[1]), generator).view(n, attempts)
    aspect = torch.exp(log_ratio)
    crop_w = torch.sqrt(target_area * aspect).round()
    crop_h = torch.sqrt(target_area / aspect).round()
    fits = (crop_w > 0) & (crop_h > 0) & (crop_w <= width) & (crop_h <= height)
    first_fit = torch.where(fits.any(dim=1), fits.float().argmax(dim=1), -1)
    image_ratio = width / height
    if image_ratio < ratio[0]:
        fallback_w, fallback_h = width, round(width / ratio[0])
    elif image_ratio > ratio[1]:
        fallback_w, fallback_h = round(height * ratio[1]), height
    else:
        fallback_w, fallback_h = width, height
    rows, chosen, found = torch.arange(n), first_fit.clamp(min=0), first_fit >= 0
    w = torch.where(found, crop_w[rows, chosen], torch.tensor(float(fallback_w), dtype=torch.float64))
    h = torch.where(found, crop_h[rows, chosen], torch.tensor(float(fallback_h), dtype=torch.float64))
    top = torch.floor(torch.rand(n, generator=generator, dtype=torch.float64) * (height - h + 1))
    left = torch.floor(torch.rand(n, generator=generator, dtype=torch.float64) * (width - w + 1))
    top = torch.where(found, top, torch.div(height - h, 2, rounding_mode="floor"))
    left = torch.where(found, left, torch.div(width - w, 2, rounding_mode="floor"))
    return torch.stack([top, left, h, w], dim=1).long()


def draw_photometric(n: int, spec: ViewSpec, generator: torch.Generator) -> PhotometricParams:
    """The photometric draws of n views of ``spec``."""
    brightness, contrast, saturation, hue = spec.jitter
    flip = _chance(n, spec.flip_p, generator)
    jitter = _chance(n, spec.jitter_p, generator)
    order = torch.rand(n, 4, generator=generator).argsort(dim=1)  # a uniform permutation per image
    factors = torch.stack(
        [
            _uniform(n, max(0.0, 1 - brightness), 1 + brightness, generator),
            _uniform(n, max(0.0, 1 - contrast), 1 + contrast, generator),
            _uniform(n, max(0.0, 1 - saturation), 1 + saturation, generator),
            _uniform(n, -hue, hue, generator),
        ],
        dim=1,
    )
    grayscale = _chance(n, spec.grayscale_p, generator)
    blur = _chance(n, spec.blur_p, generator)
    sigma = _uniform(n, *spec.blur_sigma, generator)
    solarize = _chance(n, spec.solarize_p, generator)
    return PhotometricParams(
        flip=flip, jitter=jitter, jitter_order=order, jitter_factors=factors,
        grayscale=grayscale, blur=blur, sigma=sigma, solarize=solarize,
    )  # fmt: skip


def draw_view_params(n: int, height: int, width: int, spec: ViewSpec, generator: torch.Generator) -> ViewParams:
    """All random draws of n views of ``spec`` cut from images of ``height`` x ``width``."""
    boxes = random_resized_crop_boxes(n, height, width, spec.scale, generator, spec.ratio)
    return ViewParams(boxes, draw_photometric(n, spec, generator))


# ------------------------------------------------------------------------------------------------ resampling


def _cubic(x: torch.Tensor, a: float) -> torch.Tensor:
    x = x.abs()
    near = ((a + 2) * x - (a + 3)) * x * x + 1
    far = ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
    return torch.where(x < 1, near, torch.where(x < 2, far, torch.zeros_like(x)))


def _triangle(x: torch.Tensor) -> torch.Tensor:
    return (1 - x.abs()).clamp(min=0)


def resampling_matrix(
    start: torch.Tensor,
    length: torch.Tensor,
    full_size: int,
    out_size: int,
    resample: Resample,
    *,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """[n, out_size, full_size] weights that resample the segment [start, start + length) of each row of an
    axis of ``full_size`` pixels to ``out_size`` samples, exactly as ``F.interpolate`` does for the cropped
    segment (align_corners=False): with antialias, PyTorch's separable filter (the one PIL uses: support scaled
    by the downscale factor, bicubic a = -0.5, weights normalised per output pixel); bilinear without antialias,
    two taps at the clamped source coordinate."""
    start = start.to(torch.float64).view(-1, 1, 1)
    length = length.to(torch.float64).view(-1, 1, 1)
    n = start.shape[0]
    scale = length / out_size  # [n, 1, 1]
    out_index = torch.arange(out_size, dtype=torch.float64).view(1, -1, 1)
    if resample == "bilinear":
        source = (scale * (out_index + 0.5) - 0.5).clamp(min=0)
        low = source.floor()
        frac = source - low
        high = torch.minimum(low + 1, length - 1)
        taps = torch.cat([low, high], dim=2)
        weights = torch.cat([1 - frac, frac], dim=2)
    else:
        half_width = 2.0 if resample == "bicubic_aa" else 1.0
        support = torch.where(scale >= 1, half_width * scale, torch.full_like(scale, half_width))
        inv_scale = torch.where(scale >= 1, 1 / scale, torch.ones_like(scale))
        center = scale * (out_index + 0.5)
        low = (center - support + 0.5).floor().clamp(min=0)  # int() truncation of a non-negative value
        high = torch.minimum((center + support + 0.5).floor(), length)
        max_taps = int(math.ceil(2 * float(support.max()))) + 2
        taps = low + torch.arange(max_taps, dtype=torch.float64).view(1, 1, -1)
        distance = (taps - center + 0.5) * inv_scale
        weights = _cubic(distance, -0.5) if resample == "bicubic_aa" else _triangle(distance)
        weights = torch.where(taps < high, weights, torch.zeros_like(weights))
        weights = weights / weights.sum(dim=2, keepdim=True)
        taps = torch.minimum(taps, length - 1)  # zero-weight taps past the end point at a valid column
    # Taps and weights are [n, out, a few]: computed in float64; only the dense matrix lives on the device.
    matrix = torch.zeros(n, out_size, full_size, dtype=dtype, device=device)
    matrix.scatter_add_(2, (taps + start).long().to(device), weights.to(device, dtype))
    return matrix


def resized_crop(
    images: torch.Tensor, boxes: torch.Tensor, size: int, resample: Resample = "bicubic_aa"
) -> torch.Tensor:
    """Box i (top, left, height, width) of image i, resampled to ``size`` x ``size``: [n, C, size, size].

    Equal to torchvision's ``resized_crop(image, top, left, height, width, [size, size], ...)`` image by image
    (bicubic or bilinear with antialias, or bilinear without), then clamped to [0, 1] as PIL's uint8 output is.
    """
    boxes = boxes.cpu()
    height, width = images.shape[-2:]
    where = dict(device=images.device, dtype=images.dtype)
    rows = resampling_matrix(boxes[:, 0], boxes[:, 2], height, size, resample, **where)
    cols = resampling_matrix(boxes[:, 1], boxes[:, 3], width, size, resample, **where)
    out = rows.unsqueeze(1) @ images @ cols.transpose(1, 2).unsqueeze(1)
    return out.clamp_(0, 1)


# ------------------------------------------------------------------------------------------------ photometric


def _per_image(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return values.to(like.device, like.dtype).view(-1, 1, 1, 1)


def grayscale(images: torch.Tensor) -> torch.Tensor:
    """[n, 1, H, W] luma, as torchvision's ``rgb_to_grayscale``."""
    r, g, b = images.unbind(dim=1)
    return (r * GRAY_WEIGHTS[0] + g * GRAY_WEIGHTS[1] + b * GRAY_WEIGHTS[2]).unsqueeze(1)


def _blend(images: torch.Tensor, other: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return (images * factor + other * (1 - factor)).clamp(0, 1)


def adjust_brightness(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return (images * _per_image(factor, images)).clamp(0, 1)


def adjust_contrast(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    mean = grayscale(images).mean(dim=(1, 2, 3), keepdim=True)
    return _blend(images, mean, _per_image(factor, images))


def adjust_saturation(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return _blend(images, grayscale(images), _per_image(factor, images))


def rgb_to_hsv(images: torch.Tensor) -> torch.Tensor:
    """torchvision's RGB -> HSV on [n, 3, H, W] in [0, 1] (PIL's algorithm; hue in [0, 1))."""
    r, g, b = images.unbind(dim=1)
    maxc, minc = images.amax(dim=1), images.amin(dim=1)
    equal = maxc == minc
    chroma = maxc - minc
    ones = torch.ones_like(maxc)
    saturation = chroma / torch.where(equal, ones, maxc)
    divisor = torch.where(equal, ones, chroma)
    rc, gc, bc = (maxc - r) / divisor, (maxc - g) / divisor, (maxc - b) / divisor
    max_is_r, max_is_g = maxc == r, maxc == g
    hue = torch.where(max_is_r, bc - gc, torch.where(max_is_g, 2.0 + rc - bc, 4.0 + gc - rc))
    hue = (hue / 6.0 + 1.0).fmod(1.0)
    return torch.stack([hue, saturation, maxc], dim=1)


def hsv_to_rgb(hsv: torch.Tensor) -> torch.Tensor:
    """torchvision's HSV -> RGB on [n, 3, H, W]."""
    h, s, v = hsv.unbind(dim=1)
    h6 = h * 6
    sector = torch.floor(h6)
    f = h6 - sector
    sector = sector.long().remainder(6)
    p = ((1.0 - s) * v).clamp(0, 1)
    q = ((1.0 - s * f) * v).clamp(0, 1)
    t = ((1.0 - s + s * f) * v).clamp(0, 1)
    vpqt = torch.stack([v, p, q, t], dim=1)
    select = torch.tensor([[0, 2, 1, 1, 3, 0], [3, 0, 0, 2, 1, 1], [1, 1, 3, 0, 0, 2]], device=hsv.device)
    index = select[:, sector].movedim(0, 1)  # [n, 3, H, W]: which of v, p, q, t each channel takes
    return vpqt.gather(1, index)


def adjust_hue(images: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Rotate the HSV hue of each image by ``shift`` (a fraction of the colour wheel), as torchvision does."""
    hsv = rgb_to_hsv(images)
    hue = (hsv[:, 0] + shift.to(images.device, images.dtype).view(-1, 1, 1)).remainder(1.0)
    return hsv_to_rgb(torch.stack([hue, hsv[:, 1], hsv[:, 2]], dim=1))


_JITTER_STEPS = (adjust_brightness, adjust_contrast, adjust_saturation, adjust_hue)


def color_jitter(images: torch.Tensor, order: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    """torchvision's ColorJitter with per-image factors and order: at each of the four positions, every image
    gets the step its permutation names there."""
    out = images
    order = order.to(images.device)
    for position in range(4):
        steps = order[:, position]
        updated = out.clone()
        for step, function in enumerate(_JITTER_STEPS):
            chosen = (steps == step).nonzero().squeeze(1)
            if len(chosen):
                updated[chosen] = function(out[chosen], factors[chosen.cpu(), step])
        out = updated
    return out


def gaussian_blur(images: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Per-image Gaussian blur as torchvision's ``gaussian_blur(image, 2 * ceil(3 sigma) + 1, sigma)``: a kernel
    of each image's own extent (zero beyond it), reflect padding, separable."""
    n, channels, height, width = images.shape
    sigma = sigma.to(torch.float64).view(-1, 1)
    radius = torch.ceil(3 * sigma)  # [n, 1]
    max_radius = int(radius.max())
    if max_radius >= min(height, width):
        raise ValueError(f"blur sigma up to {float(sigma.max()):.2f} needs images over {max_radius} px")
    offsets = torch.arange(-max_radius, max_radius + 1, dtype=torch.float64).view(1, -1)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2) * (offsets.abs() <= radius)
    kernel = (kernel / kernel.sum(dim=1, keepdim=True)).to(images.device, images.dtype)
    kernel = kernel.repeat_interleave(channels, dim=0)  # [n*c, K]
    flat = images.reshape(1, n * channels, height, width)
    flat = F.pad(flat, (max_radius, max_radius, max_radius, max_radius), mode="reflect")
    flat = F.conv2d(flat, kernel.view(n * channels, 1, 1, -1), groups=n * channels)
    flat = F.conv2d(flat, kernel.view(n * channels, 1, -1, 1), groups=n * channels)
    return flat.view(n, channels, height, width)


def normalize(images: torch.Tensor, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> torch.Tensor:
    mean_t = torch.tensor(mean, device=images.device, dtype=images.dtype).view(1, 3, 1, 1)
    std_t = torch.tensor(std, device=images.device, dtype=images.dtype).view(1, 3, 1, 1)
    return (images - mean_t) / std_t


def _where(mask: torch.Tensor, changed: torch.Tensor, original: torch.Tensor) -> torch.Tensor:
    return torch.where(mask.to(original.device).view(-1, 1, 1, 1), changed, original)


def apply_photometric(views: torch.Tensor, params: PhotometricParams) -> torch.Tensor:
    """Flip, colour jitter, grayscale, blur, solarize (DINO's order), each where ``params`` says; then the
    ImageNet normalisation."""
    views = _where(params.flip, views.flip(-1), views)
    if params.jitter.any():
        chosen = params.jitter.nonzero().squeeze(1)
        on_device = chosen.to(views.device)
        jittered = color_jitter(views[on_device], params.jitter_order[chosen], params.jitter_factors[chosen])
        views = views.index_copy(0, on_device, jittered)
    views = _where(params.grayscale, grayscale(views).expand_as(views), views)
    if params.blur.any():
        chosen = params.blur.nonzero().squeeze(1)
        blurred = gaussian_blur(views[chosen.to(views.device)], params.sigma[chosen])
        views = views.index_copy(0, chosen.to(views.device), blurred)
    views = _where(params.solarize, torch.where(views >= 0.5, 1 - views, views), views)
    return normalize(views)


def apply_view(images: torch.Tensor, params: ViewParams, spec: ViewSpec) -> torch.Tensor:
    """One view per image: crop ``params.boxes`` with ``spec``'s resampling, then the photometric steps."""
    return apply_photometric(resized_crop(images, params.boxes, spec.size, spec.resample), params.photometric)


def multi_crop(images_uint8: torch.Tensor, specs: list[ViewSpec], generator: torch.Generator) -> list[torch.Tensor]:
    """One augmented view per spec for each image: ``len(specs)`` tensors [N, 3, size, size]. All draws of a
    spec happen before the next spec's, in the order of ``specs``."""
    images = images_uint8.float().div_(255)
    n, _, height, width = images.shape
    views = []
    for spec in specs:
        params = draw_view_params(n, height, width, spec, generator)
        views.append(apply_view(images, params, spec))
    return views
