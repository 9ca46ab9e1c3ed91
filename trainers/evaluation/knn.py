"""Weighted k-NN evaluation of a frozen encoder on an ImageFolder-style labelled set, as DINO's `eval_knn.py`.

Both splits go through DINO's evaluation transform (Resize(256, bicubic) + CenterCrop(224) at the default 224 px;
256/224 of ``image_size`` otherwise) and the encoder's own output: the normed [CLS] token of the last block (DINO
evaluates its teacher's backbone; a run folder's exported encoder is that teacher), in fp32 as DINO computes
it, L2-normalised. Each validation image votes with its k most similar training images (cosine similarity), each
vote weighted by exp(similarity / T), T = 0.07; the class with the largest sum wins. The built-in labelled set
cuts the embedded sample's annotated objects (person, bus) out of its decoded frames.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from wtours.errors import WtoursError

_DONE_MARKER = ".complete"


@dataclass
class KnnResult:
    top1: dict[int, float]  # k -> accuracy in percent
    classes: list[str]
    n_train: int
    n_val: int
    chance: float  # percent correct when always answering the most frequent validation class


def weighted_knn_predict(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    query_features: torch.Tensor,
    *,
    k: int,
    num_classes: int,
    temperature: float = 0.07,
    chunk: int = 1024,
) -> torch.Tensor:
    """Class index per query: sum over its k nearest training items of exp(cos / T) per class, argmax (DINO's
    `knn_classifier`: its top-1 is the first of the classes sorted by that sum).

    Features must already be L2-normalised (so the dot product is the cosine similarity).
    """
    k = min(k, len(train_features))
    predictions = []
    for start in range(0, len(query_features), chunk):
        similarity = query_features[start : start + chunk] @ train_features.T
        top_similarity, top_index = similarity.topk(k, dim=1)
        votes = torch.zeros(len(similarity), num_classes, device=similarity.device)
        votes.scatter_add_(1, train_labels[top_index], (top_similarity / temperature).exp())
        predictions.append(votes.argmax(dim=1))
    return torch.cat(predictions)


def _image_folder(folder: Path, image_size: int):
    from torchvision import datasets

    from wtours.trainers.evaluation.features import EvalTransform

    # DINO's evaluation transform: resize to 256/224 of the crop, then the central crop.
    transform = EvalTransform(resize=round(image_size * 256 / 224), crop=image_size).build()
    try:
        return datasets.ImageFolder(str(folder), transform=transform)
    except (FileNotFoundError, OSError) as err:
        raise WtoursError(f"{folder}: not an ImageFolder-style set (<class>/<image> files): {err}") from None


@torch.no_grad()
def extract_features(
    encoder: nn.Module, dataset, *, batch_size: int = 64, device: torch.device, num_workers: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """L2-normalised [CLS] features (the encoder's pooled output) and labels of a whole dataset, computed in
    fp32 (DINO's `extract_features`: no autocast; bf16 moves cosine similarities enough to reorder neighbours)."""
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, num_workers=num_workers)
    encoder.eval().float().to(device)
    features, labels = [], []
    for images, targets in loader:
        with torch.autocast(device.type, enabled=False):  # fp32 even inside a caller's autocast region
            output = encoder(images.to(device, dtype=torch.float32, non_blocking=True))
        features.append(F.normalize(output, dim=1, p=2))
        labels.append(targets.to(device))
    return torch.cat(features), torch.cat(labels)


def evaluate_knn(
    encoder: nn.Module,
    labelled_dir: Path,
    *,
    ks: tuple[int, ...] = (10, 20),
    temperature: float = 0.07,
    image_size: int = 224,
    batch_size: int = 64,
    device: torch.device | None = None,
    num_workers: int = 0,
) -> KnnResult:
    """k-NN top-1 accuracy of ``encoder`` with ``labelled_dir/train`` as memory and ``labelled_dir/val``
    as queries (both ImageFolder-style, same class folders)."""
    device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    train_set = _image_folder(labelled_dir / "train", image_size)
    val_set = _image_folder(labelled_dir / "val", image_size)
    if train_set.classes != val_set.classes:
        raise WtoursError(
            f"{labelled_dir}: train/ and val/ have different classes "
            f"({train_set.classes} vs {val_set.classes})"
        )
    loader_kwargs = dict(batch_size=batch_size, device=device, num_workers=num_workers)
    train_features, train_labels = extract_features(encoder, train_set, **loader_kwargs)
    val_features, val_labels = extract_features(encoder, val_set, **loader_kwargs)
    num_classes = len(train_set.classes)
    top1 = {}
    for k in ks:
        predicted = weighted_knn_predict(
            train_features, train_labels, val_features, k=k, num_classes=num_classes, temperature=temperature
        )
        top1[k] = 100.0 * float((predicted == val_labels).float().mean())
    chance = 100.0 * float(torch.bincount(val_labels, minlength=num_classes).max()) / len(val_labels)
    return KnnResult(top1, list(train_set.classes), len(train_set), len(val_set), chance)


def make_sample_labelled_set(
    out_dir: Path,
    *,
    seconds: float = 6.0,
    seed: int = 0,
    crop_size: int = 64,
    per_class: int = 80,
    val_fraction: float = 0.25,
) -> Path:
    """Write ``out_dir/{train,val}/<class>/*.png``: square crops of the embedded sample's annotated
    objects, by class, cut from the decoded frames of a rendered walking-tour sample.

    Frames are split by time: whole seconds alternate between train and val in a 3:1 pattern, so the two
    splits never share a frame. Idempotent: a finished set is returned as is.
    """
    import av
    import numpy as np
    from PIL import Image

    from wtours.sample import render_walking_tour

    out_dir = Path(out_dir)
    if (out_dir / _DONE_MARKER).is_file():
        return out_dir
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        video = staging / "walk.mp4"
        truth = render_walking_tour(video, seconds=seconds, seed=seed)
        val_period = max(2, round(1 / val_fraction))
        crops: dict[tuple[str, str], list[Image.Image]] = {}
        # Take every 3rd frame: neighbouring frames are near-duplicates.
        wanted = set(range(0, truth.n_frames, 3))
        with av.open(str(video)) as container:
            for index, frame in enumerate(container.decode(video=0)):
                if index not in wanted:
                    continue
                split = "val" if int(index / truth.fps) % val_period == val_period - 1 else "train"
                image = frame.to_image()
                boxes = truth.boxes[index] if index < len(truth.boxes) else []
                for box in boxes:
                    crop = _square_crop(image, box.x0, box.y0, box.x1, box.y1)
                    if crop is not None:
                        crops.setdefault((split, box.label), []).append(crop.resize((crop_size, crop_size)))
        video.unlink()
        limit = {"train": per_class, "val": max(1, round(per_class * val_fraction / (1 - val_fraction)))}
        for (split, label), images in sorted(crops.items()):
            folder = staging / split / label
            folder.mkdir(parents=True, exist_ok=True)
            chosen = np.linspace(0, len(images) - 1, min(limit[split], len(images))).round().astype(int)
            for number, position in enumerate(sorted(set(chosen.tolist()))):
                images[position].save(folder / f"{label}_{number:04d}.png")
        classes = {label for _, label in crops}
        for split in ("train", "val"):
            for label in classes:
                if not (staging / split / label).is_dir():
                    raise WtoursError(f"sample labelled set: no {label!r} crops for {split}; render longer")
        (staging / _DONE_MARKER).write_text("ok\n", encoding="utf-8")
        if out_dir.exists():
            shutil.rmtree(out_dir)
        staging.rename(out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out_dir


def _square_crop(image, x0: float, y0: float, x1: float, y1: float, min_side: int = 16):
    """A square around the box's centre, side = the box's longer side, shifted to stay inside."""
    side = max(x1 - x0, y1 - y0)
    if min(x1 - x0, y1 - y0) < min_side:
        return None
    side = min(side, image.width, image.height)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    left = min(max(0.0, cx - side / 2), image.width - side)
    top = min(max(0.0, cy - side / 2), image.height - side)
    return image.crop((round(left), round(top), round(left + side), round(top + side)))

