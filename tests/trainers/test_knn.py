"""Weighted k-NN votes on small hand-made features."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from wtours.trainers.knn import weighted_knn_predict


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
