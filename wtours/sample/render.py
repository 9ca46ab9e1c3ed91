"""Render the two kinds of sample video from real photos, recording their ground truth as they go.

- ``render_walking_tour``: one continuous take. A virtual camera pans slowly across a panorama of
  photos while zooming in a little and bobbing with the walker's steps; people and a bus (cut out of
  the photos) move through the frame; the light fades towards dusk. No cuts.
- ``render_movie_like``: hard cuts between shots of different photos, framings and exposures, with
  a little camera motion inside each shot, at known frames.

Frames are rendered and encoded one at a time, so memory does not grow with the length.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from wtours.color import linear_to_srgb, mean_lightness, srgb_to_linear
from wtours.sample.encode import h264_writer
from wtours.sample.photos import PHOTOS, available_photos, load_photo
from wtours.sample.truth import ObjectBox, SampleTruth

# A box is in a frame's truth when at least this fraction of it is visible.
MIN_VISIBLE_FRACTION = 0.25
# Fastest pan of the walk, in view widths per second: slow enough that consecutive frames stay alike
# (PySceneDetect's ContentDetector scores stay far below its default threshold of 27).
PAN_SPEED = 0.1
# Std of the sensor noise added to every frame, in 8-bit code values.
NOISE_STD = 1.5
# Dusk: the walk ends this many stops (halvings of linear light) darker than it starts...
DUSK_STOPS = 2.0
# ...and a little bluer (linear-light gains of R, G, B at the end of the walk).
DUSK_TINT = np.array([0.85, 1.0, 1.12])

Box = tuple[float, float, float, float]


def _n_frames(seconds: float, fps: float) -> int:
    if seconds <= 0 or fps <= 0:
        raise ValueError(f"seconds and fps must be positive, got {seconds} and {fps}")
    return max(1, round(seconds * fps))


def _check_size(width: int, height: int) -> None:
    if width < 16 or height < 16 or width % 2 or height % 2:
        raise ValueError(f"width and height must be even and at least 16, got {width}x{height}")


def _smoothstep(u: float) -> float:
    u = min(max(u, 0.0), 1.0)
    return u * u * (3 - 2 * u)


_CODE_TO_LINEAR = srgb_to_linear(np.arange(256) / 255.0)


def _exposure_lut(gains_rgb: np.ndarray) -> np.ndarray:
    """A (3, 256) table mapping each channel's code value to its value after a linear-light gain.

    Gains act on linear light, as a camera's exposure does, not on the gamma-encoded codes.
    """
    linear = np.clip(_CODE_TO_LINEAR[None, :] * np.asarray(gains_rgb)[:, None], 0.0, 1.0)
    return np.round(linear_to_srgb(linear) * 255).astype(np.uint8)


_CHANNEL = np.arange(3)[None, None, :]


def _apply_lut(rgb: np.ndarray, lut: np.ndarray) -> np.ndarray:
    return lut[_CHANNEL, rgb]


def _add_noise(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    # The same noise on R, G and B: colour noise would make the hue of dark pixels flicker, which
    # scene-cut detectors (PySceneDetect's HSV differences) read as content change.
    noise = rng.standard_normal((*rgb.shape[:2], 1), dtype=np.float32) * NOISE_STD
    return np.clip(rgb + noise, 0, 255).round().astype(np.uint8)


def _view_box(center_x: float, center_y: float, view_w: float, view_h: float, limit_w: float, limit_h: float) -> Box:
    """A view_w x view_h window centred as close to (center_x, center_y) as fits inside the image."""
    x0 = min(max(center_x - view_w / 2, 0.0), limit_w - view_w)
    y0 = min(max(center_y - view_h / 2, 0.0), limit_h - view_h)
    return x0, y0, x0 + view_w, y0 + view_h


def _render_view(image: Image.Image, view: Box, width: int, height: int) -> np.ndarray:
    # resize(box=...) resamples a sub-pixel window in one step, with antialiasing when it shrinks.
    return np.asarray(image.resize((width, height), Image.BILINEAR, box=view))


def _visible_box(label: str, box: Box, width: int, height: int) -> ObjectBox | None:
    """The box clipped to the frame, rounded to 0.01 px, or None when too little of it is visible."""
    x0, y0, x1, y1 = box
    area = (x1 - x0) * (y1 - y0)
    cx0, cy0, cx1, cy1 = max(x0, 0.0), max(y0, 0.0), min(x1, float(width)), min(y1, float(height))
    if area <= 0 or cx1 - cx0 < 2 or cy1 - cy0 < 2 or (cx1 - cx0) * (cy1 - cy0) < MIN_VISIBLE_FRACTION * area:
        return None
    return ObjectBox(label, *(round(float(value), 2) for value in (cx0, cy0, cx1, cy1)))


def _project(objects: Sequence[tuple[str, Box]], view: Box, width: int, height: int) -> list[ObjectBox]:
    """Boxes of an image seen through the camera window ``view``, in output pixels."""
    vx0, vy0, vx1, vy1 = view
    sx, sy = width / (vx1 - vx0), height / (vy1 - vy0)
    projected = []
    for label, (x0, y0, x1, y1) in objects:
        box = _visible_box(label, ((x0 - vx0) * sx, (y0 - vy0) * sy, (x1 - vx0) * sx, (y1 - vy0) * sy), width, height)
        if box is not None:
            projected.append(box)
    return projected


def _photo_objects(name: str, scale: float = 1.0, offset_x: float = 0.0) -> list[tuple[str, Box]]:
    return [
        (label, (x0 * scale + offset_x, y0 * scale, x1 * scale + offset_x, y1 * scale))
        for label, x0, y0, x1, y1 in PHOTOS[name].objects
    ]


# --- walking tour ---------------------------------------------------------------------------------

# Bright to dark, so that the scene darkens along with the dusk rather than against it.
_PANORAMA_ORDER = ("bus", "grace_hopper", "zidane")


def _panorama(canvas_height: int) -> tuple[Image.Image, list[tuple[str, Box]]]:
    """The available photos scaled to one height and cross-faded side by side, with their objects."""
    names = [name for name in _PANORAMA_ORDER if name in available_photos()]
    overlap = canvas_height // 8
    canvas: np.ndarray | None = None
    objects: list[tuple[str, Box]] = []
    for name in names:
        photo = load_photo(name)
        scale = canvas_height / photo.height
        strip = np.asarray(photo.resize((round(photo.width * scale), canvas_height), Image.LANCZOS), np.float32)
        if canvas is None:
            offset, canvas = 0, strip
        else:
            offset = canvas.shape[1] - overlap
            fade = np.linspace(0.0, 1.0, overlap, dtype=np.float32)[None, :, None]
            seam = canvas[:, offset:] * (1 - fade) + strip[:, :overlap] * fade
            canvas = np.concatenate([canvas[:, :offset], seam, strip[:, overlap:]], axis=1)
        objects += _photo_objects(name, scale, offset)
    assert canvas is not None
    return Image.fromarray(canvas.round().astype(np.uint8)), objects


@dataclass
class _Walker:
    """A cut-out of a photographed object crossing the frame at constant speed, again every ``period``
    frames (another pedestrian of the same look, as far as a detector is concerned)."""

    label: str
    sprite: np.ndarray
    start_frame: int
    frames_to_cross: int
    period: int
    left_to_right: bool
    bottom: int

    def box_at(self, frame_index: int, width: int) -> Box | None:
        if frame_index < self.start_frame:
            return None
        progress = (frame_index - self.start_frame) % self.period / self.frames_to_cross
        if not 0.0 <= progress <= 1.0:
            return None
        sprite_h, sprite_w = self.sprite.shape[:2]
        travel = progress if self.left_to_right else 1.0 - progress
        x0 = round(-sprite_w + travel * (width + sprite_w))
        return x0, self.bottom - sprite_h, x0 + sprite_w, self.bottom

    def paste(self, frame: np.ndarray, box: Box) -> None:
        height, width = frame.shape[:2]
        x0, y0 = int(box[0]), int(box[1])
        fx0, fy0 = max(x0, 0), max(y0, 0)
        fx1, fy1 = min(x0 + self.sprite.shape[1], width), min(y0 + self.sprite.shape[0], height)
        if fx1 > fx0 and fy1 > fy0:
            frame[fy0:fy1, fx0:fx1] = self.sprite[fy0 - y0 : fy1 - y0, fx0 - x0 : fx1 - x0]


# Which photographed objects walk through the frame, as (photo, index in PHOTOS[photo].objects,
# height as a fraction of the frame height, seconds to cross the frame).
_WALKER_CHOICES = (("bus", 1, 0.55, 3.0), ("bus", 2, 0.5, 3.5), ("bus", 0, 0.45, 2.0), ("grace_hopper", 0, 0.4, 3.0))


def _walkers(width: int, height: int, fps: float, n_frames: int, rng: np.random.Generator) -> list[_Walker]:
    present = set(available_photos())
    choices = [choice for choice in _WALKER_CHOICES if choice[0] in present][:3]
    walkers = []
    for order, (name, index, height_fraction, seconds_to_cross) in enumerate(choices):
        label, x0, y0, x1, y1 = PHOTOS[name].objects[index]
        sprite_h = max(4, round(height * height_fraction))
        sprite_w = max(4, round(sprite_h * (x1 - x0) / (y1 - y0)))
        sprite = np.asarray(load_photo(name).resize((sprite_w, sprite_h), Image.LANCZOS, box=(x0, y0, x1, y1)))
        # Staggered first entries within the first 6 s, so a short video still shows every walker.
        start = round(min(n_frames, 6 * fps) * (order / len(choices)) * rng.uniform(0.6, 1.0))
        frames_to_cross = max(2, round(seconds_to_cross * fps * rng.uniform(0.85, 1.15)))
        walkers.append(
            _Walker(
                label=label,
                sprite=sprite,
                start_frame=start,
                frames_to_cross=frames_to_cross,
                period=frames_to_cross + round(fps * rng.uniform(2.0, 4.0)),
                left_to_right=bool(rng.integers(2)),
                bottom=min(height, round(height * rng.uniform(0.9, 1.05))),
            )
        )
    return walkers


def render_walking_tour(
    path: str | os.PathLike[str],
    *,
    width: int = 320,
    height: int = 180,
    fps: float = 30,
    seconds: float = 6.0,
    seed: int = 0,
) -> SampleTruth:
    """Render a one-take walking-tour-like video to ``path`` (MP4, H.264) and return its truth."""
    _check_size(width, height)
    n_frames = _n_frames(seconds, fps)
    rng = np.random.default_rng(seed)
    canvas_height = min(1080, 2 * height)
    panorama, scene_objects = _panorama(canvas_height)
    walkers = _walkers(width, height, fps, n_frames, rng)
    # The tallest view of the output's aspect that fits (a panorama of one portrait photo is narrow).
    largest_view_h = min(canvas_height, panorama.width * height / width)
    step_phase = rng.uniform(0, 2 * math.pi)
    truth = SampleTruth("walk", width, height, float(fps), n_frames)
    with h264_writer(path, width=width, height=height, fps=fps, gop=max(1, round(2 * fps))) as write:
        for index in range(n_frames):
            progress = index / max(1, n_frames - 1)
            t = index / fps
            # Zoom in slowly (the view shrinks from 92% to 76% of the largest view) while panning at
            # most PAN_SPEED view widths a second, easing in and out and turning back at the panorama's
            # ends (long renders); steps make the camera bob ~1.8 times a second.
            view_h = largest_view_h * (0.92 - 0.16 * progress)
            view_w = view_h * width / height
            pan_range = panorama.width - view_w
            turn_rate = 2 * PAN_SPEED * view_w / max(pan_range, 1.0)
            center_x = view_w / 2 + pan_range * (1 - math.cos(turn_rate * t)) / 2
            bob = 0.005 * view_h * math.sin(2 * math.pi * 1.8 * t + step_phase)
            sway = 0.004 * view_w * math.sin(2 * math.pi * 0.35 * t + 2 * step_phase)
            view = _view_box(center_x + sway, canvas_height / 2 + bob, view_w, view_h, panorama.width, canvas_height)
            frame = _render_view(panorama, view, width, height).copy()
            boxes = _project(scene_objects, view, width, height)
            for walker in walkers:
                box = walker.box_at(index, width)
                if box is not None:
                    walker.paste(frame, box)
                    visible = _visible_box(walker.label, box, width, height)
                    if visible is not None:
                        boxes.append(visible)
            dusk = _smoothstep(progress)
            gains = 2.0 ** (-DUSK_STOPS * dusk) * (1 + (DUSK_TINT - 1) * dusk)
            frame = _add_noise(_apply_lut(frame, _exposure_lut(gains)), rng)
            truth.lightness.append(round(mean_lightness(frame), 4))
            truth.boxes.append(boxes)
            write(frame)
    return truth


# --- movie-like -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Shot:
    """A framing of a photo: centre and size (1 = the largest window of the output's aspect that fits),
    camera drift in view-widths per second, zoom rate per second, and exposure in stops."""

    photo: str
    center: tuple[float, float]
    size: float
    drift: tuple[float, float]
    zoom_per_second: float
    stops: float


# Neighbouring shots differ in photo, framing and exposure, as cuts in an edited film do.
_SHOTS = (
    _Shot("bus", (0.5, 0.45), 0.9, (0.03, 0.0), 0.02, 0.0),
    _Shot("zidane", (0.76, 0.35), 0.45, (-0.03, 0.0), 0.03, -0.7),
    _Shot("grace_hopper", (0.5, 0.3), 0.75, (0.0, 0.03), 0.04, 0.6),
    _Shot("bus", (0.2, 0.62), 0.45, (0.04, 0.0), 0.02, -2.0),
    _Shot("zidane", (0.45, 0.5), 0.9, (0.02, 0.0), 0.05, 1.0),
    _Shot("grace_hopper", (0.45, 0.8), 0.5, (-0.03, 0.0), 0.03, -1.5),
    _Shot("bus", (0.7, 0.25), 0.55, (0.02, 0.01), 0.02, 0.4),
)


def _fit_path(center: float, travel: float, half_view: float, limit: float) -> tuple[float, float]:
    """Start and travel of a camera move along one axis, shifted (and shortened if need be) so that the
    view stays inside [0, limit] all along: a view pressed against the photo's edge would stand still."""
    low, high = half_view, limit - half_view
    if high <= low:
        return limit / 2, 0.0
    travel = min(max(travel, low - high), high - low)
    return min(max(center, low - min(travel, 0.0)), high - max(travel, 0.0)), travel


def default_cut_frames(n_frames: int, fps: float, rng: np.random.Generator) -> list[int]:
    """Irregular shot lengths of at least half a second, about one shot per 0.9 s (at most 7 shots)."""
    min_length = max(2, math.ceil(0.5 * fps))
    n_shots = max(1, min(len(_SHOTS), n_frames // max(1, round(0.9 * fps)), n_frames // min_length))
    spare = n_frames - n_shots * min_length
    weights = rng.uniform(0.3, 1.7, n_shots)
    lengths = [min_length + int(spare * weight / weights.sum()) for weight in weights]
    lengths[-1] += n_frames - sum(lengths)
    return [int(frame) for frame in np.cumsum(lengths)[:-1]]


def _check_cut_frames(cut_frames: Sequence[int], n_frames: int) -> list[int]:
    cuts = [int(frame) for frame in cut_frames]
    if any(b <= a for a, b in zip(cuts, cuts[1:], strict=False)) or (cuts and (cuts[0] <= 0 or cuts[-1] >= n_frames)):
        raise ValueError(f"cut frames must increase strictly inside (0, {n_frames}), got {cuts}")
    return cuts


def render_movie_like(
    path: str | os.PathLike[str],
    *,
    width: int = 320,
    height: int = 180,
    fps: float = 30,
    seconds: float = 6.0,
    seed: int = 0,
    cut_frames: Sequence[int] | None = None,
) -> SampleTruth:
    """Render an edited, movie-like video with hard cuts (default: irregular, seeded) and return its truth."""
    _check_size(width, height)
    n_frames = _n_frames(seconds, fps)
    rng = np.random.default_rng(seed)
    cuts = default_cut_frames(n_frames, fps, rng) if cut_frames is None else _check_cut_frames(cut_frames, n_frames)
    present = set(available_photos())
    shots = [shot for shot in _SHOTS if shot.photo in present]
    first_shot = int(rng.integers(len(shots)))
    truth = SampleTruth("movie", width, height, float(fps), n_frames, cut_frames=cuts)
    with h264_writer(path, width=width, height=height, fps=fps, gop=max(1, round(2 * fps))) as write:
        for shot_number, (start, end) in enumerate(truth.shot_bounds()):
            shot = shots[(first_shot + shot_number) % len(shots)]
            photo = load_photo(shot.photo)
            objects = _photo_objects(shot.photo)
            lut = _exposure_lut(np.full(3, 2.0**shot.stops))
            # Every shot moves (drift and zoom): a still shot would encode as repeated, "frozen" frames.
            first_h = min(photo.height, photo.width * height / width) * shot.size
            first_w = first_h * width / height
            seconds_in_shot = (end - start) / fps
            start_x, travel_x = _fit_path(
                shot.center[0] * photo.width, shot.drift[0] * first_w * seconds_in_shot, first_w / 2, photo.width
            )
            start_y, travel_y = _fit_path(
                shot.center[1] * photo.height, shot.drift[1] * first_w * seconds_in_shot, first_h / 2, photo.height
            )
            for index in range(start, end):
                t = (index - start) / fps
                view_h = first_h / (1 + shot.zoom_per_second * t)
                view_w = view_h * width / height
                along = t / seconds_in_shot
                view = _view_box(
                    start_x + travel_x * along, start_y + travel_y * along, view_w, view_h, photo.width, photo.height
                )
                frame = _add_noise(_apply_lut(_render_view(photo, view, width, height), lut), rng)
                truth.lightness.append(round(mean_lightness(frame), 4))
                truth.boxes.append(_project(objects, view, width, height))
                write(frame)
    return truth
