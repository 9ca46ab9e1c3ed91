"""Analysis settings as data: validated once at the edge, hashed to key cached window results."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

NO_DETECTOR = ("", "none", "off")


class AnalysisSettings(BaseModel):
    """Every knob of ``wtours analyze``; the defaults reproduce the paper's analysis."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    analysis_width: int = Field(256, ge=16, description="frame width for lightness and shots (PySceneDetect's)")
    # How FFmpeg shrinks frames; see wtours.frames.iter_frames for the speed of each.
    interpolation: Literal["FAST_BILINEAR", "AREA", "BILINEAR", "POINT"] = "FAST_BILINEAR"
    window_seconds: float = Field(300.0, gt=0, description="length of one work unit")
    duration: float | None = Field(None, gt=0, description="analyze only the first seconds of each video")
    blank_lightness: float = Field(4.0, ge=0, le=100, description="mean L* below which a frame is blank")
    frozen_tolerance: float = Field(0.1, ge=0, description="mean |difference| (0-255) to call a frame frozen")
    shot_detector: Literal["content", "adaptive"] = "content"
    shot_threshold: float = Field(27.0, gt=0, description="ContentDetector threshold")
    adaptive_threshold: float = Field(3.0, gt=0, description="AdaptiveDetector threshold")
    min_scene_len: int = Field(15, ge=0, description="frames a shot lasts at least")
    luma_only: bool = False
    detector: str | None = Field("yolo11n.pt", description="ultralytics weights/name, Darknet .cfg, or none")
    trust_detector_weights: bool = Field(
        False, description="load a .pt that is not one of ultralytics' released weights (unpickling runs its code)"
    )
    detector_fps: float = Field(1.0, gt=0, description="frames per second sampled for detection")
    detector_width: int = Field(640, ge=32, description="width of the frames handed to the detector")
    detector_confidence: float = Field(0.25, gt=0, lt=1)
    detector_batch: int | None = Field(None, ge=1, description="frames per detector call (16 on a GPU, 1 on the CPU)")
    detector_threads: int = Field(1, ge=1, description="CPU threads of the detector, beside the decoder's")
    device: str | None = Field(None, description="torch device for ultralytics; None picks the GPU if any")
    # Where the video is decoded: auto takes NVDEC when a CUDA GPU decodes the stream, else the CPU (a one-line
    # notice says why when a GPU is there). Not part of any cache key: decoders agree to within rounding.
    decode: Literal["auto", "cpu", "gpu"] = "auto"

    @field_validator("detector")
    @classmethod
    def _none_means_off(cls, value: str | None) -> str | None:
        return None if value is None or value.strip().lower() in NO_DETECTOR else value.strip()


def settings_hash(value: Any) -> str:
    """A short, stable hash of JSON-able settings."""
    text = json.dumps(value, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def detector_key(detector: str) -> str:
    """What identifies a detector's weights: a name as given, a local file by path, size and mtime."""
    path = Path(detector).expanduser()
    weights = path.with_suffix(".weights") if path.suffix == ".cfg" else path
    if path.is_file() and weights.is_file():
        stat = weights.stat()
        return f"{path.resolve()}:{stat.st_size}:{int(stat.st_mtime)}"
    return detector
