"""What a sample video is known to contain: its cuts, its lightness per frame, its objects' boxes."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from wtours.errors import WtoursError
from wtours.store import atomic_write_text


@dataclass
class ObjectBox:
    """An object in a frame: its COCO class name and its box in output-frame pixels (x1, y1 exclusive)."""

    label: str
    x0: float
    y0: float
    x1: float
    y1: float

    @property
    def area(self) -> float:
        return max(0.0, self.x1 - self.x0) * max(0.0, self.y1 - self.y0)


@dataclass
class SampleTruth:
    """Ground truth of one rendered sample video.

    ``cut_frames`` holds the index of the first frame of each new shot ([] for one continuous take);
    ``lightness`` the mean CIE L* of every rendered RGB frame before encoding (see wtours.color);
    ``boxes`` per frame the annotated objects visible in it, clipped to the frame: the objects of the
    photos as the camera frames them (hand-annotated, see wtours.sample.photos) plus, in the walk, the
    people and bus crossing the frame. A box counts when at least a quarter of it is in the frame;
    occlusion (a walker passing in front of a photographed person) is not modelled.
    """

    kind: str
    width: int
    height: int
    fps: float
    n_frames: int
    cut_frames: list[int] = field(default_factory=list)
    lightness: list[float] = field(default_factory=list)
    boxes: list[list[ObjectBox]] = field(default_factory=list)

    @property
    def duration(self) -> float:
        return self.n_frames / self.fps

    def shot_bounds(self) -> list[tuple[int, int]]:
        """(first frame, end frame exclusive) of every shot."""
        starts = [0, *self.cut_frames]
        return list(zip(starts, [*self.cut_frames, self.n_frames], strict=True))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> SampleTruth:
        boxes = [[ObjectBox(**box) for box in frame] for frame in data.get("boxes", [])]
        return cls(**{**data, "boxes": boxes})

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write as JSON, atomically."""
        atomic_write_text(path, json.dumps(self.to_dict(), separators=(",", ":")) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> SampleTruth:
        try:
            return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
        except FileNotFoundError:
            raise WtoursError(f"sample truth not found: {path}") from None
        except (OSError, ValueError, TypeError) as err:
            raise WtoursError(f"not a sample truth file: {path} ({err})") from None
