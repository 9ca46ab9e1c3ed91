"""Weighted k-NN: votes on small hand-made features, and the whole evaluation against DINO's `eval_knn.py`
(transcribed in tests/trainers/dino_official.py)."""

from __future__ import annotations

import dino_official as official
import torch
import torch.nn.functional as F
from test_linear import TINY_VIT, write_image_folder, write_tiny_vit

from wtours.trainers.evaluation.features import load_encoder
from wtours.trainers.evaluation.knn import evaluate_knn, extract_features, weighted_knn_predict


def test_weighted_votes() -> None:
    train = F.normalize(torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9], [0.2, 0.8]]), dim=1)
    labels = torch.tensor([0, 0, 1, 1, 1])
    queries = F.normalize(torch.tensor([[1.0, 0.05], [0.05, 1.0]]), dim=1)
    predicted = weighted_knn_predict(train, labels, queries, k=2, num_classes=2)
    assert predicted.tolist() == [0, 1]


def test_closeness_beats_numbers() -> None:
    # Two very close neighbours of class 0 outvote three distant ones of class 1 at a low temperature.
    train = F.normalize(torch.tensor([[1.0, 0.0], [1.0, 0.01], [0.0, 1.0], [0.1, 1.0], [0.2, 1.0]]), dim=1)
    labels = torch.tensor([0, 0, 1, 1, 1])
    query = F.normalize(torch.tensor([[1.0, 0.6]]), dim=1)
    assert weighted_knn_predict(train, labels, query, k=5, num_classes=2, temperature=0.07).tolist() == [0]
    assert weighted_knn_predict(train, labels, query, k=5, num_classes=2, temperature=100.0).tolist() == [1]


def test_votes_equal_dino_knn_classifier() -> None:
    generator = torch.Generator().manual_seed(0)
    train = F.normalize(torch.randn(500, 16, generator=generator), dim=1)
    labels = torch.randint(0, 7, (500,), generator=generator)
    queries = F.normalize(torch.randn(300, 16, generator=generator), dim=1)
    query_labels = torch.randint(0, 7, (300,), generator=generator)
    for k in (1, 10, 20, 200):
        _, _, expected = official.knn_classifier(train, labels, queries, query_labels, k, 0.07, num_classes=7)
        predicted = weighted_knn_predict(train, labels, queries, k=k, num_classes=7, temperature=0.07, chunk=64)
        assert torch.equal(predicted, expected), k


def test_evaluate_knn_equals_dino_eval_knn_in_fp32(tmp_path) -> None:
    """DINO's transform (Resize 256 bicubic, CenterCrop 224), its ViT's [CLS] output (a 224-px tiny ViT), L2
    normalisation and knn_classifier; features in fp32 even when the caller runs under bf16 autocast."""
    import timm
    from torchvision.datasets import ImageFolder

    torch.manual_seed(0)
    timm_model = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0, **TINY_VIT).eval()
    encoder = load_encoder(None, write_tiny_vit(tmp_path / "encoder.safetensors", timm_model))
    write_image_folder(tmp_path / "data" / "train", 5, seed=0)
    write_image_folder(tmp_path / "data" / "val", 3, seed=1)

    reference = official.dino_vit_from_timm(timm_model)
    splits = {}
    for split in ("train", "val"):
        dataset = ImageFolder(str(tmp_path / "data" / split), transform=official.eval_transform())
        with torch.no_grad():
            features = reference(torch.stack([image for image, _ in dataset]))
        splits[split] = (F.normalize(features, dim=1, p=2), torch.tensor(dataset.targets))

    dataset = ImageFolder(str(tmp_path / "data" / "val"), transform=official.eval_transform())
    with torch.autocast("cpu", dtype=torch.bfloat16), torch.no_grad():
        features, labels = extract_features(encoder, dataset, batch_size=4, device=torch.device("cpu"))
    assert features.dtype == torch.float32
    assert torch.allclose(features, splits["val"][0], atol=1e-5)
    assert torch.equal(labels, splits["val"][1])

    result = evaluate_knn(encoder, tmp_path / "data", ks=(3, 5), image_size=224, device=torch.device("cpu"))
    for k in (3, 5):
        top1, _, _ = official.knn_classifier(*splits["train"], *splits["val"], k, 0.07)  # 1000 classes, as DINO
        assert result.top1[k] == top1, k
