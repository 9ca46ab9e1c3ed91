"""Linear probe: real SGD on feature sets with known answers, and the whole command path on a tiny ViT."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from wtours.errors import WtoursError
from wtours.trainers.eval_linear import LinearProbeConfig, run_linear_probe, top_k_accuracy, train_linear_probe
from wtours.trainers.features import EvalTransform, extract_dataset_features, load_encoder

TINY_VIT = {"embed_dim": 32, "depth": 3, "num_heads": 2, "patch_size": 8}


def test_top_k_accuracy_by_hand():
    logits = torch.tensor([[0.9, 0.05, 0.05], [0.1, 0.2, 0.7], [0.5, 0.3, 0.2]])
    labels = torch.tensor([0, 1, 2])
    accuracy = top_k_accuracy(logits, labels, ks=(1, 2, 5))
    assert accuracy[1] == pytest.approx(1 / 3)  # only the first is right
    assert accuracy[2] == pytest.approx(2 / 3)  # the second's label is its runner-up
    assert accuracy[5] == 1.0  # k capped at the 3 classes


def linearly_separable(samples: int, dim: int, classes: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Gaussian features labelled by the argmax of a fixed random linear map: separable by construction."""
    generator = torch.Generator().manual_seed(seed)
    teacher = torch.randn(dim, classes, generator=torch.Generator().manual_seed(123))
    features = torch.randn(samples, dim, generator=generator)
    return features, (features @ teacher).argmax(dim=1)


def test_probe_separates_a_linearly_separable_set():
    train_x, train_y = linearly_separable(1000, 16, 5, seed=0)
    val_x, val_y = linearly_separable(500, 16, 5, seed=1)
    config = LinearProbeConfig(epochs=20, batch_size=100, lr=1.0)
    result = train_linear_probe(train_x, train_y, val_x, val_y, 5, config)
    assert result.top1 > 0.95
    assert result.top5 == 1.0
    assert len(result.val_top1_per_epoch) == 20 and result.best_top1 >= result.top1


def test_probe_is_at_chance_on_random_labels():
    generator = torch.Generator().manual_seed(0)
    train_x, val_x = torch.randn(1000, 32, generator=generator), torch.randn(1000, 32, generator=generator)
    train_y = torch.randint(0, 4, (1000,), generator=generator)
    val_y = torch.randint(0, 4, (1000,), generator=generator)
    result = train_linear_probe(train_x, train_y, val_x, val_y, 4, LinearProbeConfig(epochs=10, batch_size=100, lr=1.0))
    # Chance is 1/4; three standard errors of 1000 draws are 0.04.
    assert abs(result.top1 - 0.25) < 0.05


def test_probe_training_is_seeded():
    train_x, train_y = linearly_separable(300, 8, 3, seed=0)
    config = LinearProbeConfig(epochs=3, batch_size=32)
    first = train_linear_probe(train_x, train_y, train_x, train_y, 3, config)
    second = train_linear_probe(train_x, train_y, train_x, train_y, 3, config)
    assert torch.equal(first.classifier.weight, second.classifier.weight)


def write_tiny_vit(path: Path) -> Path:
    import timm
    from safetensors.torch import save_file

    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0, **TINY_VIT)
    metadata = {"timm_name": "vit_tiny_patch16_224", "kwargs": json.dumps(TINY_VIT)}
    save_file({name: tensor.contiguous() for name, tensor in model.state_dict().items()}, str(path), metadata)
    return path


def write_image_folder(root: Path, per_class: int, seed: int) -> Path:
    """Two classes told apart by colour: reddish and bluish noisy 40x40 images."""
    rng = np.random.default_rng(seed)
    for name, channel in (("blue", 2), ("red", 0)):
        (root / name).mkdir(parents=True)
        for index in range(per_class):
            pixels = rng.integers(0, 120, (40, 40, 3), dtype=np.uint8)
            pixels[..., channel] = rng.integers(150, 256, (40, 40), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{index}.png")
    return root


def test_run_linear_probe_on_a_tiny_vit_writes_json_and_caches_features(tmp_path):
    weights = write_tiny_vit(tmp_path / "encoder.safetensors")
    train_dir = write_image_folder(tmp_path / "train", 12, seed=0)
    val_dir = write_image_folder(tmp_path / "val", 6, seed=1)
    cache = tmp_path / "cache"
    report = run_linear_probe(
        weights,
        train_dir,
        val_dir,
        tmp_path / "linear.json",
        config=LinearProbeConfig(epochs=30, batch_size=8, lr=1.0),
        n_last_blocks=2,
        resize=32,
        crop=32,
        cache_dir=cache,
        num_workers=0,
        device="cpu",
    )
    assert json.loads((tmp_path / "linear.json").read_text()) == report
    assert report["feature_dim"] == 2 * 32 and report["classes"] == 2
    assert report["train_images"] == 24 and report["val_images"] == 12
    assert report["top1"] >= 0.9  # colour survives even a random encoder
    assert len(list(cache.glob("*.safetensors"))) == 2

    class Unusable(torch.nn.Module):
        def forward_intermediates(self, *args, **kwargs):
            raise AssertionError("the cache should have answered")

    cached = extract_dataset_features(
        Unusable(),
        val_dir,
        weights_path=weights,
        cache_dir=cache,
        transform=EvalTransform(32, 32),
        n_last_blocks=2,
        num_workers=0,
    )
    fresh = extract_dataset_features(
        load_encoder(None, weights),
        val_dir,
        weights_path=weights,
        cache_dir=None,
        transform=EvalTransform(32, 32),
        n_last_blocks=2,
        num_workers=0,
    )
    assert torch.allclose(cached.features, fresh.features) and torch.equal(cached.labels, fresh.labels)


def test_bad_inputs_are_one_line_errors(tmp_path):
    weights = write_tiny_vit(tmp_path / "encoder.safetensors")
    with pytest.raises(WtoursError, match="no such folder"):
        run_linear_probe(
            weights, tmp_path / "nope", tmp_path / "nope", tmp_path / "out.json", n_last_blocks=2, num_workers=0
        )
    with pytest.raises(WtoursError, match="blocks"):
        run_linear_probe(weights, tmp_path, tmp_path, tmp_path / "out.json", n_last_blocks=9)
    with pytest.raises(WtoursError, match="do not fit"):
        load_encoder("vit_small_patch16_224", weights)
    (tmp_path / "junk.safetensors").write_bytes(b"not a tensor file")
    with pytest.raises(WtoursError, match="safetensors"):
        load_encoder(None, tmp_path / "junk.safetensors")
    assert not (tmp_path / "out.json").exists()
