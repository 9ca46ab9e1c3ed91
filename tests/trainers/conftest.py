"""Fixtures for the training tests: frames decoded from the embedded sample, and a tiny DINO config."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from wtours.trainers.training.config import TrainConfig, load_config


@pytest.fixture(scope="session")
def sample_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from wtours.sample import render_walking_tour

    path = tmp_path_factory.mktemp("sample") / "walk.mp4"
    render_walking_tour(path, width=320, height=180, fps=30, seconds=6.0, seed=0)
    return path


@pytest.fixture(scope="session")
def sample_frames(sample_video: Path):
    """60 frames (every 3rd) of the sample walking tour at 72 px high, as 1-frame clips."""
    from wtours.trainers.training.data import decode_frames

    return decode_frames([sample_video], every=3, short_side=72)


def _tiny_config(output_dir: Path, **overrides) -> TrainConfig:
    settings = {
        "run.output_dir": str(output_dir),
        "run.checkpoint_every": 1000,
        "backbone.embed_dim": 48,
        "dino.out_dim": 64,
        "dino.hidden_dim": 64,
        "dino.bottleneck_dim": 16,
        "dino.global_crops_size": 48,
        "dino.local_crops_size": 32,
        "optim.epochs": 1,
        "optim.steps_per_epoch": 6,
        "optim.batch_size": 4,
        **overrides,
    }
    return load_config("dino_tiny_cpu", settings)


@pytest.fixture
def tiny_config() -> Callable[..., TrainConfig]:
    """The tiny CPU preset, made smaller still: 6 steps of a 2-block, 48-d ViT on 48/32 px crops.
    Call it as ``tiny_config(output_dir, **{"dotted.key": value})``."""
    return _tiny_config
