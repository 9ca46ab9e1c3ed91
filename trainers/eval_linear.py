"""Linear probe on frozen features (DINO's protocol): a linear classifier on the [CLS] tokens of the
last blocks, trained with SGD (momentum 0.9, lr 0.01 x batch / 256, cosine to 0) and scored top-1 / top-5.

The features are computed once per encoder and dataset (and cached, see `wtours.trainers.features`), so
100 epochs cost seconds. Unlike DINO, training images are not augmented (random crops would need the
encoder in every epoch): expect a point or two below DINO's numbers from that alone.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from wtours.errors import WtoursError


@dataclass(frozen=True)
class LinearProbeConfig:
    epochs: int = 100
    lr: float = 0.01  # at a batch of 256; scaled linearly with the batch size
    batch_size: int = 512
    momentum: float = 0.9
    weight_decay: float = 0.0
    seed: int = 0


@dataclass
class LinearProbeResult:
    top1: float
    top5: float
    best_top1: float  # the best epoch's val top-1: what DINO's script reports
    classifier: nn.Linear
    val_top1_per_epoch: list[float] = field(default_factory=list)


def scaled_lr(lr: float, batch_size: int) -> float:
    """DINO's linear scaling rule: ``lr`` is the rate at a batch of 256."""
    return lr * batch_size / 256


def top_k_accuracy(logits: torch.Tensor, labels: torch.Tensor, ks: tuple[int, ...] = (1, 5)) -> dict[int, float]:
    """Share of samples whose label is among the ``k`` highest logits (k capped at the number of classes)."""
    ranked = logits.topk(min(max(ks), logits.shape[1]), dim=1).indices
    hits = ranked == labels[:, None]
    return {k: hits[:, :k].any(dim=1).float().mean().item() for k in ks}


def _linear_classifier(dim: int, num_classes: int) -> nn.Linear:
    classifier = nn.Linear(dim, num_classes)
    nn.init.normal_(classifier.weight, mean=0.0, std=0.01)  # as DINO's LinearClassifier
    nn.init.zeros_(classifier.bias)
    return classifier


@torch.no_grad()
def _evaluate(classifier: nn.Linear, features: torch.Tensor, labels: torch.Tensor, batch_size: int) -> dict[int, float]:
    logits = torch.cat([classifier(chunk) for chunk in features.split(batch_size * 4)])
    return top_k_accuracy(logits, labels.to(logits.device))


def train_linear_probe(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    val_features: torch.Tensor,
    val_labels: torch.Tensor,
    num_classes: int,
    config: LinearProbeConfig = LinearProbeConfig(),
    device: torch.device | str = "cpu",
) -> LinearProbeResult:
    """Fit a linear classifier on (features, labels) and score it on the validation set after every epoch."""
    from wtours.trainers.schedules import cosine_schedule

    if len(train_features) == 0 or len(val_features) == 0:
        raise WtoursError("the linear probe needs at least one training and one validation image")
    device = torch.device(device)
    torch.manual_seed(config.seed)
    order = torch.Generator().manual_seed(config.seed)
    train_features, train_labels = train_features.float().to(device), train_labels.long().to(device)
    val_features, val_labels = val_features.float().to(device), val_labels.long().to(device)
    classifier = _linear_classifier(train_features.shape[1], num_classes).to(device)
    optimizer = torch.optim.SGD(
        classifier.parameters(), lr=0.0, momentum=config.momentum, weight_decay=config.weight_decay
    )
    steps_per_epoch = -(-len(train_features) // config.batch_size)
    learning_rates = cosine_schedule(scaled_lr(config.lr, config.batch_size), 0.0, config.epochs * steps_per_epoch)
    loss_fn = nn.CrossEntropyLoss()
    val_top1_per_epoch = []
    step = 0
    for _epoch in range(config.epochs):
        permutation = torch.randperm(len(train_features), generator=order).to(device)
        for batch in permutation.split(config.batch_size):
            for group in optimizer.param_groups:
                group["lr"] = float(learning_rates[step])
            loss = loss_fn(classifier(train_features[batch]), train_labels[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
        val_top1_per_epoch.append(_evaluate(classifier, val_features, val_labels, config.batch_size)[1])
    final = _evaluate(classifier, val_features, val_labels, config.batch_size)
    return LinearProbeResult(
        top1=final[1],
        top5=final[5],
        best_top1=max(val_top1_per_epoch),
        classifier=classifier.cpu(),
        val_top1_per_epoch=val_top1_per_epoch,
    )


def run_linear_probe(
    weights: Path,
    train_dir: Path,
    val_dir: Path,
    out_json: Path,
    *,
    arch: str | None = None,
    config: LinearProbeConfig = LinearProbeConfig(),
    n_last_blocks: int = 4,
    avgpool_patches: bool = False,
    resize: int = 256,
    crop: int = 224,
    cache_dir: Path | None = None,
    feature_batch_size: int = 128,
    num_workers: int = 2,
    device: str = "auto",
) -> dict:
    """Extract (or read cached) features of both splits, train the probe, write the results JSON atomically."""
    from wtours.store import atomic_write_json
    from wtours.trainers.features import (
        EvalTransform,
        encoder_file,
        extract_dataset_features,
        file_digest,
        load_encoder,
        pick_device,
    )

    weights = encoder_file(weights)
    torch_device = pick_device(device)
    model = load_encoder(arch, weights)
    if not 1 <= n_last_blocks <= len(model.blocks):
        raise WtoursError(f"--n-last-blocks {n_last_blocks}: the encoder has {len(model.blocks)} blocks")
    transform = EvalTransform(resize=resize, crop=crop)
    splits = {}
    for name, root in (("train", train_dir), ("val", val_dir)):
        splits[name] = extract_dataset_features(
            model,
            root,
            weights_path=weights,
            cache_dir=cache_dir,
            transform=transform,
            n_last_blocks=n_last_blocks,
            avgpool_patches=avgpool_patches,
            batch_size=feature_batch_size,
            num_workers=num_workers,
            device=torch_device,
        )
    if splits["train"].classes != splits["val"].classes:
        raise WtoursError(f"{train_dir} and {val_dir} have different class folders")
    result = train_linear_probe(
        splits["train"].features,
        splits["train"].labels,
        splits["val"].features,
        splits["val"].labels,
        num_classes=len(splits["train"].classes),
        config=config,
        device=torch_device,
    )
    report = {
        "top1": result.top1,
        "top5": result.top5,
        "best_top1": result.best_top1,
        "val_top1_per_epoch": result.val_top1_per_epoch,
        "classes": len(splits["train"].classes),
        "train_images": len(splits["train"].labels),
        "val_images": len(splits["val"].labels),
        "feature_dim": int(splits["train"].features.shape[1]),
        "weights": str(weights),
        "weights_sha256_16": file_digest(weights),
        "arch": arch,
        "train_dir": str(train_dir),
        "val_dir": str(val_dir),
        "n_last_blocks": n_last_blocks,
        "avgpool_patches": avgpool_patches,
        "resize": resize,
        "crop": crop,
        "config": asdict(config),
    }
    atomic_write_json(out_json, report)
    return report
