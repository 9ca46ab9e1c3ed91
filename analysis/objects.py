"""Objects per frame from a detector run on frames sampled at ``detector_fps`` (batched).

Batches run on a background thread (torch and OpenCV release the GIL) while the decoder goes on, so
detection overlaps decoding instead of stalling it; at most one batch is in flight and one filling. On the CPU a
batch is one frame: a batch of 16 at 1 fps is handed over every 16 s of video, and the last one of a window is
detected after its decoding has ended (a serial tail: on a 4-s 4K60 AV1 clip the full pass ran at 0.78x the
decode floor with batches of 16). A GPU, where batches pay, takes 16.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
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
        batch_size: int | None = None,
        device: str | None = None,
        threads: int = 1,
        detector_key: str | None = None,
        trust_weights: bool = False,
    ):
        self.frame_size = frame_size
        self.detector_name = detector
        self.detector_key = detector_key or detector
        self.confidence = confidence
        self.image_size = image_size
        self.batch_size = batch_size
        self.device = device
        self.threads = threads
        self.trust_weights = trust_weights
        self._scale = np.array(
            [video_size[0] / frame_size.width, video_size[1] / frame_size.height] * 2, dtype=np.float32
        )
        self._pending: list[tuple[int, float, np.ndarray]] = []
        self._background: ThreadPoolExecutor | None = None
        self._in_flight: Future | None = None
        self._detections: list[pd.DataFrame] = []
        self._sampled: list[tuple[int, float, int, int]] = []  # frame, time, objects, unique classes

    def settings(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "detector": self.detector_key,
            "size": [self.frame_size.width, self.frame_size.height],
            "every_n": self.frame_size.every_n,
            "confidence": self.confidence,
            "image_size": self.image_size,
        }

    def load(self) -> None:
        """Load the detector and run it once (cached per process), so bad weights fail before decoding."""
        self._detector()

    def _detector(self):
        return load_detector(self.detector_name, self.confidence, self.image_size, self.device, self.threads,
                             self.trust_weights)  # fmt: skip

    def _batch_size(self) -> int:
        """Frames per detector call: ``batch_size``, else 16 on a CUDA device and 1 on the CPU."""
        if self.batch_size is None:
            on_gpu = False
            if self.device is not None:
                on_gpu = str(self.device).startswith("cuda")
            elif not self.detector_name.endswith(".cfg"):  # ultralytics picks the GPU when there is one
                import torch

                on_gpu = torch.cuda.is_available()
            self.batch_size = 16 if on_gpu else 1
        return self.batch_size

    def process_frame(self, index: int, time: float, rgb: np.ndarray) -> None:
        self._pending.append((index, time, rgb))
        if len(self._pending) >= self._batch_size():
            self._submit_batch()

    def _submit_batch(self) -> None:
        batch, self._pending = self._pending, []
        self._collect()
        if batch:
            if self._background is None:
                self._background = ThreadPoolExecutor(max_workers=1, thread_name_prefix="detector")
            self._in_flight = self._background.submit(self._detect, batch)

    def _detect(self, batch: list[tuple[int, float, np.ndarray]]) -> tuple[list[tuple], pd.DataFrame | None]:
        """Runs on the background thread: one row per sampled frame, one per detection."""
        detector = self._detector()  # loaded by `load` (cached per process); describing the analyzer costs nothing
        names = detector.class_names
        sampled, detections = [], []
        for (index, time, _), found in zip(batch, detector.detect([rgb for _, _, rgb in batch]), strict=True):
            sampled.append((index, time, len(found.class_ids), len(set(found.class_ids.tolist()))))
            if not len(found.class_ids):
                continue
            boxes = found.boxes * self._scale
            detections.append(
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
        return sampled, pd.concat(detections, ignore_index=True) if detections else None

    def _collect(self) -> None:
        """Take the results of the batch in flight, if any; re-raises what the detector raised."""
        if self._in_flight is None:
            return
        (sampled, detections), self._in_flight = self._in_flight.result(), None
        self._sampled.extend(sampled)
        if detections is not None:
            self._detections.append(detections)

    def tables(self) -> dict[str, pd.DataFrame]:
        self._submit_batch()
        self._collect()
        if self._background is not None:
            self._background.shutdown()
            self._background = None
        detections = (
            pd.concat(self._detections, ignore_index=True) if self._detections else empty_detections()
        )
        sampled = pd.DataFrame(self._sampled, columns=["frame", "time", "objects", "unique_classes"]).astype(
            {"frame": np.int64, "time": np.float64, "objects": np.int64, "unique_classes": np.int64}
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
