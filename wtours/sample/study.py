"""The embedded study set: a slow walk over 20 real photographs, and labelled crops of them, for CPU studies.

A pretraining run learns from the walk (no labels); k-NN and linear probes then ask which photo ("scene") a
crop comes from. Each photo is split once: a band along one edge, ``VAL_BAND_FRACTION`` of its width (or
height), is held out for the validation crops, and the walk and the training crops see only the rest. So no
validation pixel is ever trained on, and an untrained network is far from 100 % (55-59 % k-NN top-1 with a
random tiny ViT)::

    truth = render_study_walk(tmp_path / "study.mp4")    # 128x96, 8 fps, 6 s per scene, one cut per scene
    truth.scene_of_frame(100), truth.scene_bounds[0]
    labelled = make_study_labelled_set(tmp_path / "study_set")   # train/<scene>/*.png, val/<scene>/*.png

The photos come with installed packages (scikit-image's data, ultralytics' and matplotlib's samples), read
from the package folders without importing them, so nothing is ever downloaded.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import zlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image

from wtours.errors import WtoursError
from wtours.sample.encode import h264_writer
from wtours.sample.photos import _package_dir
from wtours.sample.render import _add_noise, _check_size, _render_view, _view_box
from wtours.store import atomic_write_text


@dataclass(frozen=True)
class StudyScene:
    """A photo inside a package, and the edge of it whose band is held out for validation crops."""

    package: str
    relative_path: str
    held_out_side: Literal["left", "right", "top", "bottom"] = "right"


# Real photographs only (scikit-image's synthetic images and its copies, e.g. `cat` = `chelsea`, are left
# out). The held-out edge is chosen so that the band shows what the rest of the photo shows (the astronaut's
# suit, not the shuttle; the cell's halo, with the cell itself in the training part).
STUDY_SCENES: dict[str, StudyScene] = {
    "astronaut": StudyScene("skimage", "data/astronaut.png", "bottom"),
    "chelsea": StudyScene("skimage", "data/chelsea.png"),
    "coffee": StudyScene("skimage", "data/coffee.png"),
    "rocket": StudyScene("skimage", "data/rocket.jpg"),
    "hubble_deep_field": StudyScene("skimage", "data/hubble_deep_field.jpg"),
    "immunohistochemistry": StudyScene("skimage", "data/ihc.png"),
    "retina": StudyScene("skimage", "data/retina.jpg"),
    "camera": StudyScene("skimage", "data/camera.png", "left"),
    "brick": StudyScene("skimage", "data/brick.png"),
    "grass": StudyScene("skimage", "data/grass.png"),
    "gravel": StudyScene("skimage", "data/gravel.png"),
    "moon": StudyScene("skimage", "data/moon.png", "left"),
    "coins": StudyScene("skimage", "data/coins.png"),
    "clock": StudyScene("skimage", "data/clock_motion.png"),
    "page": StudyScene("skimage", "data/page.png"),
    "text": StudyScene("skimage", "data/text.png"),
    "cell": StudyScene("skimage", "data/cell.png", "left"),
    "bus": StudyScene("ultralytics", "assets/bus.jpg"),
    "zidane": StudyScene("ultralytics", "assets/zidane.jpg", "left"),
    "grace_hopper": StudyScene("matplotlib", "mpl-data/sample_data/grace_hopper.jpg"),
}
# With fewer scenes than this the set is too easy to tell methods apart (scikit-image alone brings 17).
MIN_SCENES = 16
# Fraction of each photo's width (or height, for a top or bottom band) held out for validation crops: no
# frame of the walk and no training crop sees it.
VAL_BAND_FRACTION = 0.4

# The walk: a new waypoint of the camera every WAYPOINT_SECONDS; between waypoints the view eases in and
# out. The view's height is ZOOM_RANGE of the tallest view that fits the scene's training part, and the
# camera moves at most PAN_SPEED view widths a second, a walker's pace.
WAYPOINT_SECONDS = 2.0
ZOOM_RANGE = (0.45, 0.85)
PAN_SPEED = 0.25

# Crops of the labelled set: area as a fraction of the whole photo's area (the largest still fit in the
# held-out band), aspect ratio (w/h). With these, a random tiny ViT reads 55-59 % k-NN top-1 (k = 20):
# room for a pretrained network to show what it learnt.
CROP_SCALE = (0.04, 0.16)
CROP_RATIO = (3 / 4, 4 / 3)
_DONE_MARKER = ".complete"
Box = tuple[int, int, int, int]


def available_study_scenes() -> list[str]:
    """Names of the study scenes whose photo is installed, in the fixed order of STUDY_SCENES."""
    found = []
    for name, scene in STUDY_SCENES.items():
        package_dir = _package_dir(scene.package)
        if package_dir is not None and (package_dir / scene.relative_path).is_file():
            found.append(name)
    return found


def _chosen_scenes(scenes: Sequence[str] | None) -> list[str]:
    present = available_study_scenes()
    if scenes is None:
        if len(present) < MIN_SCENES:
            raise WtoursError(
                f"the study set needs at least {MIN_SCENES} photos, found {len(present)}: "
                "install scikit-image (pip install 'wtours[train]' brings it)"
            )
        return present
    unknown = [name for name in scenes if name not in STUDY_SCENES]
    missing = [name for name in scenes if name in STUDY_SCENES and name not in present]
    if unknown or missing or len(set(scenes)) != len(scenes) or not scenes:
        raise WtoursError(
            f"study scenes must be distinct names among {list(STUDY_SCENES)} whose package is installed; "
            f"unknown {unknown}, not installed {missing}"
        )
    return list(scenes)


@lru_cache(maxsize=len(STUDY_SCENES))
def load_study_photo(name: str) -> Image.Image:
    """The named scene's photo as RGB (grey photos become 3-channel grey); cached."""
    scene = STUDY_SCENES[name]
    package_dir = _package_dir(scene.package)
    if package_dir is None or not (package_dir / scene.relative_path).is_file():
        raise WtoursError(f"study photo {name!r} not found: install {scene.package}")
    with Image.open(package_dir / scene.relative_path) as image:
        return image.convert("RGB")


def split_boxes(name: str) -> dict[str, Box]:
    """The scene photo's training part and held-out validation band, as (x0, y0, x1, y1) photo pixels."""
    width, height = load_study_photo(name).size
    side = STUDY_SCENES[name].held_out_side
    band = round((width if side in ("left", "right") else height) * VAL_BAND_FRACTION)
    if side == "right":
        return {"train": (0, 0, width - band, height), "val": (width - band, 0, width, height)}
    if side == "left":
        return {"train": (band, 0, width, height), "val": (0, 0, band, height)}
    if side == "bottom":
        return {"train": (0, 0, width, height - band), "val": (0, height - band, width, height)}
    return {"train": (0, band, width, height), "val": (0, 0, width, band)}


def _scene_rng(seed: int, name: str, purpose: str) -> np.random.Generator:
    # One stream per (seed, scene, purpose): a scene renders and crops alike whichever other scenes are chosen.
    return np.random.default_rng([seed, zlib.crc32(name.encode()), zlib.crc32(purpose.encode())])


# --- the walk -------------------------------------------------------------------------------------


@dataclass
class StudyTruth:
    """What the study walk shows: ``scenes[i]`` fills frames ``scene_bounds[i] = [start, end)``, in order.

    ``train_boxes`` holds, per scene, the part of its photo the walk moves in, and ``views`` every frame's
    window on its photo (x0, y0, x1, y1), both in photo pixels: the held-out validation band of
    ``make_study_labelled_set`` is never on screen.
    """

    width: int
    height: int
    fps: float
    n_frames: int
    seed: int
    scenes: list[str] = field(default_factory=list)
    scene_bounds: list[tuple[int, int]] = field(default_factory=list)
    train_boxes: dict[str, Box] = field(default_factory=dict)
    views: list[tuple[float, float, float, float]] = field(default_factory=list)

    @property
    def cut_frames(self) -> list[int]:
        """First frame of every scene after the first (hard cuts)."""
        return [start for start, _ in self.scene_bounds[1:]]

    def scene_of_frame(self, index: int) -> str:
        for name, (start, end) in zip(self.scenes, self.scene_bounds, strict=True):
            if start <= index < end:
                return name
        raise IndexError(f"frame {index} outside 0..{self.n_frames - 1}")

    def frame_scenes(self) -> list[str]:
        """The scene of every frame, in frame order."""
        return [
            name for name, (start, end) in zip(self.scenes, self.scene_bounds, strict=True) for _ in range(start, end)
        ]

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write as JSON, atomically."""
        atomic_write_text(path, json.dumps(asdict(self), separators=(",", ":")) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> StudyTruth:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
            data["scene_bounds"] = [tuple(bounds) for bounds in data["scene_bounds"]]
            data["train_boxes"] = {name: tuple(box) for name, box in data["train_boxes"].items()}
            data["views"] = [tuple(view) for view in data["views"]]
            return cls(**data)
        except FileNotFoundError:
            raise WtoursError(f"study truth not found: {path}") from None
        except (OSError, ValueError, TypeError, KeyError) as err:
            raise WtoursError(f"not a study truth file: {path} ({err})") from None


def _ease(u: float) -> float:
    return (1 - math.cos(math.pi * u)) / 2


def _waypoints(n_waypoints: int, limit_w: float, limit_h: float, aspect: float, rng: np.random.Generator) -> np.ndarray:
    """(center_x, center_y, view_h) per waypoint: a random zoom, then a pan of at most PAN_SPEED view widths
    a second from the previous waypoint, kept inside the picture."""
    largest_h = min(limit_h, limit_w / aspect)
    points = []
    for number in range(n_waypoints):
        view_h = largest_h * rng.uniform(*ZOOM_RANGE)
        view_w = view_h * aspect
        if number == 0:
            center = rng.uniform([view_w / 2, view_h / 2], [limit_w - view_w / 2, limit_h - view_h / 2])
        else:
            step = PAN_SPEED * WAYPOINT_SECONDS * view_w
            center = points[-1][:2] + rng.uniform(-step, step, 2)
            center = np.clip(center, [view_w / 2, view_h / 2], [limit_w - view_w / 2, limit_h - view_h / 2])
        points.append(np.array([center[0], center[1], view_h]))
    return np.stack(points)


def _scene_part(name: str, frame_height: int) -> Image.Image:
    """The photo's training part, downscaled once so that the closest view still has twice the frame's
    resolution (per-frame resampling of a 1400 px photo would dominate the render time)."""
    part = load_study_photo(name).crop(split_boxes(name)["train"])
    scale = min(1.0, 2 * frame_height / (ZOOM_RANGE[0] * part.height))
    if scale < 1.0:
        part = part.resize((round(part.width * scale), round(part.height * scale)), Image.LANCZOS)
    return part


def _in_photo(view: tuple[float, float, float, float], part: Image.Image, train_box: Box) -> tuple[float, ...]:
    """A window on the (downscaled) training part as photo pixels, rounded to 0.01 px."""
    x0, y0, x1, y1 = train_box
    sx, sy = (x1 - x0) / part.width, (y1 - y0) / part.height
    return (
        round(x0 + view[0] * sx, 2),
        round(y0 + view[1] * sy, 2),
        round(x0 + view[2] * sx, 2),
        round(y0 + view[3] * sy, 2),
    )


def render_study_walk(
    path: str | os.PathLike[str],
    *,
    seed: int = 0,
    width: int = 128,
    height: int = 96,
    fps: float = 8,
    seconds_per_scene: float = 6.0,
    scenes: Sequence[str] | None = None,
) -> StudyTruth:
    """Render the study walk to ``path`` (MP4, H.264) and return which scene each frame shows.

    The camera dwells ``seconds_per_scene`` on each scene (in an order shuffled by ``seed``), panning and
    zooming slowly along a smooth random path inside the photo's training part, then cuts to the next.
    ``scenes`` restricts the walk to some of STUDY_SCENES (default: every installed one, at least 16).
    """
    _check_size(width, height)
    if fps <= 0 or seconds_per_scene <= 0:
        raise ValueError(f"fps and seconds_per_scene must be positive, got {fps} and {seconds_per_scene}")
    names = _chosen_scenes(scenes)
    order = [names[i] for i in np.random.default_rng(seed).permutation(len(names))]
    frames_per_scene = max(2, round(seconds_per_scene * fps))
    truth = StudyTruth(width, height, float(fps), frames_per_scene * len(order), seed)
    noise_rng = np.random.default_rng([seed, 1])
    aspect = width / height
    with h264_writer(path, width=width, height=height, fps=fps, gop=max(1, round(2 * fps))) as write:
        for number, name in enumerate(order):
            part, train_box = _scene_part(name, height), split_boxes(name)["train"]
            frames_per_waypoint = WAYPOINT_SECONDS * fps
            n_waypoints = math.ceil((frames_per_scene - 1) / frames_per_waypoint) + 1
            path_points = _waypoints(n_waypoints, part.width, part.height, aspect, _scene_rng(seed, name, "walk"))
            for index in range(frames_per_scene):
                segment, along = divmod(index / frames_per_waypoint, 1.0)
                first = path_points[int(segment)]
                second = path_points[min(int(segment) + 1, n_waypoints - 1)]
                center_x, center_y, view_h = first + (second - first) * _ease(along)
                view = _view_box(center_x, center_y, view_h * aspect, view_h, part.width, part.height)
                write(_add_noise(_render_view(part, view, width, height), noise_rng))
                truth.views.append(_in_photo(view, part, train_box))
            truth.scenes.append(name)
            truth.scene_bounds.append((number * frames_per_scene, (number + 1) * frames_per_scene))
            truth.train_boxes[name] = train_box
    return truth


# --- the labelled set -----------------------------------------------------------------------------


def _random_crop(region: Box, photo_area: float, scale: tuple[float, float], rng: np.random.Generator) -> Box:
    """A box inside ``region`` of area ``scale`` x the photo's and aspect in CROP_RATIO (torchvision's
    RandomResizedCrop draw: 10 tries, then the largest box of the drawn area that fits)."""
    x0, y0, x1, y1 = region
    region_w, region_h = x1 - x0, y1 - y0
    log_ratio = (math.log(CROP_RATIO[0]), math.log(CROP_RATIO[1]))
    for _ in range(10):
        area = photo_area * rng.uniform(*scale)
        ratio = math.exp(rng.uniform(*log_ratio))
        crop_w, crop_h = round(math.sqrt(area * ratio)), round(math.sqrt(area / ratio))
        if 0 < crop_w <= region_w and 0 < crop_h <= region_h:
            break
    else:
        crop_w, crop_h = min(max(crop_w, 1), region_w), min(max(crop_h, 1), region_h)
    left = x0 + int(rng.integers(region_w - crop_w + 1))
    top = y0 + int(rng.integers(region_h - crop_h + 1))
    return left, top, left + crop_w, top + crop_h


def make_study_labelled_set(
    out_dir: str | os.PathLike[str],
    *,
    seed: int = 0,
    crop_size: int = 64,
    per_class_train: int = 50,
    per_class_val: int = 20,
    scale: tuple[float, float] = CROP_SCALE,
    scenes: Sequence[str] | None = None,
) -> Path:
    """Write ``out_dir/{train,val}/<scene>/*.png``: random crops of each scene's photo (area ``scale`` of
    the photo, aspect 3:4 to 4:3), resized to ``crop_size`` square, and ``out_dir/crops.json`` (every
    crop's box in photo pixels).

    Training crops come from the part of the photo the study walk shows, validation crops from the
    held-out band (``split_boxes``), so the two never share a pixel. Idempotent: a finished set built with
    the same arguments is returned as is; one built with others is rebuilt. Written atomically.
    """
    if not 0 < scale[0] <= scale[1] <= 1:
        raise ValueError(f"scale must satisfy 0 < lo <= hi <= 1, got {scale}")
    if per_class_train < 1 or per_class_val < 1 or crop_size < 8:
        raise ValueError("per_class_train and per_class_val must be positive and crop_size at least 8")
    names = _chosen_scenes(scenes)
    out_dir = Path(out_dir)
    recipe = {
        "seed": seed,
        "crop_size": crop_size,
        "per_class_train": per_class_train,
        "per_class_val": per_class_val,
        "scale": list(scale),
        "splits": {name: split_boxes(name) for name in names},
    }
    marker = out_dir / _DONE_MARKER
    if marker.is_file() and marker.read_text(encoding="utf-8") == json.dumps(recipe, sort_keys=True) + "\n":
        return out_dir
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        index = []
        for name in names:
            photo = load_study_photo(name)
            rng = _scene_rng(seed, name, "crops")
            for split, count in (("train", per_class_train), ("val", per_class_val)):
                region = split_boxes(name)[split]
                folder = staging / split / name
                folder.mkdir(parents=True)
                for number in range(count):
                    box = _random_crop(region, photo.width * photo.height, scale, rng)
                    file = folder / f"{name}_{number:04d}.png"
                    photo.crop(box).resize((crop_size, crop_size), Image.BICUBIC).save(file)
                    index.append({"file": str(file.relative_to(staging)), "scene": name, "split": split, "box": box})
        (staging / "crops.json").write_text(json.dumps(index, separators=(",", ":")) + "\n", encoding="utf-8")
        (staging / _DONE_MARKER).write_text(json.dumps(recipe, sort_keys=True) + "\n", encoding="utf-8")
        if out_dir.exists():
            shutil.rmtree(out_dir)
        staging.rename(out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out_dir
