"""Object detectors behind one call: ``detect(list of RGB frames) -> list of Detections``.

Two backends:

- ultralytics (default): weights by name (``yolo11n.pt``, downloaded by ultralytics where there is
  internet), by local path (``.pt``), or a model config (``yolo11n.yaml``: random weights, offline);
  batched, on the GPU when one is present.
- OpenCV DNN for Darknet weights: pass the ``.cfg`` path; ``<stem>.weights`` and ``coco.names`` (or
  ``<stem>.names``) must sit beside it. This runs the official YOLOv3-tiny COCO detector offline.

A ``.pt`` file is a Python pickle, and ultralytics unpickles it with ``weights_only=False``: whatever
code it carries runs. So a ``.pt`` is loaded only when its SHA-256 is that of one of ultralytics'
released detectors (:data:`RELEASED_WEIGHTS`), checked before anything reads it, or when the user says
they trust it (``--trust-detector-weights``, e.g. for their own trained weights). Model definitions
(``.yaml``) and Darknet files are data, not code, and need no such say-so.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from wtours.analysis.base import one_line
from wtours.errors import WtoursError

# SHA-256 of the detection weights ultralytics publishes as release assets of github.com/ultralytics/assets
# (the files `YOLO("yolo11n.pt")` downloads; v8.3.0 and v8.4.0 carry the same bytes). They were not computed
# here (this machine cannot download them): each was read from Ultralytics' own Hugging Face repositories
# (Ultralytics/YOLO11, Ultralytics/YOLOv8: the Git LFS object id is the file's SHA-256) or from projects
# that pin the GitHub asset, and only digests that several independent sources agree on are listed.
# yolov8n.pt has two: the re-released asset (v8.1.0 on) and the original of release v0.0.0. A name missing
# here, or a file whose digest differs (an older or newer release), is refused unless trusted.
RELEASED_WEIGHTS: dict[str, tuple[str, ...]] = {
    "yolo11n.pt": ("0ebbc80d4a7680d14987a577cd21342b65ecfd94632bd9a8da63ae6417644ee1",),
    "yolo11s.pt": ("85a76fe86dd8afe384648546b56a7a78580c7cb7b404fc595f97969322d502d5",),
    "yolo11m.pt": ("d5ffc1a674953a08e11a8d21e022781b1b23a19b730afc309290bd9fb5305b95",),
    "yolo11l.pt": ("9ebd0e09d59811db4b1d61e2bc6730649608b1ac47f8dd01e2da6bca7c20023f",),
    "yolo11x.pt": ("7bc158aa95c0ebfdd87f70f01653c1131b93e92522dbe15c228bcd742e773a24",),
    "yolov8n.pt": ("f59b3d833e2ff32e194b5bb8e08d211dc7c5bdf144b90d2c8412c47ccfc83b36",
                   "31e20dde3def09e2cf938c7be6fe23d9150bbbe503982af13345706515f2ef95"),
    "yolov8s.pt": ("1f47a78bf100391c2a140b7ac73a1caae18c32779be7d310658112f7ac9aa78a",),
    "yolov8m.pt": ("5d4a90cdc7a21786cc59cd19778e9eafff836df9e2da32524737c7ee6efe4fe5",),
    "yolov8l.pt": ("64c9115303f6a25575f82200d1b22ec409fa6bd7d08d0313884fc20d919478cd",),
    "yolov8x.pt": ("3df4ada6b4dad6d657868f2fdf7faecfb34dcfccf3a25c4b82079064718524c8",),
}
MODEL_DEFINITIONS = (".yaml", ".yml")  # an architecture, built with random weights: no pickle involved


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
                 device: str | None = None, trusted: bool = False):
        try:
            from ultralytics import YOLO
        except ImportError:
            raise WtoursError("the objects analysis needs ultralytics: pip install 'wtours[analysis]'") from None
        try:
            self.model = YOLO(vetted_weights(weights, trusted=trusted))
        except WtoursError:
            raise
        except Exception as err:  # ultralytics raises anything from ConnectionError to AttributeError
            raise WtoursError(f"cannot load detector {weights!r}: {_ultralytics_reason(err)}") from None
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
        try:
            self.net = cv2.dnn.readNetFromDarknet(str(cfg), str(weights))
        except cv2.error as err:
            raise WtoursError(f"Darknet detector {cfg}: OpenCV cannot read it: {one_line(err)}") from None
        # OpenCV reads weights until the file ends and leaves the rest at zero: a cut-off download loads and
        # finds nothing. The network's parameters (its layers' blobs: float32, within a few scalars of what
        # the file stores) say how big the file must be.
        needed = 4 * sum(blob.size for name in self.net.getLayerNames() for blob in self.net.getLayer(name).blobs)
        if weights.stat().st_size < 0.98 * needed:
            raise WtoursError(f"Darknet detector {cfg}: {weights.name} holds {weights.stat().st_size:,} bytes but "
                              f"the network needs about {needed:,} (a cut-off download?)")
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


def vetted_weights(weights: str, *, trusted: bool = False) -> str:
    """What to hand ultralytics for ``weights``: a model definition, a file whose SHA-256 is that of a
    released detector, or anything when ``trusted``. Raises WtoursError (naming the way out) otherwise.

    Nothing is unpickled here; a released detector missing locally is downloaded by ultralytics'
    downloader (to where ``YOLO(name)`` puts it) and checked before it is loaded.
    """
    if trusted or weights.lower().endswith(MODEL_DEFINITIONS):
        return weights
    trust_hint = ("pass --trust-detector-weights if you trust this file (e.g. weights you trained), "
                  "or use a released detector (yolo11n.pt, ...), a .yaml model or a Darknet .cfg")  # fmt: skip
    if not weights.lower().endswith(".pt"):
        raise WtoursError(f"--detector {weights}: only ultralytics' released .pt weights, .yaml model definitions "
                          f"and Darknet .cfg files load without a say-so (other formats may run code); {trust_hint}")
    path = Path(weights).expanduser()
    if not path.is_file():
        if path.name != weights:
            raise WtoursError(f"detector weights not found: {weights}")
        if weights not in RELEASED_WEIGHTS:
            raise WtoursError(f"--detector {weights}: not found here and not one of ultralytics' released "
                              f"detectors ({', '.join(RELEASED_WEIGHTS)}); {trust_hint}")
        path = Path(_download_released(weights))
    from wtours.store import file_sha256

    digest = file_sha256(path)
    if not any(digest in digests for digests in RELEASED_WEIGHTS.values()):
        known = " (not the released file of that name: an older or tampered copy?)" if path.name in RELEASED_WEIGHTS \
            else ""
        raise WtoursError(f"--detector {weights}: refusing to load {path}: a .pt is a pickle and loading it runs any "
                          f"code inside; its SHA-256 {digest[:16]}... is not one of ultralytics' released "
                          f"detectors{known}; {trust_hint}")
    return str(path)


def _download_released(name: str) -> str:
    """Where ultralytics keeps (or now downloads) the released weights ``name``, without loading them."""
    try:
        from ultralytics.utils.downloads import attempt_download_asset

        found = attempt_download_asset(name)
    except Exception as err:
        raise WtoursError(f"cannot load detector {name!r}: {_ultralytics_reason(err)}") from None
    if not Path(found).is_file():
        raise WtoursError(f"cannot load detector {name!r}: download failed (no internet? download the weights "
                          f"elsewhere and pass their path)")
    return found


def _ultralytics_reason(err: Exception) -> str:
    """ultralytics' message without its decorations (an emoji, "ERROR"): the caller says it is an error."""
    reason = " ".join(one_line(err).replace("❌", "").replace("\ufe0f", "").replace("ERROR", "").split())
    if isinstance(err, ConnectionError):
        reason += " (no internet? download the weights elsewhere and pass their path)"
    return reason


def load_detector(
    weights: str, confidence: float, image_size: int, device: str | None = None, threads: int = 1,
    trusted: bool = False,
) -> Detector:
    """The detector for ``weights``, loaded and checked on one blank frame (cached: a worker process
    loads it once for all its windows). Raises WtoursError, one line, when it cannot be used.

    ``threads`` caps the CPU threads of inference (torch's or OpenCV's, process-wide): the detector runs
    beside the decoder, and idle threads spinning for work would take the decoder's cores.
    """
    return _load_detector(weights, confidence, image_size, device, threads, trusted)  # one cache key per detector


@functools.lru_cache(maxsize=2)
def _load_detector(weights: str, confidence: float, image_size: int, device: str | None, threads: int,
                   trusted: bool) -> Detector:  # fmt: skip
    if weights.endswith(".cfg"):
        import cv2

        cv2.setNumThreads(threads)
        # Darknet networks take a square input whose side is a multiple of 32.
        detector: Detector = DarknetDetector(weights, confidence=confidence,
                                             image_size=max(32, round(image_size / 32) * 32))  # fmt: skip
    else:
        detector = UltralyticsDetector(weights, confidence=confidence, image_size=image_size, device=device,
                                       trusted=trusted)  # fmt: skip
        import torch

        torch.set_num_threads(threads)
    try:  # weights that load may still not run (a layer mismatch, a device that is not there)
        detector.detect([np.zeros((64, 64, 3), np.uint8)])
    except WtoursError:
        raise
    except Exception as err:
        raise WtoursError(f"detector {weights!r} loads but does not run: {one_line(err)}") from None
    return detector
