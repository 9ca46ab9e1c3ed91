"""Linear probe on frozen features, by default exactly as DINO's `eval_linear.py` runs it on one GPU.

Protocol ``dino`` (the default; DINO's script and the DoRA release's copy of it):

- features: the normed [CLS] tokens of the last ``n_last_blocks`` blocks, concatenated (4 for ViT-S; 1 plus the
  mean patch token for ViT-B), computed by the frozen encoder under no_grad;
- training images: RandomResizedCrop(crop) + RandomHorizontalFlip, drawn anew every epoch, so the encoder runs
  over the training set once per epoch; val images: Resize(resize, bicubic) + CenterCrop(crop), encoded once
  (the encoder is frozen, so every epoch would compute the same val features);
- a linear layer (weights N(0, 0.01), bias 0), SGD with momentum 0.9 and no weight decay, lr = lr x batch / 256
  (DINO: lr 0.001 at 128 images per GPU), ``CosineAnnealingLR(epochs, eta_min=0)`` stepped once per epoch,
  100 epochs, batches in the order of a ``DistributedSampler(seed)`` at world size 1;
- reported: val top-1 after the last epoch (``top1``) and the best epoch's (``best_top1``: the number DINO's
  script prints).

Protocol ``cached`` changes one thing: the training images are encoded once, from the same centre crops as the
val images (no augmentation), and both splits' features are cached on disk, so 100 epochs cost seconds instead
of 100 passes of the encoder. Expect a point or two below DINO's numbers from the missing augmentation alone.

The DoRA release's README ran DINO's script with ``--lr 0.01 --batch_size_per_gpu 512`` on 4 GPUs (a total batch
of 2048); ``--lr 0.01 --batch-size 2048`` reproduces that here (the batch is the total: one process).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from wtours.errors import WtoursError
from wtours.trainers.evaluation.features import SeededImageFolder

PROTOCOLS = ("dino", "cached")
EpochBatches = Callable[[int], Iterable[tuple[torch.Tensor, torch.Tensor]]]  # epoch -> (features, labels) batches


@dataclass(frozen=True)
class LinearProbeConfig:
    """DINO's `eval_linear.py` defaults on one GPU."""

    epochs: int = 100
    lr: float = 0.001  # at a batch of 256; scaled linearly with the batch size
    batch_size: int = 128  # images per SGD step (DINO: 128 per GPU)
    momentum: float = 0.9
    weight_decay: float = 0.0
    seed: int = 0  # classifier initialisation, batch order and (protocol dino) the random crops
    protocol: str = "dino"  # or "cached": see the module docstring

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise WtoursError(f"--protocol {self.protocol!r}: one of {', '.join(PROTOCOLS)}")


@dataclass
class LinearProbeResult:
    top1: float
    top5: float
    best_top1: float  # the best epoch's val top-1: what DINO's script reports
    classifier: nn.Linear
    val_top1_per_epoch: list[float] = field(default_factory=list)
    lr_per_epoch: list[float] = field(default_factory=list)


def scaled_lr(lr: float, batch_size: int) -> float:
    """DINO's linear scaling rule: ``lr`` is the rate at a batch of 256."""
    return lr * batch_size / 256


def epoch_order(num_samples: int, seed: int, epoch: int) -> torch.Tensor:
    """The training order of ``epoch``: what DINO's ``DistributedSampler(dataset, seed=seed)`` gives after
    ``set_epoch(epoch)`` on one process (a permutation drawn with seed + epoch)."""
    return torch.randperm(num_samples, generator=torch.Generator().manual_seed(seed + epoch))


def top_k_accuracy(logits: torch.Tensor, labels: torch.Tensor, ks: tuple[int, ...] = (1, 5)) -> dict[int, float]:
    """Share of samples whose label is among the ``k`` highest logits (k capped at the number of classes)."""
    ranked = logits.topk(min(max(ks), logits.shape[1]), dim=1).indices
    hits = ranked == labels[:, None]
    return {k: hits[:, :k].any(dim=1).float().mean().item() for k in ks}


def _linear_classifier(dim: int, num_classes: int, seed: int) -> nn.Linear:
    classifier = nn.Linear(dim, num_classes)
    with torch.no_grad():  # as DINO's LinearClassifier, drawn from a seeded stream
        classifier.weight.normal_(mean=0.0, std=0.01, generator=torch.Generator().manual_seed(seed))
        classifier.bias.zero_()
    return classifier


@torch.no_grad()
def _evaluate(classifier: nn.Linear, features: torch.Tensor, labels: torch.Tensor, batch_size: int) -> dict[int, float]:
    classifier.eval()
    logits = torch.cat([classifier(chunk) for chunk in features.split(batch_size * 4)])
    return top_k_accuracy(logits, labels.to(logits.device))


def fit_linear_classifier(
    epoch_batches: EpochBatches,
    feature_dim: int,
    val_features: torch.Tensor,
    val_labels: torch.Tensor,
    num_classes: int,
    config: LinearProbeConfig = LinearProbeConfig(),
    device: torch.device | str = "cpu",
) -> LinearProbeResult:
    """DINO's optimisation: SGD (momentum, weight decay, lr scaled by batch / 256), a cosine over the epochs
    stepped once per epoch, val top-1 after every epoch. ``epoch_batches(epoch)`` yields that epoch's
    (features, labels) batches."""
    if len(val_features) == 0:
        raise WtoursError("the linear probe needs at least one validation image")
    device = torch.device(device)
    val_features, val_labels = val_features.float().to(device), val_labels.long().to(device)
    classifier = _linear_classifier(feature_dim, num_classes, config.seed).to(device)
    optimizer = torch.optim.SGD(
        classifier.parameters(),
        lr=scaled_lr(config.lr, config.batch_size),
        momentum=config.momentum,
        weight_decay=config.weight_decay,
    )
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, config.epochs, eta_min=0)
    loss_fn = nn.CrossEntropyLoss()
    val_top1_per_epoch, lr_per_epoch = [], []
    for epoch in range(config.epochs):
        lr_per_epoch.append(optimizer.param_groups[0]["lr"])
        classifier.train()
        for features, labels in epoch_batches(epoch):
            loss = loss_fn(classifier(features.float().to(device)), labels.long().to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        scheduler.step()
        val_top1_per_epoch.append(_evaluate(classifier, val_features, val_labels, config.batch_size)[1])
    final = _evaluate(classifier, val_features, val_labels, config.batch_size)
    return LinearProbeResult(
        top1=final[1],
        top5=final[5],
        best_top1=max(val_top1_per_epoch),
        classifier=classifier.cpu(),
        val_top1_per_epoch=val_top1_per_epoch,
        lr_per_epoch=lr_per_epoch,
    )


def train_linear_probe(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    val_features: torch.Tensor,
    val_labels: torch.Tensor,
    num_classes: int,
    config: LinearProbeConfig = LinearProbeConfig(),
    device: torch.device | str = "cpu",
) -> LinearProbeResult:
    """The probe on fixed training features (protocol ``cached``): each epoch visits them in `epoch_order`."""
    if len(train_features) == 0:
        raise WtoursError("the linear probe needs at least one training image")
    train_features, train_labels = train_features.float(), train_labels.long()

    def batches(epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for indices in epoch_order(len(train_features), config.seed, epoch).split(config.batch_size):
            yield train_features[indices], train_labels[indices]

    return fit_linear_classifier(
        batches, train_features.shape[1], val_features, val_labels, num_classes, config, device
    )


def augmented_feature_batches(
    model: nn.Module,
    dataset: SeededImageFolder,
    *,
    config: LinearProbeConfig,
    n_last_blocks: int,
    avgpool_patches: bool,
    num_workers: int,
    device: torch.device,
    advance: Callable[[int], None] = lambda images: None,
) -> EpochBatches:
    """Protocol ``dino``'s training batches: each epoch, every image of ``dataset`` (built with
    `dino_train_transform`) cropped anew, seeded per image by `crop_seeds`, in `epoch_order`, then encoded
    under no_grad. ``advance(images)`` is told of each encoded batch (progress)."""
    from wtours.trainers.evaluation.features import cls_features, crop_seeds

    model = model.to(device).eval()

    def batches(epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        dataset.set_seeds(crop_seeds(config.seed, epoch, len(dataset)))
        loader = torch.utils.data.DataLoader(
            dataset,
            batch_size=config.batch_size,
            sampler=epoch_order(len(dataset), config.seed, epoch).tolist(),
            num_workers=num_workers,
            pin_memory=device.type == "cuda",
        )
        for images, labels in loader:
            yield cls_features(model, images.to(device), n_last_blocks, avgpool_patches), labels
            advance(len(labels))

    return batches


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
    untrained: bool = False,
) -> dict:
    """Probe the encoder in ``weights`` by ``config.protocol``, write the results JSON atomically, return it.
    ``untrained=True`` probes the same network before training instead (the floor): the run's encoder at step 0
    (``encoder_init.safetensors``), else the architecture at random initialisation, whose features are not cached
    (nothing names them but the trained file)."""
    from wtours.store import atomic_write_json, encoder_weights, initial_encoder_weights
    from wtours.trainers.evaluation.features import file_digest

    weights = encoder_weights(weights)
    random_init = False
    if untrained:
        if initial_encoder_weights(weights).is_file():
            weights = initial_encoder_weights(weights)
        else:
            random_init, cache_dir = True, None
    result, info = probe_encoder(
        weights,
        train_dir,
        val_dir,
        arch=arch,
        config=config,
        n_last_blocks=n_last_blocks,
        avgpool_patches=avgpool_patches,
        resize=resize,
        crop=crop,
        cache_dir=cache_dir,
        feature_batch_size=feature_batch_size,
        num_workers=num_workers,
        device=device,
        untrained=random_init,
    )
    report = {
        "untrained": untrained,
        "top1": result.top1,
        "top5": result.top5,
        "best_top1": result.best_top1,
        "val_top1_per_epoch": result.val_top1_per_epoch,
        "lr_per_epoch": result.lr_per_epoch,
        **info,
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


def probe_encoder(
    weights: Path,
    train_dir: Path,
    val_dir: Path,
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
    untrained: bool = False,
) -> tuple[LinearProbeResult, dict]:
    """The probe itself: (result, counts for the report). Val features (and, protocol ``cached``, training
    features) come from the feature cache when ``cache_dir`` holds them. ``untrained``: `load_encoder`'s (the
    caller keeps the cache away from it)."""
    from wtours.progress import make_progress
    from wtours.trainers.evaluation.features import (
        EvalTransform,
        dino_train_transform,
        extract_dataset_features,
        load_encoder,
        pick_device,
    )

    torch_device = pick_device(device)
    model = load_encoder(arch, weights, untrained=untrained)
    if not 1 <= n_last_blocks <= len(model.blocks):
        raise WtoursError(f"--n-last-blocks {n_last_blocks}: the encoder has {len(model.blocks)} blocks")
    features = dict(
        weights_path=weights,
        cache_dir=cache_dir,
        transform=EvalTransform(resize=resize, crop=crop),
        n_last_blocks=n_last_blocks,
        avgpool_patches=avgpool_patches,
        batch_size=feature_batch_size,
        num_workers=num_workers,
        device=torch_device,
    )
    val = extract_dataset_features(model, val_dir, **features)
    if config.protocol == "cached":
        train = extract_dataset_features(model, train_dir, **features)
        if train.classes != val.classes:
            raise WtoursError(f"{train_dir} and {val_dir} have different class folders")
        result = train_linear_probe(
            train.features, train.labels, val.features, val.labels, len(val.classes), config, torch_device
        )
        train_images = len(train.labels)
    else:
        dataset = SeededImageFolder(train_dir, dino_train_transform(crop))
        if len(dataset) == 0:
            raise WtoursError(f"{train_dir}: no images found")
        if dataset.classes != val.classes:
            raise WtoursError(f"{train_dir} and {val_dir} have different class folders")
        train_images = len(dataset)
        with make_progress() as progress:
            task = progress.add_task("linear probe: crops encoded every epoch", total=config.epochs * train_images)
            batches = augmented_feature_batches(
                model,
                dataset,
                config=config,
                n_last_blocks=n_last_blocks,
                avgpool_patches=avgpool_patches,
                num_workers=num_workers,
                device=torch_device,
                advance=lambda images: progress.advance(task, images),
            )
            result = fit_linear_classifier(
                batches, val.features.shape[1], val.features, val.labels, len(val.classes), config, torch_device
            )
    info = {
        "protocol": config.protocol,
        "classes": len(val.classes),
        "train_images": train_images,
        "val_images": len(val.labels),
        "feature_dim": int(val.features.shape[1]),
        "scaled_lr": scaled_lr(config.lr, config.batch_size),
    }
    return result, info
