"""Frozen-encoder features for evaluation: load a timm ViT from safetensors, take its [CLS] tokens
(linear probe) or its last-layer patch tokens (label propagation), and cache dataset features on disk.

The cache key is the weights' content hash + the dataset's file list + the transform, so a re-run with the
same encoder on the same images reads the features back instead of recomputing them, and any change to
one of the three computes them afresh.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from wtours.errors import WtoursError
from wtours.store import encoder_weights, file_sha256, initial_encoder_weights

# DINO's normalisation in eval_linear.py, eval_knn.py and visualize_attention.py is timm's ImageNet mean and std,
# the training views' (its DAVIS reader uses a red std of 0.228 instead: see `wtours.trainers.evaluation.davis`).
from wtours.trainers.training.views import IMAGENET_MEAN, IMAGENET_STD

# Prefixes that training checkpoints put before the encoder's own parameter names
# (DDP's "module.", DINO's student/teacher wrapper "backbone.").
_WRAPPER_PREFIXES = ("module.", "backbone.", "encoder.")


def pick_device(name: str = "auto") -> torch.device:
    """The training engine's rule: ``auto`` -> the GPU when there is one, else the CPU; ``cuda`` without a
    GPU is an error rather than a silent CPU run."""
    from wtours.trainers.training.engine import resolve_device

    return resolve_device(name)


def _strip_wrapper_prefixes(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    changed = True
    while changed and state:
        changed = False
        for prefix in _WRAPPER_PREFIXES:
            if all(key.startswith(prefix) for key in state):
                state = {key[len(prefix) :]: value for key, value in state.items()}
                changed = True
    return state


def load_encoder(
    arch: str | None, weights_path: Path, *, dynamic_img_size: bool = True, untrained: bool = False
) -> nn.Module:
    """A timm ViT (no classifier) with the weights of ``weights_path`` (safetensors), in eval mode.

    ``weights_path`` may also be a run folder (``runs/<name>``): its exported encoder is used. ``arch`` is a
    timm name such as ``vit_small_patch16_224``; None reads it from the file's metadata, which
    `wtours.trainers.training.backbones.export_encoder` writes. Works offline: nothing is downloaded. At input sizes
    other than the training size, the position table is resized by the file's ``pos_embed`` rule (default:
    DINO's official interpolation, see `wtours.trainers.training.backbones`).
    ``untrained=True`` gives the same network before training instead, the floor a trained encoder's
    evaluation should beat: the run's own encoder at step 0 (``encoder_init.safetensors``, which the engine
    writes beside the encoder), else the architecture at timm's random initialisation (seed 0).
    """
    import timm
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file

    weights_path = encoder_weights(weights_path)
    initial = initial_encoder_weights(weights_path)
    if untrained and weights_path != initial and initial.is_file():
        return load_encoder(arch, initial, dynamic_img_size=dynamic_img_size)
    if not weights_path.is_file():
        raise WtoursError(f"{weights_path}: no such weights file")
    try:
        with safe_open(str(weights_path), framework="pt") as handle:
            metadata = handle.metadata() or {}
        state = load_file(str(weights_path))
    except (SafetensorError, OSError, ValueError) as err:
        raise WtoursError(f"{weights_path}: not a readable safetensors file ({err})") from None
    overrides: dict = {}
    pos_embed_rule = metadata.get("pos_embed", "dino")
    if arch is None:
        if "timm_name" not in metadata:
            raise WtoursError(f"{weights_path}: the file does not name its architecture; pass --arch")
        arch = metadata["timm_name"]
        overrides = json.loads(metadata.get("kwargs", "{}"))
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = timm.create_model(
                arch, pretrained=False, num_classes=0, dynamic_img_size=dynamic_img_size, **overrides
            )
    except RuntimeError as err:  # timm's "Unknown model" error
        raise WtoursError(f"--arch {arch!r}: {err}") from None
    from timm.models.vision_transformer import VisionTransformer

    from wtours.trainers.training.backbones import with_pos_embed_resize

    if type(model) is VisionTransformer:  # other timm families keep their own resizing
        try:
            with_pos_embed_resize(model, pos_embed_rule)
        except ValueError as err:
            raise WtoursError(f"{weights_path}: {err}") from None
    if untrained:
        return model.eval()
    try:
        result = model.load_state_dict(_strip_wrapper_prefixes(state), strict=False)
    except RuntimeError as err:  # shapes differ: another width, depth or patch size
        first_problem = str(err).split("\n\t")[1] if "\n\t" in str(err) else str(err)
        raise WtoursError(f"{weights_path}: weights do not fit {arch} ({first_problem.strip()})") from None
    if result.missing_keys or result.unexpected_keys:
        raise WtoursError(
            f"{weights_path}: weights do not fit {arch} "
            f"(missing {result.missing_keys[:3]}, unexpected {result.unexpected_keys[:3]})"
        )
    return model.eval()


def patch_size_of(model: nn.Module) -> int:
    return int(model.patch_embed.patch_size[0])


def file_digest(path: Path, *, length: int = 16) -> str:
    """Leading hex digits of the SHA-256 of a file (weights may be gigabytes: read in chunks)."""
    return file_sha256(path)[:length]


@torch.no_grad()
def cls_features(
    model: nn.Module, images: torch.Tensor, n_last_blocks: int = 4, avgpool_patches: bool = False
) -> torch.Tensor:
    """DINO's linear-probe features: the normed [CLS] token of each of the last ``n_last_blocks`` blocks,
    concatenated (ViT-S: 4 blocks); ``avgpool_patches`` adds the mean of the last block's normed patch tokens
    (DINO's choice for ViT-B with one block). Shape (batch, n_last_blocks * dim [+ dim]).

    With one block, DINO's `eval_linear.py` interleaves the two (``cat((cls[..., None], mean[..., None]), -1)``
    flattened: cls_0, mean_0, cls_1, ...); so does this, so a probe's weights line up with DINO's. With more
    blocks DINO's expression fails (the shapes differ); here the mean is appended after the [CLS] tokens."""
    has_cls = getattr(model, "num_prefix_tokens", 1) > 0
    outputs = model.forward_intermediates(
        images, indices=n_last_blocks, return_prefix_tokens=has_cls, norm=True, output_fmt="NLC",
        intermediates_only=True,
    )  # fmt: skip
    if has_cls:
        patches = [tokens for tokens, _ in outputs]
        parts = [prefix[:, 0] for _, prefix in outputs]
    else:
        # Encoders without a [CLS] token (VideoMAE exported as an image encoder): each block's mean patch
        # token stands in, the pooled representation they are trained and evaluated with.
        patches = list(outputs)
        parts = [tokens.mean(dim=1) for tokens in patches]
    if avgpool_patches and n_last_blocks == 1:
        return torch.stack([parts[0], patches[-1].mean(dim=1)], dim=-1).flatten(1)
    if avgpool_patches:
        parts.append(patches[-1].mean(dim=1))
    return torch.cat(parts, dim=-1)


@torch.no_grad()
def patch_features(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """The last block's normed patch tokens on the patch grid: (batch, rows, cols, dim)."""
    has_cls = getattr(model, "num_prefix_tokens", 1) > 0
    (output,) = model.forward_intermediates(
        images, indices=1, return_prefix_tokens=has_cls, norm=True, output_fmt="NLC", intermediates_only=True
    )
    patches = output[0] if has_cls else output
    patch = patch_size_of(model)
    rows, cols = images.shape[-2] // patch, images.shape[-1] // patch
    return patches.reshape(images.shape[0], rows, cols, -1)


@dataclass(frozen=True)
class EvalTransform:
    """The deterministic evaluation transform of DINO's `eval_linear.py` (val) and `eval_knn.py`: Resize(256,
    bicubic) of the short side + CenterCrop(224) + ImageNet normalisation."""

    resize: int = 256
    crop: int = 224

    def build(self):
        from torchvision import transforms

        return transforms.Compose(
            [
                transforms.Resize(self.resize, interpolation=transforms.InterpolationMode.BICUBIC),
                transforms.CenterCrop(self.crop),
                transforms.ToTensor(),
                transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
            ]
        )


def dino_train_transform(crop: int = 224):
    """DINO's linear-probe training transform (`eval_linear.py`): torchvision's RandomResizedCrop(crop) (scale
    0.08-1, ratio 3/4-4/3, bilinear) and RandomHorizontalFlip on the PIL image, then ImageNet normalisation."""
    from torchvision import transforms

    return transforms.Compose(
        [
            transforms.RandomResizedCrop(crop),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )


def crop_seeds(seed: int, epoch: int, count: int) -> torch.Tensor:
    """One seed per image for ``epoch``'s random crops: a function of (seed, epoch) only, so a run is
    reproducible and every epoch draws new crops whatever the number of loader workers."""
    stream = int.from_bytes(hashlib.sha256(f"linear-probe-crops/{seed}/{epoch}".encode()).digest()[:8], "little")
    return torch.randint(0, 2**62, (count,), generator=torch.Generator().manual_seed(stream))


class SeededImageFolder(torch.utils.data.Dataset):
    """An ImageFolder whose image ``i`` goes through ``transform`` with torch's random stream seeded by
    ``seeds[i]`` (set per epoch with `set_seeds`): torchvision's own random transforms, made deterministic.
    The caller's random state is left as it was."""

    def __init__(self, root: Path, transform) -> None:
        self.images = _image_folder(root)
        self.classes = self.images.classes
        self.transform = transform
        self.seeds: torch.Tensor | None = None

    def set_seeds(self, seeds: torch.Tensor) -> None:
        self.seeds = seeds

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        if self.seeds is None:
            raise RuntimeError("set_seeds() before reading")  # a programming error, not the user's
        image, label = self.images[index]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(self.seeds[index]))
            return self.transform(image), label


@dataclass
class DatasetFeatures:
    """Features of every image of an ImageFolder split, with integer labels and the class names."""

    features: torch.Tensor  # (images, dim) float32
    labels: torch.Tensor  # (images,) int64
    classes: list[str]


def _image_folder(root: Path, transform=None):
    from torchvision.datasets import ImageFolder

    if not Path(root).is_dir():
        raise WtoursError(f"{root}: no such folder (expected an ImageFolder layout: <root>/<class>/<image>)")
    try:
        return ImageFolder(str(root), transform=transform)
    except (FileNotFoundError, RuntimeError) as err:
        raise WtoursError(f"{root}: not an ImageFolder layout ({err})") from None


def _dataset_digest(dataset) -> str:
    """Hash of the class names and every file's relative path, size and modification time."""
    digest = hashlib.sha256(json.dumps(dataset.classes).encode())
    root = Path(dataset.root)
    for path, label in dataset.samples:
        stat = Path(path).stat()
        digest.update(f"{Path(path).relative_to(root)}|{label}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def feature_cache_path(
    cache_dir: Path, weights_path: Path, dataset, transform: EvalTransform, n_last_blocks: int, avgpool_patches: bool
) -> Path:
    """``<cache_dir>/<weights hash>-<dataset hash>-<transform hash>.safetensors``."""
    # "layout": the avgpool feature order of `cls_features` (DINO's interleaving); older caches are not reused.
    recipe = json.dumps(
        {**asdict(transform), "n_last_blocks": n_last_blocks, "avgpool": avgpool_patches, "layout": "dino"}
    )
    transform_digest = hashlib.sha256(recipe.encode()).hexdigest()[:12]
    return Path(cache_dir) / f"{file_digest(weights_path)}-{_dataset_digest(dataset)}-{transform_digest}.safetensors"


def extract_dataset_features(
    model: nn.Module,
    root: Path,
    *,
    weights_path: Path,
    cache_dir: Path | None,
    transform: EvalTransform = EvalTransform(),
    n_last_blocks: int = 4,
    avgpool_patches: bool = False,
    batch_size: int = 128,
    num_workers: int = 2,
    device: torch.device | str = "cpu",
) -> DatasetFeatures:
    """[CLS] features (see `cls_features`) of an ImageFolder split, read from the cache when present.

    Images are decoded batch by batch, so memory holds one batch of pixels plus the feature matrix.
    """
    from safetensors.torch import load_file, save_file

    from wtours.progress import make_progress
    from wtours.store import atomic_path

    dataset = _image_folder(root, transform.build())
    if len(dataset) == 0:
        raise WtoursError(f"{root}: no images found")
    cache_path = None
    if cache_dir is not None:
        cache_path = feature_cache_path(cache_dir, weights_path, dataset, transform, n_last_blocks, avgpool_patches)
        if cache_path.is_file():
            cached = load_file(str(cache_path))
            return DatasetFeatures(cached["features"], cached["labels"], list(dataset.classes))

    device = torch.device(device)
    model = model.to(device).eval()
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers, pin_memory=device.type == "cuda"
    )
    # Filled in place (allocated once the first batch gives the width): no second copy from concatenating.
    features: torch.Tensor | None = None
    labels = torch.empty(len(dataset), dtype=torch.long)
    filled = 0
    with make_progress() as progress:
        task = progress.add_task(f"features {Path(root).name}", total=len(dataset))
        for images, targets in loader:
            batch = cls_features(model, images.to(device), n_last_blocks, avgpool_patches).float().cpu()
            if features is None:
                features = torch.empty(len(dataset), batch.shape[1])
            features[filled : filled + len(batch)] = batch
            labels[filled : filled + len(batch)] = targets
            filled += len(batch)
            progress.advance(task, len(targets))
    result = DatasetFeatures(features, labels, list(dataset.classes))
    if cache_path is not None:
        with atomic_path(cache_path) as tmp:
            save_file({"features": result.features.contiguous(), "labels": result.labels}, str(tmp))
    return result
