"""Perceived lightness of frames: CIE L* (0 = black, 100 = white) of sRGB pixels under D65.

The Walking Tours paper contrasts its videos' gradual light changes (a walk into dusk) with the
abrupt ones of movies; L* is the scale on which "how light does it look" is roughly linear, so it
is what the lightness analysis reports and what the embedded sample records as ground truth.
"""

from __future__ import annotations

import numpy as np

# CIE constants: L* is linear below (6/29)^3 of the white luminance and a cube root above it.
_EPSILON = (6 / 29) ** 3
_KAPPA = (29 / 3) ** 3

# Rec. 709 / sRGB primaries, D65 white: the Y row of the RGB -> XYZ matrix.
LUMINANCE_WEIGHTS = np.array([0.2126, 0.7152, 0.0722], dtype=np.float64)


def srgb_to_linear(values: np.ndarray) -> np.ndarray:
    """Undo the sRGB transfer curve: values in [0, 1] -> linear light in [0, 1]."""
    values = np.asarray(values, dtype=np.float64)
    return np.where(values <= 0.04045, values / 12.92, ((values + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(values: np.ndarray) -> np.ndarray:
    """Apply the sRGB transfer curve: linear light in [0, 1] -> encoded values in [0, 1]."""
    values = np.asarray(values, dtype=np.float64)
    return np.where(values <= 0.0031308, 12.92 * values, 1.055 * np.power(values, 1 / 2.4) - 0.055)


def lightness_from_luminance(luminance: np.ndarray) -> np.ndarray:
    """CIE L* (0-100) from relative luminance Y (0-1, white = 1)."""
    luminance = np.asarray(luminance)
    return np.where(luminance > _EPSILON, 116.0 * np.cbrt(luminance) - 16.0, _KAPPA * luminance)


# Every uint8 code value's linear light, computed once: a frame then costs one table look-up per pixel.
_LINEAR_OF_CODE = srgb_to_linear(np.arange(256) / 255.0).astype(np.float32)


def lightness_map(rgb: np.ndarray) -> np.ndarray:
    """Per-pixel CIE L* (float32, H x W) of an H x W x 3 uint8 sRGB image."""
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an H x W x 3 uint8 RGB image, got {rgb.dtype} {rgb.shape}")
    linear = _LINEAR_OF_CODE[rgb]
    luminance = linear @ LUMINANCE_WEIGHTS.astype(np.float32)
    return lightness_from_luminance(luminance).astype(np.float32)


def mean_lightness(rgb: np.ndarray) -> float:
    """Mean CIE L* (0-100) over the pixels of an H x W x 3 uint8 sRGB image.

    The mean of per-pixel L*, not the L* of the mean luminance: a half-black, half-white frame
    scores 50, as it looks, rather than the 76 of its average grey.
    """
    return float(lightness_map(rgb).mean(dtype=np.float64))
