"""The tiny CPU preset, as shipped, trains on the embedded sample and its encoder beats chance at k-NN."""

from __future__ import annotations

import json
import math
from pathlib import Path

from wtours.trainers.config import load_config
from wtours.trainers.engine import pretrain
from wtours.trainers.features import load_encoder
from wtours.trainers.knn import evaluate_knn, make_sample_labelled_set


def test_tiny_preset_trains_and_knn_beats_chance(tmp_path: Path, sample_frames) -> None:
    config = load_config("dino_tiny_cpu", {"run.output_dir": str(tmp_path / "runs")})
    result = pretrain(config, sample_frames, show_progress=False)
    records = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    losses = [record["loss"] for record in records]
    assert len(losses) == result.steps_done == 14
    assert all(math.isfinite(loss) for loss in losses)
    # Starting near ln(out_dim), the loss falls while the student learns to match the teacher's views
    # (on 60 frames, centering later pulls it back towards ln(out_dim): DINO needs far more data).
    assert min(losses[2:8]) < losses[0] - 0.1
    assert losses[0] < math.log(config.method_options["out_dim"])

    encoder = load_encoder(None, result.encoder_path)
    labelled = make_sample_labelled_set(tmp_path / "labelled", seconds=4.0)
    knn = evaluate_knn(encoder, labelled, ks=(5,), image_size=64)
    assert set(knn.classes) == {"bus", "person"}
    assert knn.top1[5] > knn.chance
