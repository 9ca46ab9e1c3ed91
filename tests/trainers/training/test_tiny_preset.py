"""The tiny CPU preset, as shipped, trains on the embedded sample; its encoder and its untrained floor are
evaluated on the study set."""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from wtours.sample.study import make_study_labelled_set
from wtours.trainers.evaluation.features import load_encoder
from wtours.trainers.evaluation.knn import evaluate_knn
from wtours.trainers.training.config import load_config
from wtours.trainers.training.engine import pretrain


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
    assert losses[0] < math.log(config.options.out_dim)

    encoder = load_encoder(None, result.encoder_path)
    labelled = make_study_labelled_set(tmp_path / "labelled", per_class_train=10, per_class_val=5)
    knn = evaluate_knn(encoder, labelled, ks=(5,), image_size=64)
    assert len(knn.classes) >= 16 and knn.top1[5] > 3 * knn.chance
    # The run's own encoder before its first step is kept beside it: the floor of `eval knn --untrained`.
    initial = load_encoder(None, result.encoder_path, untrained=True)
    assert initial.pos_embed.shape == encoder.pos_embed.shape
    assert not torch.equal(initial.blocks[0].mlp.fc1.weight, encoder.blocks[0].mlp.fc1.weight)
    config_init = load_config("dino_tiny_cpu", {"run.output_dir": str(tmp_path / "runs")})
    torch.manual_seed(config_init.run.seed)  # the engine builds the network right after this seed
    from wtours.trainers.training.methods import ScheduleShape, method_module

    module = method_module("dino")
    fresh = module.build(config_init.backbone, config_init.options, ScheduleShape(1, 1))
    assert torch.equal(initial.blocks[0].mlp.fc1.weight, fresh.encoder().blocks[0].mlp.fc1.weight)
