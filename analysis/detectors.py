"""Object detectors behind one call: ``detect(list of RGB frames) -> list of Detections``.

Two backends:

- ultralytics (default): weights by name (``yolo11n.pt``, downloaded by ultralytics where there is
  internet), by local path (``.pt``), or a model config (``yolo11n.yaml``: random weights, offline);
  batched, on the GPU when one is present.
- OpenCV DNN for Darknet weights: pass the ``.cfg`` path; ``<stem>.weights`` and ``coco.names`` (or
  ``<stem>.names``) must sit beside it. This runs the official YOLOv3-tiny COCO detector offline.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from wtours.errors import WtoursError


@dataclass
class Detections:
    """Boxes (x0, y0, x1, y1) in the pixels of the image given, class ids and confidences."""

    boxes: np.ndarray  # (n, 4) float32
    class_ids: np.ndarray  # (n,) int64
    confidences: np.ndarray  # (n,) float32

    @classmethod
    def empty(cls) -> Detections:
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.int64), np.zeros(0, np.float32))


class Detector(Protocol):
    class_names: list[str]

    def detect(self, frames_rgb: list[np.ndarray]) -> list[Detections]: ...


class UltralyticsDetector:
    """An ultralytics YOLO model; frames are passed as a batch of numpy arrays."""

    def __init__(self, weights: str, *, confidence: float = 0.25, iou: float = 0.7, image_size: int = 640,
                 device: str | None = None):
        try:
            from ultralytics import YOLO
        except ImportError:
            raise WtoursError("the objects analysis needs ultralytics: pip install 'wtours[analysis]'") from None
        if ("/" in weights or "\\" in weights) and not Path(weights).expanduser().is_file():
            raise WtoursError(f"detector weights not found: {weights}")
        try:
            self.model = YOLO(weights)
        except Exception as err:  # ultralytics raises anything from ConnectionError to AttributeError
            reason = (str(err).strip().splitlines() or [type(err).__name__])[0].strip("❌ ")
            hint = " (no internet? download the weights elsewhere and pass their path)" if isinstance(
                err, ConnectionError) else ""
            raise WtoursError(f"cannot load detector {weights!r}: {reason}{hint}") from None
        self.confidence = confidence
        self.iou = iou
        self.image_size = image_size
        self.device = device
        self.class_names = [self.model.names[i] for i in sorted(self.model.names)]

    def detect(self, frames_rgb: list[np.ndarray]) -> list[Detections]:
        if not frames_rgb:
            return []
        # ultralytics reads numpy images as OpenCV BGR.
        frames_bgr = [np.ascontiguousarray(frame[..., ::-1]) for frame in frames_rgb]
        results = self.model.predict(
            frames_bgr, conf=self.confidence, iou=self.iou, imgsz=self.image_size, device=self.device,
            verbose=False,
        )
        out = []
        for result in results:
            boxes = result.boxes
            out.append(
                Detections(
                    boxes=boxes.xyxy.cpu().numpy().astype(np.float32),
                    class_ids=boxes.cls.cpu().numpy().astype(np.int64),
                    confidences=boxes.conf.cpu().numpy().astype(np.float32),
                )
            )
        return out


class DarknetDetector:
    """A Darknet YOLO (v3/v4, tiny or full) run by OpenCV's DNN module on the CPU."""

    def __init__(self, cfg: str | Path, *, confidence: float = 0.25, iou: float = 0.45, image_size: int = 416):
        import cv2

        cfg = Path(cfg)
        weights = cfg.with_suffix(".weights")
        names = next((p for p in (cfg.with_suffix(".names"), cfg.parent / "coco.names") if p.is_file()), None)
        missing = [str(p) for p in (cfg, weights) if not p.is_file()] + ([] if names else ["coco.names"])
        if missing:
            raise WtoursError(f"Darknet detector {cfg}: missing {', '.join(missing)} (expected beside the .cfg)")
        if not hasattr(cv2.dnn, "readNetFromDarknet"):
            raise WtoursError("this OpenCV has no Darknet reader (OpenCV 5 removed it): use opencv-python<5")
        self.net = cv2.dnn.readNetFromDarknet(str(cfg), str(weights))
        self.output_names = self.net.getUnconnectedOutLayersNames()
        self.class_names = [line.strip() for line in names.read_text().splitlines() if line.strip()]
        self.confidence = confidence
        self.iou = iou
        self.image_size = image_size

    def detect(self, frames_rgb: list[np.ndarray]) -> list[Detections]:
        import cv2

        if not frames_rgb:
            return []
        size = (self.image_size, self.image_size)
        blob = cv2.dnn.blobFromImages(frames_rgb, 1 / 255.0, size, swapRB=False, crop=False)
        self.net.setInput(blob)
        outputs = self.net.forward(self.output_names)
        # Each output holds (centre x, centre y, w, h, objectness, class scores) rows relative to the image;
        # OpenCV drops the batch axis for a single image.
        per_image = [out.reshape(len(frames_rgb), -1, out.shape[-1]) for out in outputs]
        return [
            self._decode(np.concatenate([out[i] for out in per_image]), frame.shape[1], frame.shape[0])
            for i, frame in enumerate(frames_rgb)
        ]

    def _decode(self, rows: np.ndarray, width: int, height: int) -> Detections:
        import cv2

        class_scores = rows[:, 5:]
        class_ids = class_scores.argmax(axis=1)
        confidences = class_scores[np.arange(len(rows)), class_ids] * rows[:, 4]
        keep = confidences >= self.confidence
        if not keep.any():
            return Detections.empty()
        rows, class_ids, confidences = rows[keep], class_ids[keep], confidences[keep]
        centre_x, centre_y = rows[:, 0] * width, rows[:, 1] * height
        box_w, box_h = rows[:, 2] * width, rows[:, 3] * height
        boxes = np.stack([centre_x - box_w / 2, centre_y - box_h / 2, centre_x + box_w / 2, centre_y + box_h / 2], 1)
        kept = cv2.dnn.NMSBoxesBatched(
            [[float(x0), float(y0), float(x1 - x0), float(y1 - y0)] for x0, y0, x1, y1 in boxes],
            confidences.astype(float).tolist(), class_ids.astype(int).tolist(), self.confidence, self.iou,
        )
        kept = np.asarray(kept, dtype=np.int64).reshape(-1)
        boxes = np.clip(boxes[kept], 0, [width, height, width, height])
        return Detections(boxes.astype(np.float32), class_ids[kept].astype(np.int64),
                          confidences[kept].astype(np.float32))


def load_detector(
    weights: str, confidence: float, image_size: int, device: str | None = None, threads: int = 1
) -> Detector:
    """The detector for ``weights`` (cached: a worker process loads it once for all its windows).

    ``threads`` caps the CPU threads of inference (torch's or OpenCV's, process-wide): the detector runs
    beside the decoder, and idle threads spinning for work would take the decoder's cores.
    """
    return _load_detector(weights, confidence, image_size, device, threads)  # one cache key per detector


@functools.lru_cache(maxsize=2)
def _load_detector(weights: str, confidence: float, image_size: int, device: str | None, threads: int) -> Detector:
    if weights.endswith(".cfg"):
        import cv2

        cv2.setNumThreads(threads)
        # Darknet networks take a square input whose side is a multiple of 32.
        return DarknetDetector(weights, confidence=confidence, image_size=max(32, round(image_size / 32) * 32))
    detector = UltralyticsDetector(weights, confidence=confidence, image_size=image_size, device=device)
    import torch

    torch.set_num_threads(threads)
    return detector
