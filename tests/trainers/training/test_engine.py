"""The engine on real frames of the embedded sample: exact resume, divergence handling, export, config."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from wtours.errors import WtoursError
from wtours.store import RunDir
from wtours.trainers.training.checkpoint import load_checkpoint
from wtours.trainers.training.engine import NonFiniteLossError, pretrain


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(RunDir(run_dir).checkpoint_path)["method"]


class KilledAt(torch.utils.data.Dataset):
    """Wraps a dataset and dies (like a killed process) when asked for item ``fatal_index``."""

    def __init__(self, dataset, fatal_index: int):
        self.dataset, self.fatal_index, self.fetched = dataset, fatal_index, 0

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        self.fetched += 1
        if self.fetched > self.fatal_index:
            raise KeyboardInterrupt("killed")
        return self.dataset[index]


def test_resume_after_a_kill_is_bit_exact(tmp_path: Path, sample_frames, tiny_config) -> None:
    straight = pretrain(tiny_config(tmp_path, **{"run.name": "straight"}), sample_frames, show_progress=False)
    config = tiny_config(tmp_path, **{"run.name": "killed", "run.checkpoint_every": 2})
    # Dies while loading the batch of step 4 (batch size 4): the last checkpoint holds step 2.
    with pytest.raises(KeyboardInterrupt):
        pretrain(config, KilledAt(sample_frames, fatal_index=3 * 4), show_progress=False)
    assert load_checkpoint(RunDir(config.run_dir).checkpoint_path)["step"] == 2
    # Two more invocations: one stopped early on purpose, one to the end.
    stopped = pretrain(config, sample_frames, resume=True, stop_after_steps=1, show_progress=False)
    assert stopped.steps_done == 3
    resumed = pretrain(config, sample_frames, resume=True, show_progress=False)
    assert resumed.steps_done == straight.steps_done == 6
    expected, actual = _weights(straight.run_dir), _weights(resumed.run_dir)
    assert expected.keys() == actual.keys()
    assert "center" in expected and torch.any(expected["center"] != 0)
    for name in expected:
        assert torch.equal(expected[name], actual[name]), name
    # Lines logged after the last checkpoint of the killed run were replaced, not duplicated.
    lines = (resumed.run_dir / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [1, 2, 3, 4, 5, 6]


def test_a_checkpoint_write_killed_midway_leaves_nothing_after_the_resume(tmp_path: Path, sample_frames,
                                                                          tiny_config) -> None:  # fmt: skip
    straight = pretrain(tiny_config(tmp_path, **{"run.name": "straight"}), sample_frames, show_progress=False)
    config = tiny_config(tmp_path, **{"run.name": "killed", "run.checkpoint_every": 2})
    pretrain(config, sample_frames, stop_after_steps=2, show_progress=False)
    # What kill -9 inside `atomic_path` leaves: the half-written temp beside the last good checkpoint.
    (RunDir(config.run_dir).root / ".checkpoint.pt.k1ll3d_x.tmp").write_bytes(b"half a checkpoint")
    resumed = pretrain(config, sample_frames, resume=True, show_progress=False)
    assert sorted(p.name for p in resumed.run_dir.iterdir()) == sorted(p.name for p in straight.run_dir.iterdir())


def test_existing_run_needs_resume(tmp_path: Path, sample_frames, tiny_config) -> None:
    config = tiny_config(tmp_path, **{"optim.steps_per_epoch": 1})
    pretrain(config, sample_frames, show_progress=False)
    with pytest.raises(WtoursError, match="--resume"):
        pretrain(config, sample_frames, show_progress=False)


def test_non_finite_loss_stops_and_keeps_last_checkpoint(tmp_path: Path, sample_frames, tiny_config) -> None:
    # An absurd learning rate blows the weights up after the first update.
    config = tiny_config(
        tmp_path,
        **{"optim.lr": 1e30, "optim.warmup_epochs": 0, "optim.clip_grad": 0, "run.checkpoint_every": 1},
    )
    with pytest.raises(NonFiniteLossError, match="is intact") as caught:
        pretrain(config, sample_frames, show_progress=False)
    saved = load_checkpoint(RunDir(config.run_dir).checkpoint_path)
    bad_step = int(str(caught.value).split("at step ")[1].split()[0])
    assert saved["step"] == bad_step - 1
    assert all(
        torch.isfinite(tensor).all() for tensor in saved["method"].values() if tensor.is_floating_point()
    )


def test_exported_encoder_loads_into_plain_timm(tmp_path: Path, sample_frames, tiny_config) -> None:
    import timm
    from safetensors.torch import load_file

    result = pretrain(
        tiny_config(tmp_path, **{"optim.steps_per_epoch": 2}), sample_frames, show_progress=False
    )
    description = json.loads(result.encoder_path.with_suffix(".json").read_text())
    plain = timm.create_model(description["timm_name"], num_classes=0, **description["kwargs"])
    plain.load_state_dict(load_file(str(result.encoder_path)))
    teacher = {
        key.removeprefix("teacher.backbone."): value
        for key, value in _weights(result.run_dir).items()
        if key.startswith("teacher.backbone.")
    }
    for name, tensor in plain.state_dict().items():
        assert torch.equal(tensor, teacher[name]), name


def test_unknown_config_key_is_one_clear_error(tmp_path: Path, tiny_config) -> None:
    with pytest.raises(WtoursError, match=r"optim\.learning_rate: Extra inputs are not permitted"):
        tiny_config(tmp_path, **{"optim.learning_rate": 1e-3})
    with pytest.raises(WtoursError, match=r"dino\.out_dimm"):
        tiny_config(tmp_path, **{"dino.out_dimm": 10})
