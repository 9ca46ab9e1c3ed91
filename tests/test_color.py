"""CIE L* of sRGB pixels, checked against published values."""

from __future__ import annotations

import numpy as np
import pytest

from wtours.color import lightness_map, linear_to_srgb, mean_lightness, srgb_to_linear


def solid(rgb: tuple[int, int, int]) -> np.ndarray:
    return np.broadcast_to(np.array(rgb, np.uint8), (4, 6, 3)).copy()


@pytest.mark.parametrize(
    ("rgb", "lightness"),
    [
        ((0, 0, 0), 0.0),
        ((255, 255, 255), 100.0),
        ((119, 119, 119), 50.03),  # the sRGB grey closest to L* 50
        ((255, 0, 0), 53.24),  # sRGB primaries under D65 (CIE / Bruce Lindbloom's tables)
        ((0, 255, 0), 87.73),
        ((0, 0, 255), 32.30),
        ((1, 1, 1), 0.27),  # the linear segment near black
    ],
)
def test_lightness_of_solid_colours(rgb, lightness):
    assert mean_lightness(solid(rgb)) == pytest.approx(lightness, abs=0.02)


def test_mean_is_over_pixels_not_of_the_mean_colour():
    half = np.zeros((2, 2, 3), np.uint8)
    half[0] = 255
    assert mean_lightness(half) == pytest.approx(50.0)
    assert lightness_map(half).shape == (2, 2)


def test_transfer_curves_invert_each_other():
    values = np.linspace(0, 1, 101)
    assert np.allclose(linear_to_srgb(srgb_to_linear(values)), values)


def test_refuses_what_is_not_an_rgb_uint8_image():
    with pytest.raises(ValueError, match="uint8"):
        mean_lightness(np.zeros((4, 4, 3), np.float32))
    with pytest.raises(ValueError, match="uint8"):
        mean_lightness(np.zeros((4, 4), np.uint8))
