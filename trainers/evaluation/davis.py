"""DAVIS-2017 semi-supervised video object segmentation by label propagation, as DINO evaluates it
(`eval_video_segmentation.py`), scored as the official DAVIS-2017 toolkit scores it (`davis2017-evaluation`).

Frames are read as DINO's `read_frame` reads them: OpenCV decoding, the short side resized to 480 and the
other side to the multiple of 64 below its proportional length (854 x 480 -> 832 x 480), OpenCV's bilinear
resize, normalised with mean (0.485, 0.456, 0.406) and std (0.228, 0.224, 0.225) (DINO's constants for this
task: 0.228, not ImageNet's 0.229). The first annotation is resized to the patch grid by nearest neighbour
(`read_seg`). Every later frame's labels are a weighted vote of the labels of the first frame and of the
``n_last_frames`` previous predictions: each target patch takes the ``topk`` most similar source patches (cosine
similarity of frozen last-layer patch features, ``exp(sim / temperature)``) within a square neighbourhood of
``neighbourhood`` patches.

Predictions are scored with the DAVIS measures J (region IoU) and F (contour F-measure, boundary tolerance 0.008
of the image diagonal), per object, on all frames but the first and the last, as the toolkit does.

Void pixels (label 255). The toolkit's semi-supervised evaluation sets them to 0 in the annotations and passes
no void mask (`get_all_masks`, then `_evaluate_semisupervised(..., None, ...)`): void is background, so a
prediction covering void pixels is a false positive. That is the default here (``void="background"``);
``void="ignore"`` drops void pixels from prediction and truth instead (the toolkit's rule for its unsupervised
task; wtours' rule before, which reads higher). In the first annotation, 255 becomes background before
propagation: DINO's `to_one_hot` would carry it as a label of its own (256 channels), predict 255 where void
spreads, and the toolkit then rejects those PNGs ("an index higher than the number of objects").

Expected folder (the official DAVIS-2017 trainval layout)::

    <root>/JPEGImages/480p/<sequence>/00000.jpg ...
    <root>/Annotations/480p/<sequence>/00000.png ...   palette PNGs: 0 background, 1..K objects, 255 void
    <root>/ImageSets/2017/val.txt                      one sequence name per line
"""

from __future__ import annotations

import csv
import io
import math
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from wtours.errors import WtoursError

VOID_LABEL = 255
VOID_RULES = ("background", "ignore")
# DINO's `color_normalize` in eval_video_segmentation.py (red std 0.228, as in UVC, where the code comes from).
DAVIS_MEAN = (0.485, 0.456, 0.406)
DAVIS_STD = (0.228, 0.224, 0.225)
PatchFeatureFn = Callable[[torch.Tensor], torch.Tensor]  # (3, H, W) normalised image -> (rows, cols, dim)


@dataclass(frozen=True)
class PropagationConfig:
    """DINO's defaults for DAVIS-2017 (ViT-S/16: J&F 61.8 with its ImageNet weights)."""

    n_last_frames: int = 7
    temperature: float = 0.1
    neighbourhood: int = 12
    topk: int = 5
    short_side: int = 480  # frames are resized to this short side ...
    long_side_multiple: int = 64  # ... and a long side rounded down to a multiple of this (854 -> 832)
    void: str = "background"  # how the scores treat annotations' 255 pixels: see the module docstring

    def __post_init__(self) -> None:
        if self.void not in VOID_RULES:
            raise WtoursError(f"--void {self.void!r}: one of {', '.join(VOID_RULES)}")


# ---------------------------------------------------------------------------------------------- propagation


def neighbourhood_mask(rows: int, cols: int, radius: int) -> torch.Tensor:
    """(rows*cols, rows*cols) bool: True where two patches are at most ``radius`` apart in row and column."""
    row_index = torch.arange(rows).repeat_interleave(cols)
    col_index = torch.arange(cols).repeat(rows)
    near_rows = (row_index[:, None] - row_index[None, :]).abs() <= radius
    near_cols = (col_index[:, None] - col_index[None, :]).abs() <= radius
    return near_rows & near_cols


def propagate_labels(
    target_features: torch.Tensor,
    source_features: torch.Tensor,
    source_labels: torch.Tensor,
    *,
    temperature: float = 0.1,
    topk: int = 5,
    neighbourhood: torch.Tensor | None = None,
) -> torch.Tensor:
    """Soft labels of the target frame's patches from labelled source frames.

    target_features (patches, dim), source_features (sources, patches, dim), source_labels
    (sources, labels, patches) -> (labels, patches). Each target patch averages the labels of its ``topk``
    most affine source patches (over all sources), weighted by ``exp(cosine / temperature)``;
    ``neighbourhood`` (patches, patches) bool, if given, rules out source patches too far away.
    """
    target = F.normalize(target_features.float(), dim=-1)
    sources = F.normalize(source_features.float(), dim=-1)
    num_sources, num_patches, _ = sources.shape
    # affinity[s, j, i]: source frame s, source patch j, target patch i
    affinity = torch.exp(torch.einsum("sjd,id->sji", sources, target) / temperature)
    if neighbourhood is not None:
        affinity = affinity * neighbourhood.to(affinity.device)
    affinity = affinity.reshape(num_sources * num_patches, -1)
    kth_largest = affinity.topk(min(topk, affinity.shape[0]), dim=0).values[-1]
    affinity = torch.where(affinity >= kth_largest, affinity, torch.zeros_like(affinity))
    affinity = affinity / affinity.sum(dim=0, keepdim=True)
    labels = source_labels.float().permute(1, 0, 2).reshape(source_labels.shape[1], -1)
    return labels @ affinity


def one_hot_labels(labels: torch.Tensor, num_labels: int) -> torch.Tensor:
    """(rows, cols) integer map -> (num_labels, rows*cols) float one-hot."""
    return F.one_hot(labels.long().flatten(), num_labels).T.float()


def segment_sequence(
    frame_features: Iterable[torch.Tensor],
    first_labels: torch.Tensor,
    num_labels: int,
    config: PropagationConfig = PropagationConfig(),
) -> Iterator[torch.Tensor]:
    """Soft labels (num_labels, rows, cols) of frames 1, 2, ... of a sequence, one per yielded item.

    ``frame_features`` yields (rows, cols, dim) per frame, frame 0 first; ``first_labels`` is frame 0's
    (rows, cols) label map on the patch grid. Only the first frame and the last ``n_last_frames``
    frames are held in memory, so sequences of any length fit.
    """
    features = iter(frame_features)
    first = next(features)
    rows, cols, _ = first.shape
    mask = neighbourhood_mask(rows, cols, config.neighbourhood) if config.neighbourhood > 0 else None
    first_entry = (first.reshape(rows * cols, -1), one_hot_labels(first_labels, num_labels).to(first.device))
    recent: deque[tuple[torch.Tensor, torch.Tensor]] = deque(maxlen=config.n_last_frames)
    for target in features:
        if target.shape[:2] != (rows, cols):
            raise WtoursError(f"frame features changed shape from {(rows, cols)} to {tuple(target.shape[:2])}")
        target = target.reshape(rows * cols, -1)
        context = [first_entry, *recent]
        soft = propagate_labels(
            target,
            torch.stack([feats for feats, _ in context]),
            torch.stack([labels for _, labels in context]),
            temperature=config.temperature,
            topk=config.topk,
            neighbourhood=mask,
        )
        recent.append((target, soft))
        yield soft.reshape(num_labels, rows, cols)


def soft_labels_to_mask(soft_labels: torch.Tensor, patch_size: int, output_size: tuple[int, int]) -> np.ndarray:
    """(labels, rows, cols) soft labels -> (height, width) uint8 label map at ``output_size``.

    As DINO: bilinear upsampling by the patch size, each label's map rescaled to [0, 1] so small objects
    are not swamped by the background's larger values, argmax, then nearest resizing to the frame size.
    """
    from PIL import Image

    batch = soft_labels[None].float()
    upsampled = F.interpolate(batch, scale_factor=patch_size, mode="bilinear", align_corners=False)[0]
    low = upsampled.amin(dim=(1, 2), keepdim=True)
    high = upsampled.amax(dim=(1, 2), keepdim=True)
    rescaled = torch.where(high > 0, (upsampled - low) / (high - low).clamp_min(1e-12), upsampled)
    labels = rescaled.argmax(dim=0).to(torch.uint8).cpu().numpy()
    height, width = output_size
    return np.asarray(Image.fromarray(labels).resize((width, height), Image.NEAREST))


# ---------------------------------------------------------------------------------------------- J and F


def region_similarity(prediction: np.ndarray, truth: np.ndarray, void: np.ndarray | None = None) -> float:
    """J: intersection over union of two binary masks, void pixels ignored; two empty masks score 1."""
    prediction, truth = prediction.astype(bool), truth.astype(bool)
    if void is not None:
        keep = ~void.astype(bool)
        prediction, truth = prediction & keep, truth & keep
    union = np.logical_or(prediction, truth).sum()
    if union == 0:
        return 1.0
    return float(np.logical_and(prediction, truth).sum() / union)


def boundary_map(mask: np.ndarray) -> np.ndarray:
    """The DAVIS toolkit's boundary pixels: those differing from their right, lower or lower-right
    neighbour (the last row compares to the right only, the last column downwards only)."""
    mask = mask.astype(bool)
    right = np.zeros_like(mask)
    below = np.zeros_like(mask)
    below_right = np.zeros_like(mask)
    right[:, :-1] = mask[:, 1:]
    below[:-1, :] = mask[1:, :]
    below_right[:-1, :-1] = mask[1:, 1:]
    boundary = (mask ^ right) | (mask ^ below) | (mask ^ below_right)
    boundary[-1, :] = mask[-1, :] ^ right[-1, :]
    boundary[:, -1] = mask[:, -1] ^ below[:, -1]
    boundary[-1, -1] = False
    return boundary


def dilate_disk(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary dilation by a disk of ``radius`` pixels, as the DAVIS toolkit's ``binary_dilation(mask,
    disk(radius))``: offsets with dy^2 + dx^2 <= radius^2 (skimage's ``disk``), done by ``cv2.dilate``.

    The kernel is that disk, not OpenCV's ``MORPH_ELLIPSE``, which is fuller (17 pixels at radius 2 against
    the disk's 13) and would change F. Pixels outside the image count as background.
    """
    import cv2

    offsets = np.arange(-radius, radius + 1)
    kernel = (offsets[:, None] ** 2 + offsets[None, :] ** 2 <= radius * radius).astype(np.uint8)
    return cv2.dilate(mask.astype(np.uint8), kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0).astype(bool)


def boundary_tolerance(shape: tuple[int, int], bound_th: float = 0.008) -> int:
    """Tolerance radius in pixels: ``bound_th`` itself if >= 1, else that fraction of the diagonal, rounded up."""
    return int(bound_th) if bound_th >= 1 else math.ceil(bound_th * math.hypot(*shape))


def contour_accuracy(
    prediction: np.ndarray, truth: np.ndarray, void: np.ndarray | None = None, bound_th: float = 0.008
) -> float:
    """F: F-measure of boundary precision and recall, a boundary pixel matching if the other mask has a
    boundary pixel within the tolerance disk (see `boundary_tolerance`)."""
    prediction, truth = prediction.astype(bool), truth.astype(bool)
    if void is not None:
        keep = ~void.astype(bool)
        prediction, truth = prediction & keep, truth & keep
    radius = boundary_tolerance(truth.shape, bound_th)
    predicted_boundary, true_boundary = boundary_map(prediction), boundary_map(truth)
    n_predicted, n_true = int(predicted_boundary.sum()), int(true_boundary.sum())
    if n_predicted == 0 or n_true == 0:
        return 1.0 if n_predicted == n_true else 0.0  # both empty: perfect; one empty: P or R is 0
    precision = (predicted_boundary & dilate_disk(true_boundary, radius)).sum() / n_predicted
    recall = (true_boundary & dilate_disk(predicted_boundary, radius)).sum() / n_true
    if precision + recall == 0:
        return 0.0
    return float(2 * precision * recall / (precision + recall))


def per_frame_statistics(values: Sequence[float], bins: int = 4) -> dict[str, float]:
    """The toolkit's summary of one object's per-frame scores: mean, recall (share above 0.5) and decay
    (mean of the first quarter of the frames minus mean of the last quarter)."""
    scores = np.asarray(values, dtype=np.float64)
    if scores.size == 0:
        return {"mean": float("nan"), "recall": float("nan"), "decay": float("nan")}
    edges = np.round(np.linspace(1, len(scores), bins + 1) + 1e-10).astype(int) - 1
    chunks = [scores[edges[i] : edges[i + 1] + 1] for i in range(bins)]
    return {
        "mean": float(np.mean(scores)),
        "recall": float(np.mean(scores > 0.5)),
        "decay": float(np.mean(chunks[0]) - np.mean(chunks[-1])),
    }


# ---------------------------------------------------------------------------------------------- DAVIS files


def davis_palette() -> list[int]:
    """The PASCAL VOC / DAVIS colour map (label 1 red, 2 green, 3 yellow, ...) as a flat RGB list of 256 colours."""
    palette = []
    for label in range(256):
        red = green = blue = 0
        code = label
        for bit in range(8):
            red |= ((code >> 0) & 1) << (7 - bit)
            green |= ((code >> 1) & 1) << (7 - bit)
            blue |= ((code >> 2) & 1) << (7 - bit)
            code >>= 3
        palette += [red, green, blue]
    return palette


def read_mask(path: Path) -> tuple[np.ndarray, list[int] | None]:
    """A palette (or greyscale) PNG as a (height, width) uint8 label map, with its palette if any."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            if image.mode not in ("P", "L"):
                raise WtoursError(f"{path}: expected a palette or greyscale PNG of labels, got mode {image.mode}")
            palette = image.getpalette() if image.mode == "P" else None
            return np.array(image, dtype=np.uint8), palette
    except OSError as err:
        raise WtoursError(f"{path}: unreadable mask ({err})") from None


def write_mask(path: Path, labels: np.ndarray, palette: Sequence[int]) -> None:
    """Write a label map as a palette PNG (what the DAVIS toolkit reads), atomically."""
    from PIL import Image

    from wtours.store import atomic_write_bytes

    image = Image.fromarray(labels.astype(np.uint8), mode="P")
    image.putpalette(list(palette))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    atomic_write_bytes(path, buffer.getvalue())


@dataclass(frozen=True)
class DavisLayout:
    """Paths of a DAVIS-format folder at one resolution."""

    root: Path
    resolution: str = "480p"

    def frames(self, sequence: str) -> list[Path]:
        return sorted((self.root / "JPEGImages" / self.resolution / sequence).glob("*.jpg"))

    def annotation(self, sequence: str, frame: Path) -> Path:
        return self.root / "Annotations" / self.resolution / sequence / f"{frame.stem}.png"

    def sequences(self, split: str = "val", only: Sequence[str] | None = None) -> list[str]:
        """The split's sequence names (ImageSets/2017/<split>.txt), restricted to ``only`` if given; checked."""
        listing = self.root / "ImageSets" / "2017" / f"{split}.txt"
        if not listing.is_file():
            raise WtoursError(f"{listing}: missing (expected a DAVIS-2017 folder with ImageSets/2017/{split}.txt)")
        names = [line.strip() for line in listing.read_text().splitlines() if line.strip()]
        if only:
            unknown = sorted(set(only) - set(names))
            if unknown:
                raise WtoursError(f"sequences not in {listing.name}: {', '.join(unknown)}")
            names = [name for name in names if name in set(only)]
        for name in names:
            frames = self.frames(name)
            if not frames:
                raise WtoursError(f"{self.root / 'JPEGImages' / self.resolution / name}: no .jpg frames")
            if not self.annotation(name, frames[0]).is_file():
                raise WtoursError(f"{self.annotation(name, frames[0])}: first-frame mask missing")
        return names


# ---------------------------------------------------------------------------------------------- running


def model_input_size(height: int, width: int, short_side: int = 480, long_side_multiple: int = 64) -> tuple[int, int]:
    """(height, width) a frame is resized to, as DINO's `read_frame`: the short side becomes ``short_side``, the
    long side ``int((short_side * long / short) // multiple * multiple)`` (at least one multiple; DINO would
    resize to 0). The patch grid is this size floor-divided by the patch size (DINO's convolution ignores the
    remainder), so neither side needs to be a multiple of the patch."""
    if height > width:
        long = (short_side * height) / width
        return max(long_side_multiple, int((long // long_side_multiple) * long_side_multiple)), short_side
    long = (short_side * width) / height
    return short_side, max(long_side_multiple, int((long // long_side_multiple) * long_side_multiple))


def load_frame(path: Path, size: tuple[int, int]) -> torch.Tensor:
    """A JPEG frame as DINO's `read_frame` makes it: OpenCV decoding and bilinear ``cv2.resize`` to ``size``
    (height, width), /255, BGR -> RGB, normalised with `DAVIS_MEAN` / `DAVIS_STD`; (3, H, W) float32."""
    try:
        import cv2
    except ImportError:
        raise WtoursError("DAVIS frames are read with OpenCV, as DINO reads them: pip install opencv-python") from None
    pixels = cv2.imread(str(path))
    if pixels is None:
        raise WtoursError(f"{path}: not a readable image")
    pixels = cv2.resize(pixels, (size[1], size[0])).astype(np.float32) / 255.0
    tensor = torch.from_numpy(np.ascontiguousarray(pixels[:, :, ::-1].transpose(2, 0, 1)))
    mean = torch.tensor(DAVIS_MEAN).view(3, 1, 1)
    std = torch.tensor(DAVIS_STD).view(3, 1, 1)
    return (tensor - mean) / std


def crop_to_patches(frame: torch.Tensor, patch_size: int) -> torch.Tensor:
    """The top-left part of a (3, H, W) frame that whole patches cover: what DINO's strided patch convolution
    sees (timm's patch embedding insists on whole patches)."""
    return frame[:, : frame.shape[1] // patch_size * patch_size, : frame.shape[2] // patch_size * patch_size]


def vit_patch_feature_fn(model: torch.nn.Module, device: torch.device) -> PatchFeatureFn:
    """Frame -> last-layer patch features of a timm ViT, on ``device``."""
    from wtours.trainers.evaluation.features import patch_features

    model = model.to(device).eval()

    def features(frame: torch.Tensor) -> torch.Tensor:
        return patch_features(model, frame[None].to(device))[0]

    return features


def predict_sequence(
    layout: DavisLayout,
    sequence: str,
    out_dir: Path,
    feature_fn: PatchFeatureFn,
    patch_size: int,
    config: PropagationConfig = PropagationConfig(),
) -> None:
    """Write ``out_dir/<sequence>/<frame>.png`` for every frame: frame 0 is the given mask, the rest propagated."""
    from PIL import Image

    frames = layout.frames(sequence)
    first_mask, palette = read_mask(layout.annotation(sequence, frames[0]))
    palette = palette or davis_palette()
    height, width = first_mask.shape
    size = model_input_size(height, width, config.short_side, config.long_side_multiple)
    grid = (size[0] // patch_size, size[1] // patch_size)
    if min(grid) == 0:
        raise WtoursError(f"{sequence}: frames of {size[1]}x{size[0]} px hold no {patch_size}-px patch")
    first_mask_no_void = np.where(first_mask == VOID_LABEL, 0, first_mask)
    num_labels = int(first_mask_no_void.max()) + 1
    first_labels = torch.from_numpy(
        np.asarray(Image.fromarray(first_mask_no_void).resize((grid[1], grid[0]), Image.NEAREST)).copy()
    )
    write_mask(out_dir / sequence / f"{frames[0].stem}.png", first_mask, palette)
    frame_features = (feature_fn(crop_to_patches(load_frame(path, size), patch_size)) for path in frames)
    propagated = segment_sequence(frame_features, first_labels, num_labels, config)
    for path, soft in zip(frames[1:], propagated, strict=True):
        with Image.open(path) as image:
            frame_size = (image.height, image.width)
        write_mask(out_dir / sequence / f"{path.stem}.png", soft_labels_to_mask(soft, patch_size, frame_size), palette)


def evaluate_sequence(
    layout: DavisLayout, sequence: str, predictions_dir: Path, bound_th: float = 0.008, void: str = "background"
) -> list[dict]:
    """Per-object J and F statistics of one sequence's predicted masks against the annotations.

    Objects are the labels 1..K of the first annotation; scores cover every frame but the first (given)
    and the last (as the DAVIS-2017 toolkit). Void pixels are background (the toolkit's semi-supervised rule)
    or, with ``void="ignore"``, left out of both masks. Frames are read one at a time.
    """
    if void not in VOID_RULES:
        raise WtoursError(f"--void {void!r}: one of {', '.join(VOID_RULES)}")
    frames = layout.frames(sequence)
    first_mask, _ = read_mask(layout.annotation(sequence, frames[0]))
    num_objects = int(np.where(first_mask == VOID_LABEL, 0, first_mask).max())
    region: list[list[float]] = [[] for _ in range(num_objects)]
    contour: list[list[float]] = [[] for _ in range(num_objects)]
    for frame in frames[1:-1]:
        truth_path = layout.annotation(sequence, frame)
        predicted_path = predictions_dir / sequence / f"{frame.stem}.png"
        if not truth_path.is_file():
            raise WtoursError(f"{truth_path}: annotation missing")
        if not predicted_path.is_file():
            raise WtoursError(f"{predicted_path}: prediction missing")
        truth, _ = read_mask(truth_path)
        predicted, _ = read_mask(predicted_path)
        if predicted.shape != truth.shape:
            raise WtoursError(f"{predicted_path}: size {predicted.shape} differs from the annotation's {truth.shape}")
        void_pixels = truth == VOID_LABEL if void == "ignore" else None  # background: 255 is no object's label
        for index in range(num_objects):
            label = index + 1
            region[index].append(region_similarity(predicted == label, truth == label, void_pixels))
            contour[index].append(contour_accuracy(predicted == label, truth == label, void_pixels, bound_th))
    rows = []
    for index in range(num_objects):
        j_stats, f_stats = per_frame_statistics(region[index]), per_frame_statistics(contour[index])
        rows.append(
            {
                "sequence": sequence,
                "object": index + 1,
                "frames": len(region[index]),
                **{f"J_{name}": value for name, value in j_stats.items()},
                **{f"F_{name}": value for name, value in f_stats.items()},
            }
        )
    return rows


def summarise(rows: Sequence[dict]) -> dict[str, float]:
    """Global scores as the DAVIS-2017 benchmark reports them: means over all objects of all sequences."""
    summary = {}
    for measure in ("J", "F"):
        for stat in ("mean", "recall", "decay"):
            summary[f"{measure}_{stat}"] = float(np.nanmean([row[f"{measure}_{stat}"] for row in rows]))
    summary["JF_mean"] = (summary["J_mean"] + summary["F_mean"]) / 2
    return summary


def write_rows_csv(path: Path, rows: Sequence[dict]) -> None:
    from wtours.store import atomic_write_text

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buffer.getvalue())


def run_davis(
    davis_root: Path,
    out_dir: Path,
    feature_fn: PatchFeatureFn,
    patch_size: int,
    *,
    config: PropagationConfig = PropagationConfig(),
    split: str = "val",
    resolution: str = "480p",
    sequences: Sequence[str] | None = None,
    bound_th: float = 0.008,
    provenance: dict | None = None,
) -> dict:
    """Propagate, write palette PNGs under ``out_dir/<sequence>/``, score them, and write
    ``out_dir/per_object.csv`` (one row per sequence and object) and ``out_dir/summary.json``
    (with ``provenance``, e.g. which weights, added as is)."""
    from wtours.progress import make_progress
    from wtours.store import atomic_write_json

    layout = DavisLayout(Path(davis_root), resolution)
    names = layout.sequences(split, sequences)
    if not names:
        raise WtoursError(f"{davis_root}: the {split} split lists no sequences")
    rows: list[dict] = []
    with make_progress() as progress:
        task = progress.add_task("DAVIS sequences", total=len(names))
        for name in names:
            predict_sequence(layout, name, out_dir, feature_fn, patch_size, config)
            rows += evaluate_sequence(layout, name, out_dir, bound_th, config.void)
            progress.advance(task)
    summary = {
        **summarise(rows),
        "sequences": len(names),
        "objects": len(rows),
        "split": split,
        "resolution": resolution,
        "bound_th": bound_th,
        "config": asdict(config),
        **(provenance or {}),
    }
    write_rows_csv(out_dir / "per_object.csv", rows)
    atomic_write_json(out_dir / "summary.json", summary)
    return summary


def run_davis_for_encoder(
    weights: Path,
    davis_root: Path,
    out_dir: Path,
    *,
    arch: str | None = None,
    device: str = "auto",
    **options,
) -> dict:
    """`run_davis` with the last-layer patch features of the encoder in ``weights`` (safetensors, or a
    run folder holding its exported encoder)."""
    from wtours.store import encoder_weights
    from wtours.trainers.evaluation.features import file_digest, load_encoder, patch_size_of, pick_device

    weights = encoder_weights(weights)
    model = load_encoder(arch, weights)
    provenance = {"weights": str(weights), "weights_sha256_16": file_digest(weights), "arch": arch}
    feature_fn = vit_patch_feature_fn(model, pick_device(device))
    return run_davis(davis_root, out_dir, feature_fn, patch_size_of(model), provenance=provenance, **options)
