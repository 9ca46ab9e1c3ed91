"""Frozen-encoder features: which tokens they are, and loading weights saved by training code."""

from __future__ import annotations

import json

import pytest
import timm
import torch
from safetensors.torch import save_file

from wtours.errors import WtoursError
from wtours.trainers.evaluation.features import cls_features, load_encoder, patch_features
from wtours.trainers.training.backbones import with_pos_embed_resize

TINY_VIT = {"embed_dim": 32, "depth": 3, "num_heads": 2, "patch_size": 8}


def tiny_vit() -> torch.nn.Module:
    torch.manual_seed(0)
    return timm.create_model(
        "vit_tiny_patch16_224", pretrained=False, num_classes=0, dynamic_img_size=True, **TINY_VIT
    ).eval()


def block_outputs(model: torch.nn.Module, images: torch.Tensor) -> list[torch.Tensor]:
    tokens = model.norm_pre(model.patch_drop(model._pos_embed(model.patch_embed(images))))
    outputs = []
    for block in model.blocks:
        tokens = block(tokens)
        outputs.append(tokens)
    return outputs


def test_cls_features_concatenate_the_normed_cls_of_the_last_blocks():
    model, images = tiny_vit(), torch.randn(2, 3, 32, 48)
    outputs = block_outputs(model, images)
    expected = torch.cat([model.norm(out)[:, 0] for out in outputs[-2:]], dim=-1)
    assert torch.allclose(cls_features(model, images, n_last_blocks=2), expected, atol=1e-5)
    # One block with the mean patch token: interleaved (cls_0, mean_0, cls_1, ...) as DINO's eval_linear.py
    # flattens cat((cls[..., None], mean[..., None]), -1); with more blocks, appended.
    with_pool = cls_features(model, images, n_last_blocks=1, avgpool_patches=True)
    assert torch.allclose(with_pool[:, 0::2], model.norm(outputs[-1])[:, 0], atol=1e-5)
    assert torch.allclose(with_pool[:, 1::2], model.norm(outputs[-1])[:, 1:].mean(dim=1), atol=1e-5)
    with_pool = cls_features(model, images, n_last_blocks=2, avgpool_patches=True)
    assert torch.allclose(with_pool[:, 64:], model.norm(outputs[-1])[:, 1:].mean(dim=1), atol=1e-5)
    # The last [CLS] alone is what the encoder's own forward (num_classes=0) returns.
    assert torch.allclose(cls_features(model, images, n_last_blocks=1), model(images), atol=1e-5)


def test_patch_features_are_the_last_normed_patch_tokens_on_the_grid():
    model, images = tiny_vit(), torch.randn(1, 3, 32, 48)
    grid = patch_features(model, images)
    assert grid.shape == (1, 4, 6, 32)
    tokens = model.forward_features(images)[:, 1:]
    assert torch.allclose(grid.reshape(1, 24, 32), tokens, atol=1e-5)
    assert torch.allclose(grid[0, 1, 2], tokens[0, 1 * 6 + 2], atol=1e-5)  # row-major patch order


def test_load_encoder_strips_training_wrappers_and_reads_the_architecture(tmp_path):
    model = tiny_vit()
    wrapped = {f"module.backbone.{name}": tensor.contiguous() for name, tensor in model.state_dict().items()}
    path = tmp_path / "teacher.safetensors"
    save_file(wrapped, str(path), {"timm_name": "vit_tiny_patch16_224", "kwargs": json.dumps(TINY_VIT)})
    loaded = load_encoder(None, path)
    images = torch.randn(1, 3, 32, 32)
    assert not loaded.training
    # A file that names no position rule is read as DINO's (the official resize at other input sizes).
    assert torch.allclose(loaded(images), with_pos_embed_resize(model, "dino")(images), atol=1e-6)
    assert not torch.allclose(loaded(images), with_pos_embed_resize(model, "timm")(images), atol=1e-3)


def test_load_encoder_reads_what_training_exports_from_the_run_folder(tmp_path):
    from wtours.store import RunDir
    from wtours.trainers.training.backbones import BackboneSpec, export_encoder

    spec = BackboneSpec("vit_tiny_patch16_224", TINY_VIT)
    model = spec.create().eval()
    export_encoder(model, spec, RunDir(tmp_path).encoder_path)
    loaded = load_encoder(None, tmp_path)  # the run folder, as `wtours eval knn` accepts it
    images = torch.randn(1, 3, 32, 32)
    assert torch.allclose(loaded(images), model(images), atol=1e-6)


def test_load_encoder_errors_name_the_problem(tmp_path):
    path = tmp_path / "bare.safetensors"
    save_file({name: t.contiguous() for name, t in tiny_vit().state_dict().items()}, str(path))
    with pytest.raises(WtoursError, match="pass --arch"):
        load_encoder(None, path)
    with pytest.raises(WtoursError, match="no such weights file"):
        load_encoder(None, tmp_path / "missing.safetensors")
    with pytest.raises(WtoursError, match="vit_nonexistent"):
        load_encoder("vit_nonexistent", path)


def test_encoders_without_cls_token_use_mean_patch_tokens():
    """VideoMAE exports a ViT without [CLS]: probe features are the blocks' mean patch tokens."""
    torch.manual_seed(0)
    model = timm.create_model(
        "vit_tiny_patch16_224", pretrained=False, num_classes=0, class_token=False, global_pool="avg", img_size=32
    ).eval()
    images = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        blocks = model.forward_intermediates(images, indices=2, norm=True, output_fmt="NLC", intermediates_only=True)
        expected = torch.cat([tokens.mean(dim=1) for tokens in blocks], dim=-1)
        assert torch.allclose(cls_features(model, images, n_last_blocks=2), expected)
        grid = patch_features(model, images)
    assert grid.shape == (3, 2, 2, 192)
    assert torch.allclose(grid.reshape(3, 4, 192), blocks[-1])


def test_load_encoder_untrained_is_the_same_architecture_at_a_fixed_random_init(tmp_path):
    from wtours.store import RunDir
    from wtours.trainers.training.backbones import BackboneSpec, export_encoder

    spec = BackboneSpec("vit_tiny_patch16_224", TINY_VIT)
    trained = spec.create().eval()
    with torch.no_grad():
        for param in trained.parameters():
            param.mul_(-2.0).add_(0.5)  # anything far from an initialisation
    export_encoder(trained, spec, RunDir(tmp_path).encoder_path)
    images = torch.randn(2, 3, 32, 48)
    torch.manual_seed(123)
    rng_before = torch.get_rng_state()
    first = load_encoder(None, tmp_path, untrained=True)
    assert torch.equal(torch.get_rng_state(), rng_before)  # the caller's random stream is left alone
    second = load_encoder(None, tmp_path, untrained=True)
    assert not first.training and first(images).shape == trained(images).shape
    assert torch.equal(first(images), second(images))  # the same baseline every time
    assert not torch.allclose(first(images), trained(images), atol=1e-3)
    assert torch.allclose(load_encoder(None, tmp_path)(images), trained(images), atol=1e-6)
