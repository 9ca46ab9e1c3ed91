"""Objects per frame from a detector run on frames sampled at ``detector_fps`` (batched)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from wtours.analysis.detectors import load_detector
from wtours.frames import FrameSize


class ObjectAnalyzer:
    """Boxes, class ids and confidences on sampled frames, in the pixels of the original video.

    Besides one row per detection (table ``objects``), every sampled frame gets a row in
    ``detector_frames`` with its object count and number of distinct classes, so that frames where
    nothing was found count as zeros in per-frame means.
    """

    name = "objects"
    warmup_frames = 0  # sampling is on absolute frame indices; no history needed
    version = 1

    def __init__(
        self,
        frame_size: FrameSize,
        *,
        detector: str,
        video_size: tuple[int, int],
        confidence: float = 0.25,
        image_size: int = 640,
        batch_size: int = 16,
        device: str | None = None,
        detector_key: str | None = None,
    ):
        self.frame_size = frame_size
        self.detector_name = detector
        self.detector_key = detector_key or detector
        self.confidence = confidence
        self.image_size = image_size
        self.batch_size = batch_size
        self.device = device
        self._scale = np.array(
            [video_size[0] / frame_size.width, video_size[1] / frame_size.height] * 2, dtype=np.float32
        )
        self._pending: list[tuple[int, float, np.ndarray]] = []
        self._detections: list[pd.DataFrame] = []
        self._sampled: dict[str, list] = {"frame": [], "time": [], "objects": [], "unique_classes": []}

    def settings(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "detector": self.detector_key,
            "size": [self.frame_size.width, self.frame_size.height],
            "every_n": self.frame_size.every_n,
            "confidence": self.confidence,
            "image_size": self.image_size,
        }

    def process_frame(self, index: int, time: float, rgb: np.ndarray) -> None:
        self._pending.append((index, time, rgb))
        if len(self._pending) >= self.batch_size:
            self._run_batch()

    def _run_batch(self) -> None:
        batch, self._pending = self._pending, []
        if not batch:
            return
        # Loaded at the first batch (and cached per process), so describing the analyzer costs nothing.
        detector = load_detector(self.detector_name, self.confidence, self.image_size, self.device)
        names = detector.class_names
        for (index, time, _), found in zip(batch, detector.detect([rgb for _, _, rgb in batch]), strict=True):
            self._sampled["frame"].append(index)
            self._sampled["time"].append(time)
            self._sampled["objects"].append(len(found.class_ids))
            self._sampled["unique_classes"].append(len(set(found.class_ids.tolist())))
            if not len(found.class_ids):
                continue
            boxes = found.boxes * self._scale
            self._detections.append(
                pd.DataFrame(
                    {
                        "frame": np.full(len(boxes), index, dtype=np.int64),
                        "time": np.full(len(boxes), time, dtype=np.float64),
                        "class_id": found.class_ids.astype(np.int64),
                        "class_name": [names[c] if c < len(names) else str(c) for c in found.class_ids],
                        "confidence": found.confidences.astype(np.float32),
                        "x0": boxes[:, 0],
                        "y0": boxes[:, 1],
                        "x1": boxes[:, 2],
                        "y1": boxes[:, 3],
                    }
                )
            )

    def tables(self) -> dict[str, pd.DataFrame]:
        self._run_batch()
        detections = (
            pd.concat(self._detections, ignore_index=True) if self._detections else empty_detections()
        )
        sampled = pd.DataFrame(
            {
                "frame": np.asarray(self._sampled["frame"], dtype=np.int64),
                "time": np.asarray(self._sampled["time"], dtype=np.float64),
                "objects": np.asarray(self._sampled["objects"], dtype=np.int64),
                "unique_classes": np.asarray(self._sampled["unique_classes"], dtype=np.int64),
            }
        )
        return {"objects": detections, "detector_frames": sampled}


def empty_detections() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "frame": np.zeros(0, np.int64),
            "time": np.zeros(0, np.float64),
            "class_id": np.zeros(0, np.int64),
            "class_name": pd.Series([], dtype=object),
            "confidence": np.zeros(0, np.float32),
            **{name: np.zeros(0, np.float32) for name in ("x0", "y0", "x1", "y1")},
        }
    )
