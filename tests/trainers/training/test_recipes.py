"""The paper presets and the engine's schedules equal the official commands and code.

Each expected value below is read off the official source named beside it (DINO's main_dino.py defaults and
README commands, the DoRA release's README command, VideoMAE's run_mae_pretraining.py and its scripts), and
every schedule is compared with DINO's ``cosine_scheduler`` transcribed in `test_schedules.py`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.trainers.training.test_schedules import official_cosine_scheduler
from wtours.trainers.training.config import load_config
from wtours.trainers.training.engine import pretrain

# main_dino.py's argparse defaults (facebookresearch/dino), which the README's vanilla command keeps.
DINO_DEFAULTS = {
    "optim.epochs": 100, "optim.lr": 5e-4, "optim.min_lr": 1e-6, "optim.warmup_epochs": 10,
    "optim.weight_decay": 0.04, "optim.weight_decay_end": 0.4, "optim.momentum_teacher": 0.996,
    "optim.clip_grad": 3.0, "optim.freeze_last_layer": 1, "backbone.drop_path_rate": 0.1,
    "dino.out_dim": 65536, "dino.norm_last_layer": True, "dino.student_temp": 0.1, "dino.teacher_temp": 0.04,
    "dino.warmup_teacher_temp": 0.04, "dino.warmup_teacher_temp_epochs": 0, "dino.center_momentum": 0.9,
    "dino.global_crops_scale": [0.4, 1.0], "dino.local_crops_number": 8, "dino.local_crops_scale": [0.05, 0.4],
    "dino.global_crops_size": 224, "dino.local_crops_size": 96, "dino.color_jitter_p": 0.8, "dino.grayscale_p": 0.2,
}  # fmt: skip
# The README's "Boosting DINO performance" full command.
DINO_BOOST = {
    **DINO_DEFAULTS, "optim.epochs": 300, "dino.teacher_temp": 0.07, "dino.warmup_teacher_temp_epochs": 30,
    "dino.norm_last_layer": False,
}  # fmt: skip
# The DoRA release's README command (main.py defaults otherwise), which the paper's DINO baseline shares.
DORA_COMMAND = {
    "optim.epochs": 100, "optim.lr": 5e-4, "optim.min_lr": 1e-5, "optim.weight_decay": 0.04,
    "optim.weight_decay_end": 0.4, "optim.warmup_epochs": 10, "optim.momentum_teacher": 0.996,
    "optim.clip_grad": 3.0, "optim.freeze_last_layer": 1, "dora.out_dim": 65536, "dora.norm_last_layer": False,
    "dora.teacher_temp": 0.04, "dora.warmup_teacher_temp": 0.04, "dora.warmup_teacher_temp_epochs": 30,
    "dora.local_crops_number": 6, "data.frames_per_clip": 8, "data.stride": 60, "optim.batch_size": 16,
    "dora.color_jitter_p": 0.8, "dora.grayscale_p": 0.2,
}  # fmt: skip
DINO_WT = {
    **{key.replace("dora.", "dino."): value for key, value in DORA_COMMAND.items()},
    "dino.local_crops_size": 96, "dino.global_crops_size": 224, "optim.batch_size": 8,
}  # fmt: skip
# run_mae_pretraining.py defaults + the Kinetics-400 scripts' arguments.
VIDEOMAE_SCRIPT = {
    "optim.lr": 1.5e-4, "optim.min_lr": 1e-5, "optim.warmup_epochs": 40, "optim.weight_decay": 0.05,
    "optim.weight_decay_end": 0.05, "optim.betas": [0.9, 0.95], "optim.clip_grad": 0, "optim.batch_size": 32,
    "backbone.drop_path_rate": 0.0, "data.frames_per_clip": 16, "videomae.mask_ratio": 0.9,
    "videomae.tubelet_size": 2, "videomae.decoder_depth": 4, "videomae.normalize_target": True,
    "videomae.crop_scales": [1.0, 0.875, 0.75, 0.66], "videomae.max_aspect_distortion": 1,
    "videomae.crop_offsets": "grid", "videomae.flip_p": 0.0, "videomae.position_embedding": "1d",
}  # fmt: skip


def _flat(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = list(value) if isinstance(value, tuple) else value
    return out


@pytest.mark.parametrize(
    ("preset", "expected"),
    [
        ("dino_vits16_vanilla", DINO_DEFAULTS),
        ("dino_vits16_boost", DINO_BOOST),
        ("dino_vits16_wt", DINO_WT),
        ("dora_vits16", DORA_COMMAND),
        ("videomae_vits16", {**VIDEOMAE_SCRIPT, "optim.epochs": 1601, "videomae.decoder_dim": 192}),
        ("videomae_vitb16", {**VIDEOMAE_SCRIPT, "optim.epochs": 801, "videomae.decoder_dim": 384}),
    ],
)
def test_preset_equals_the_official_command(preset: str, expected: dict) -> None:
    config = load_config(preset)
    values = _flat(config.model_dump(mode="json"))
    differing = {key: (values.get(key), value) for key, value in expected.items() if values.get(key) != value}
    assert not differing
    assert config.backbone.pos_embed_resize == "dino" or config.method == "videomae"
    header = (Path(__file__).parents[3] / "trainers" / "presets" / f"{preset}.yaml").read_text().splitlines()[0]
    assert header.startswith("# ")  # every preset says what it reproduces, first thing


def _logged(run_dir: Path, key: str) -> np.ndarray:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return np.array([json.loads(line)[key] for line in lines])


def test_engine_schedules_are_dinos_arrays_step_by_step(tmp_path: Path, sample_frames, tiny_config) -> None:
    """lr, weight decay and teacher momentum of a 2-epoch, 5-step-per-epoch run with a 1-epoch warm-up."""
    settings = {
        "optim.epochs": 2, "optim.steps_per_epoch": 5, "optim.warmup_epochs": 1, "optim.lr": 0.01,
        "optim.min_lr": 1e-4, "optim.weight_decay": 0.04, "optim.weight_decay_end": 0.4,
        "optim.momentum_teacher": 0.99, "run.log_every": 1,
    }  # fmt: skip
    config = tiny_config(tmp_path, **settings)
    result = pretrain(config, sample_frames, show_progress=False)
    images = config.optim.batch_size * config.data.frames_per_clip
    expected = {
        "lr": official_cosine_scheduler(0.01 * images / 256, 1e-4, 2, 5, warmup_epochs=1),
        "weight_decay": official_cosine_scheduler(0.04, 0.4, 2, 5),
        "momentum": official_cosine_scheduler(0.99, 1, 2, 5),
    }
    for key, values in expected.items():
        assert np.allclose(_logged(result.run_dir, key), values, rtol=1e-12, atol=0), key


def test_teacher_momentum_can_end_below_one(tmp_path: Path, sample_frames, tiny_config) -> None:
    """optim.momentum_teacher_end moves the cosine's end point (DINO's is 1, the default above)."""
    settings = {"optim.epochs": 2, "optim.steps_per_epoch": 3, "optim.momentum_teacher": 0.99,
                "optim.momentum_teacher_end": 0.99, "run.log_every": 1}  # fmt: skip
    result = pretrain(tiny_config(tmp_path, **settings), sample_frames, show_progress=False)
    logged = _logged(result.run_dir, "momentum")
    assert np.allclose(logged, official_cosine_scheduler(0.99, 0.99, 2, 3), atol=1e-15)  # held: no rise to 1


def test_teacher_temperature_steps_once_per_epoch(tmp_path: Path, sample_frames, tiny_config) -> None:
    settings = {
        "optim.epochs": 3, "optim.steps_per_epoch": 2, "run.log_every": 1, "dino.warmup_teacher_temp": 0.04,
        "dino.teacher_temp": 0.07, "dino.warmup_teacher_temp_epochs": 2,
    }  # fmt: skip
    result = pretrain(tiny_config(tmp_path, **settings), sample_frames, show_progress=False)
    per_epoch = np.concatenate((np.linspace(0.04, 0.07, 2), np.ones(3 - 2) * 0.07))  # DINOLoss.__init__
    assert np.allclose(_logged(result.run_dir, "teacher_temp"), np.repeat(per_epoch, 2), atol=1e-12)


def test_videomae_scales_min_lr_with_the_batch_as_the_official_script(tmp_path: Path, sample_video: Path) -> None:
    from wtours.trainers.training.data import decode_frames

    clips = decode_frames([sample_video], every=2, short_side=40, frames_per_clip=4)
    settings = {
        "run.output_dir": str(tmp_path), "run.checkpoint_every": 1000, "run.log_every": 1, "optim.epochs": 2,
        "optim.steps_per_epoch": 3, "optim.warmup_epochs": 1, "optim.lr": 0.2, "optim.min_lr": 0.01,
        "optim.batch_size": 4,
    }  # fmt: skip
    result = pretrain(load_config("videomae_tiny_cpu", settings), clips, show_progress=False)
    scale = 4 / 256  # args.lr, args.min_lr = ... * total_batch_size / 256
    expected = official_cosine_scheduler(0.2 * scale, 0.01 * scale, 2, 3, warmup_epochs=1)
    assert np.allclose(_logged(result.run_dir, "lr"), expected, rtol=1e-12, atol=0)


@pytest.mark.parametrize(("preset", "refused"), [("dino_tiny_cpu", False), ("dino_study_cpu", True)])
def test_a_checkpoint_from_before_momentum_end_resumes_only_at_its_default(tmp_path: Path, preset, refused) -> None:
    """An older checkpoint's config lacks optim.momentum_teacher_end: it trained with the default, 1."""
    from wtours.errors import WtoursError
    from wtours.trainers.training.config import config_to_tree
    from wtours.trainers.training.resume import check_resume

    tree = config_to_tree(load_config(preset))
    older = json.loads(json.dumps(tree))
    del older["optim"]["momentum_teacher_end"]
    steps = {"checkpoint": tmp_path / "checkpoint.pt", "steps_done": 2, "total_steps": 4, "saved_steps_per_epoch": 2,
             "steps_per_epoch": 2}  # fmt: skip
    if refused:
        with pytest.raises(WtoursError, match=r"optim\.momentum_teacher_end 1\.0 -> 0\.99"):
            check_resume(older, tree, **steps)
    else:
        assert check_resume(older, tree, **steps) == []


def test_a_saved_config_is_told_apart_from_the_settings_a_run_would_learn_with_now(tmp_path: Path) -> None:
    """`trained_otherwise` (the demo and the CPU study retrain a finished run on it): what the network learns from
    counts (network, optimiser, method options, data sampling, seed, precision); where a run was written, its name
    and its logging do not; a config that cannot be read counts as other."""
    import yaml

    from wtours.trainers.training.config import config_to_tree
    from wtours.trainers.training.resume import trained_otherwise

    config = load_config("dora_study_cpu", {"run.seed": 3})
    saved = tmp_path / "config.yaml"

    def differs(change) -> bool:
        tree = json.loads(json.dumps(config_to_tree(config)))
        change(tree)
        saved.write_text(yaml.safe_dump(tree))
        return trained_otherwise(saved, config)

    assert not differs(lambda tree: None)
    assert not differs(lambda tree: tree["run"].update(name="elsewhere", output_dir="/x", log_every=7))
    assert not differs(lambda tree: tree["data"].update(data_dir="/y", num_workers=9))
    assert not differs(lambda tree: tree["data"].update(video_ids=["study_walk"]))  # set by `pretrain --only`
    assert differs(lambda tree: tree["optim"].update(epochs=tree["optim"]["epochs"] + 1))
    assert differs(lambda tree: tree["dora"].update(warmup_teacher_temp_epochs=2))
    assert differs(lambda tree: tree["backbone"].update(depth=6))
    assert differs(lambda tree: tree["data"].update(stride=8))
    assert differs(lambda tree: tree["run"].update(seed=4))
    assert differs(lambda tree: tree["run"].update(precision="fp32"))
    assert differs(lambda tree: tree["dora"].update(no_such_key=1))  # no longer validates
    saved.write_text("{unclosed")
    assert trained_otherwise(saved, config) and trained_otherwise(tmp_path / "missing.yaml", config)
