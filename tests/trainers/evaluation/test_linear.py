"""Linear probe: DINO's `eval_linear.py` transcribed (tests/trainers/dino_official.py) as the reference for the
default protocol, real SGD on feature sets with known answers, and the whole command path on a tiny ViT."""

from __future__ import annotations

import json
import math
from pathlib import Path

import dino_official as official
import numpy as np
import pytest
import torch
from PIL import Image

from wtours.errors import WtoursError
from wtours.trainers.evaluation.features import (
    EvalTransform,
    SeededImageFolder,
    cls_features,
    crop_seeds,
    dino_train_transform,
    extract_dataset_features,
    load_encoder,
)
from wtours.trainers.evaluation.linear import (
    LinearProbeConfig,
    epoch_order,
    probe_encoder,
    run_linear_probe,
    top_k_accuracy,
    train_linear_probe,
)

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


def test_defaults_are_dino_eval_linear_defaults():
    # eval_linear.py: --epochs 100, --lr 0.001, --batch_size_per_gpu 128, SGD momentum 0.9, weight_decay 0.
    config = LinearProbeConfig()
    assert (config.epochs, config.lr, config.batch_size, config.momentum, config.weight_decay) == (
        100, 0.001, 128, 0.9, 0.0,
    )  # fmt: skip
    assert config.protocol == "dino"


def test_learning_rate_is_dino_cosine_annealing_stepped_once_per_epoch():
    train_x, train_y = linearly_separable(50, 4, 2, seed=0)  # 7 steps per epoch at a batch of 8
    config = LinearProbeConfig(epochs=6, batch_size=8, lr=0.1)
    result = train_linear_probe(train_x, train_y, train_x, train_y, 2, config)
    # The official schedule: torch's CosineAnnealingLR(optimizer, epochs, eta_min=0), stepped after each epoch,
    # starting from lr x batch / 256.
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1 * 8 / 256.0, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, 6, eta_min=0)
    expected = []
    for _ in range(6):
        expected.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert result.lr_per_epoch == pytest.approx(expected, rel=1e-12, abs=0)
    closed_form = [0.1 * 8 / 256 * (1 + math.cos(math.pi * epoch / 6)) / 2 for epoch in range(6)]
    assert result.lr_per_epoch == pytest.approx(closed_form, rel=1e-9)


def test_epoch_order_is_dino_distributed_sampler_on_one_process():
    from torch.utils.data.distributed import DistributedSampler

    data = list(range(37))
    for seed, epoch in ((0, 0), (0, 5), (3, 1)):
        sampler = DistributedSampler(data, num_replicas=1, rank=0, shuffle=True, seed=seed)
        sampler.set_epoch(epoch)
        assert epoch_order(len(data), seed, epoch).tolist() == list(sampler)


def test_training_crops_are_torchvision_transforms_seeded_per_image_and_epoch(tmp_path):
    from torchvision.datasets import ImageFolder

    root = write_image_folder(tmp_path / "train", 3, seed=0)
    seeded = SeededImageFolder(root, dino_train_transform(24))
    official_set = ImageFolder(str(root), transform=official.linear_train_transform(24))
    epochs = [crop_seeds(7, epoch, len(seeded)) for epoch in (0, 1)]
    assert torch.equal(crop_seeds(7, 0, len(seeded)), epochs[0])  # a function of (seed, epoch) alone
    torch.manual_seed(123)
    state = torch.get_rng_state()
    crops = []
    for seeds in epochs:
        seeded.set_seeds(seeds)
        for index in range(len(seeded)):
            torch.manual_seed(int(seeds[index]))
            reference, label = official_set[index]
            image, seeded_label = seeded[index]
            assert torch.equal(image, reference) and label == seeded_label
            crops.append(image)
    assert torch.equal(torch.get_rng_state(), state) is False  # (the reference above drew from it)
    seeded.set_seeds(epochs[0])
    torch.set_rng_state(state)
    seeded[0]
    assert torch.equal(torch.get_rng_state(), state)  # the caller's stream is left alone
    assert not torch.equal(crops[0], crops[len(seeded)])  # epoch 1 crops image 0 anew


def test_cls_features_equal_dino_get_intermediate_layers_expression(tmp_path):
    import timm

    torch.manual_seed(0)
    timm_model = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0, **TINY_VIT).eval()
    model = load_encoder(None, write_tiny_vit(tmp_path / "encoder.safetensors", timm_model))
    reference = official.dino_vit_from_timm(timm_model)
    images = torch.randn(3, 3, 32, 40)  # not the training size: the position table is resized the official way
    for n, avgpool in ((1, False), (2, False), (3, False), (1, True)):
        expected = official.linear_features(reference, images, n, avgpool)
        assert torch.allclose(cls_features(model, images, n, avgpool), expected, atol=1e-5), (n, avgpool)


def dino_reference_probe(timm_model, train_dir: Path, val_dir: Path, *, epochs: int, lr: float, batch: int,
                         n: int, resize: int, crop: int, seed: int):  # fmt: skip
    """DINO's eval_linear.py on one process: its transforms, classifier, optimiser, schedule, sampler and loops.
    Shared with wtours only the random draws: the classifier's initial weights and each image's crop seed."""
    from torch import nn
    from torch.utils.data.distributed import DistributedSampler
    from torchvision.datasets import ImageFolder

    model = official.dino_vit_from_timm(timm_model)
    dataset_train = ImageFolder(str(train_dir), transform=official.linear_train_transform(crop))
    dataset_val = ImageFolder(str(val_dir), transform=official.eval_transform(resize, crop))
    sampler = DistributedSampler(dataset_train, num_replicas=1, rank=0, seed=seed)
    linear_classifier = official.LinearClassifier(model.embed_dim * n, num_labels=len(dataset_train.classes))
    linear_classifier.linear.weight.data.normal_(mean=0.0, std=0.01, generator=torch.Generator().manual_seed(seed))
    optimizer = torch.optim.SGD(linear_classifier.parameters(), lr * batch / 256.0, momentum=0.9, weight_decay=0)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs, eta_min=0)
    val_top1 = []
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        seeds = crop_seeds(seed, epoch, len(dataset_train))
        order = list(sampler)
        linear_classifier.train()
        for start in range(0, len(order), batch):
            samples = []
            for index in order[start : start + batch]:
                torch.manual_seed(int(seeds[index]))
                samples.append(dataset_train[index])
            inp = torch.stack([image for image, _ in samples])
            target = torch.tensor([label for _, label in samples])
            output = linear_classifier(official.linear_features(model, inp, n, False))
            loss = nn.CrossEntropyLoss()(output, target)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        scheduler.step()
        linear_classifier.eval()
        with torch.no_grad():
            inp = torch.stack([dataset_val[index][0] for index in range(len(dataset_val))])
            target = torch.tensor([label for _, label in dataset_val.samples])
            predicted = linear_classifier(official.linear_features(model, inp, n, False)).argmax(dim=1)
            val_top1.append((predicted == target).float().mean().item())
    return linear_classifier.linear, val_top1


def test_dino_protocol_equals_dino_eval_linear_on_the_same_draws(tmp_path):
    import timm

    torch.manual_seed(0)
    timm_model = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0, **TINY_VIT).eval()
    weights = write_tiny_vit(tmp_path / "encoder.safetensors", timm_model)
    train_dir = write_image_folder(tmp_path / "train", 6, seed=0)
    val_dir = write_image_folder(tmp_path / "val", 4, seed=1)
    config = LinearProbeConfig(epochs=3, batch_size=5, lr=40.0, seed=2)  # 3 steps per epoch, the last one short
    result, info = probe_encoder(
        weights, train_dir, val_dir, config=config, n_last_blocks=2, resize=36, crop=32, num_workers=0, device="cpu"
    )
    with torch.random.fork_rng(devices=[]):
        reference, reference_top1 = dino_reference_probe(
            timm_model, train_dir, val_dir, epochs=3, lr=40.0, batch=5, n=2, resize=36, crop=32, seed=2
        )
    assert info["protocol"] == "dino" and info["train_images"] == 12 and info["feature_dim"] == 64
    initial = torch.empty_like(reference.weight).normal_(0, 0.01, generator=torch.Generator().manual_seed(2))
    moved = reference.weight - initial
    assert moved.abs().max() > 1e-2  # training changed the weights well beyond the tolerance below
    assert torch.allclose(result.classifier.weight, reference.weight, atol=1e-5)
    assert torch.allclose(result.classifier.bias, reference.bias, atol=1e-5)
    assert result.val_top1_per_epoch == reference_top1
    assert result.best_top1 == max(reference_top1)


def write_tiny_vit(path: Path, model: torch.nn.Module | None = None) -> Path:
    import timm
    from safetensors.torch import save_file

    model = model or timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0, **TINY_VIT)
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


def test_cached_protocol_on_a_tiny_vit_writes_json_and_caches_features(tmp_path):
    weights = write_tiny_vit(tmp_path / "encoder.safetensors")
    train_dir = write_image_folder(tmp_path / "train", 12, seed=0)
    val_dir = write_image_folder(tmp_path / "val", 6, seed=1)
    cache = tmp_path / "cache"
    report = run_linear_probe(
        weights,
        train_dir,
        val_dir,
        tmp_path / "linear.json",
        config=LinearProbeConfig(epochs=30, batch_size=8, lr=32.0, protocol="cached"),
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
    assert report["protocol"] == "cached" and report["scaled_lr"] == 1.0
    assert len(list(cache.glob("*.safetensors"))) == 2  # train and val features, each computed once

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


def test_the_untrained_probe_reads_the_step0_encoder_and_never_the_trained_features_cache(tmp_path):
    import timm

    run = tmp_path / "run"
    run.mkdir()
    models = []
    for seed in (1, 2):  # two different networks: the trained encoder and the one at step 0
        torch.manual_seed(seed)
        models.append(timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0, **TINY_VIT))
    weights = write_tiny_vit(run / "encoder.safetensors", models[0])
    initial = write_tiny_vit(run / "encoder_init.safetensors", models[1])
    train_dir = write_image_folder(tmp_path / "train", 8, seed=0)
    val_dir = write_image_folder(tmp_path / "val", 4, seed=1)
    cache = tmp_path / "cache"
    options = dict(config=LinearProbeConfig(epochs=5, batch_size=8, lr=32.0, protocol="cached"), n_last_blocks=2,
                   resize=32, crop=32, num_workers=0, device="cpu")  # fmt: skip

    trained = run_linear_probe(weights, train_dir, val_dir, tmp_path / "trained.json", cache_dir=cache, **options)
    floor = run_linear_probe(run, train_dir, val_dir, tmp_path / "floor.json", cache_dir=cache, untrained=True,
                             **options)  # fmt: skip
    by_hand = run_linear_probe(initial, train_dir, val_dir, tmp_path / "by_hand.json", **options)
    assert (trained["untrained"], floor["untrained"]) == (False, True)
    assert floor["weights"] == str(initial) and floor["weights_sha256_16"] != trained["weights_sha256_16"]
    assert floor["val_top1_per_epoch"] == by_hand["val_top1_per_epoch"]  # the step-0 network, not cached features
    assert len(list(cache.glob("*.safetensors"))) == 4  # each network's own train and val features

    # Without a step-0 file: timm's random initialisation, probed without the cache (the trained file names it).
    initial.unlink()
    random_init = run_linear_probe(run, train_dir, val_dir, tmp_path / "random.json", cache_dir=cache,
                                   untrained=True, **options)  # fmt: skip
    assert random_init["untrained"] and random_init["weights"] == str(weights)
    assert len(list(cache.glob("*.safetensors"))) == 4
    again = run_linear_probe(weights, train_dir, val_dir, tmp_path / "again.json", cache_dir=cache, **options)
    assert again["val_top1_per_epoch"] == trained["val_top1_per_epoch"]  # the cache still holds the trained features
