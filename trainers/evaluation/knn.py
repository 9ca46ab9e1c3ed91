"""Weighted k-NN evaluation of a frozen encoder on an ImageFolder-style labelled set, as DINO's `eval_knn.py`.

Both splits go through DINO's evaluation transform (Resize(256, bicubic) + CenterCrop(224) at the default 224 px;
256/224 of ``image_size`` otherwise) and the encoder's own output: the normed [CLS] token of the last block (DINO
evaluates its teacher's backbone; a run folder's exported encoder is that teacher), in fp32 as DINO computes
it, L2-normalised. Each validation image votes with its k most similar training images (cosine similarity), each
vote weighted by exp(similarity / T), T = 0.07; the class with the largest sum wins. ``wtours eval knn`` defaults
to the study set of the embedded sample (wtours.sample.study: crops of 20 real photographs, class = photo).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from wtours.errors import WtoursError


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


def run_knn(
    encoder_path: Path,
    labelled_dir: Path,
    *,
    ks: tuple[int, ...] = (10, 20),
    temperature: float = 0.07,
    image_size: int = 224,
    batch_size: int = 64,
    device: str = "auto",
    num_workers: int = 0,
    out_json: Path | None = None,
    untrained: bool = False,
) -> dict[str, Any]:
    """Weighted k-NN of an exported encoder (a run folder or its ``encoder.safetensors``) on ``labelled_dir``;
    the report (written to ``out_json`` if given, atomically) holds top-1 per k and the majority-class floor.
    ``untrained=True`` evaluates the same network before training (the run's encoder at step 0) instead."""
    from wtours.store import atomic_write_json, encoder_weights
    from wtours.trainers.evaluation.features import load_encoder, pick_device

    encoder_path = encoder_weights(encoder_path)
    encoder = load_encoder(None, encoder_path, untrained=untrained)
    with torch.inference_mode():
        result = evaluate_knn(
            encoder,
            labelled_dir,
            ks=ks,
            temperature=temperature,
            image_size=image_size,
            batch_size=batch_size,
            device=pick_device(device),
            num_workers=num_workers,
        )
    report = {
        "encoder": str(encoder_path),
        "untrained": untrained,
        "architecture": encoder.pretrained_cfg.get("architecture"),
        "labelled_set": str(labelled_dir),
        "classes": result.classes,
        "n_train": result.n_train,
        "n_val": result.n_val,
        "temperature": temperature,
        "image_size": image_size,
        "top1": {str(k): value for k, value in result.top1.items()},
        "majority_class_top1": result.chance,
    }
    if out_json is not None:
        atomic_write_json(out_json, report)
    return report
