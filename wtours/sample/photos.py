"""Real photographs that installed packages ship, with hand-annotated boxes of the objects in them.

The sample videos are made of these photos so that detectors, scene cut and lightness analyzers see
real image statistics (textures, faces, street scenes) rather than test patterns, without a download.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from PIL import Image

from wtours.errors import WtoursError


@dataclass(frozen=True)
class PhotoSpec:
    """Where a photo lives inside a package, and its objects as (COCO label, x0, y0, x1, y1) in pixels."""

    package: str
    relative_path: str
    objects: tuple[tuple[str, int, int, int, int], ...]


# Boxes drawn by hand on the images (checked by overlaying them); tight to within a few pixels.
PHOTOS: dict[str, PhotoSpec] = {
    # A street in Madrid: a blue minibus and pedestrians, bright sunlight (810 x 1080).
    "bus": PhotoSpec(
        "ultralytics",
        "assets/bus.jpg",
        (
            ("bus", 22, 231, 805, 756),
            ("person", 48, 398, 245, 902),
            ("person", 221, 405, 344, 857),
            ("person", 670, 380, 810, 878),
            ("person", 0, 550, 63, 873),
        ),
    ),
    # Two men in dark suits before a blurred stadium crowd: dark and low-contrast (1280 x 720).
    "zidane": PhotoSpec(
        "ultralytics",
        "assets/zidane.jpg",
        (("person", 123, 197, 1111, 710), ("person", 747, 41, 1141, 712), ("tie", 437, 434, 531, 717)),
    ),
    # A portrait before a flag: saturated colours, mid-tones (512 x 600).
    "grace_hopper": PhotoSpec("matplotlib", "mpl-data/sample_data/grace_hopper.jpg", (("person", 20, 25, 505, 600),)),
}


def _package_dir(package: str) -> Path | None:
    # find_spec locates a package without importing it (importing ultralytics takes seconds).
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def photo_paths() -> dict[str, Path]:
    """The photos found in the installed packages, by name ('bus', 'zidane', 'grace_hopper')."""
    found: dict[str, Path] = {}
    for name, spec in PHOTOS.items():
        package_dir = _package_dir(spec.package)
        if package_dir is not None and (package_dir / spec.relative_path).is_file():
            found[name] = package_dir / spec.relative_path
    return found


@lru_cache(maxsize=8)
def load_photo(name: str) -> Image.Image:
    """The named photo as an RGB PIL image (cached: renders reuse it)."""
    path = photo_paths().get(name)
    if path is None:
        raise WtoursError(
            f"sample photo {name!r} not found: install {PHOTOS[name].package} "
            "(pip install 'wtours[analysis]' brings ultralytics' bus.jpg and zidane.jpg)"
        )
    with Image.open(path) as image:
        return image.convert("RGB")


def available_photos() -> list[str]:
    """Names of the photos present, in the fixed order of PHOTOS; an error if there are none."""
    names = [name for name in PHOTOS if name in photo_paths()]
    if not names:
        raise WtoursError("no sample photos found: matplotlib (a wtours dependency) ships grace_hopper.jpg")
    return names
