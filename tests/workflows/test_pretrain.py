"""`wtours pretrain` resolves presets and options into one validated config (the request names each key it sets)."""

from __future__ import annotations

import pytest
import yaml
from typer.testing import CliRunner

from wtours.cli import app
from wtours.errors import WtoursError


def test_show_config_applies_options_and_overrides() -> None:
    arguments = ["pretrain", "--method", "dino", "--epochs", "3", "--set", "dino.out_dim=128", "--show-config"]
    result = CliRunner().invoke(app, arguments)
    assert result.exit_code == 0, result.output
    config = yaml.safe_load(result.stdout)
    assert config["run"]["name"] == "dino-vits16-wt"  # the method as the Walking Tours paper ran it, by default
    assert config["optim"]["epochs"] == 3 and config["dino"]["out_dim"] == 128
    assert config["dino"]["local_crops_number"] == 6 and config["optim"]["min_lr"] == 1e-5  # as the DoRA release


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--preset", "dino_tiny_cpu", "--set", "optim.nope=1"], "optim.nope: Extra inputs are not permitted"),
        (["--preset", "dino_tiny_cpu", "--set", "dino.out_dim=-1"], "dino.out_dim: Input should be greater"),
        (["--preset", "no_such_preset"], "no preset or YAML file 'no_such_preset'"),
        (["--method", "dora", "--preset", "dino_tiny_cpu"], "is for method 'dino', not 'dora'"),
        (["--method", "mae"], "unknown method 'mae' (available: dino, dora, videomae)"),
    ],
)
def test_bad_configs_are_one_line_errors(arguments: list[str], message: str) -> None:
    result = CliRunner().invoke(app, ["pretrain", *arguments, "--show-config"])
    assert isinstance(result.exception, WtoursError)
    assert message in str(result.exception) and "\n" not in str(result.exception)


def test_each_option_sets_the_config_key_it_declares() -> None:
    from wtours.workflows.pretrain import PretrainRequest

    request = PretrainRequest.parse(
        name="n", output_dir="out", data_dir="d", only=["a,b"], epochs=2, batch_size=3, lr=0.1, arch="vit_tiny",
        patch_size=8, device="cpu", precision="fp32", compile_model=False, num_workers=0, settings=["optim.lr=0.2"],
    )  # fmt: skip
    assert request.overrides() == {
        "run.name": "n", "run.output_dir": "out", "data.data_dir": "d", "data.video_ids": ["a", "b"],
        "optim.epochs": 2, "optim.batch_size": 3, "optim.lr": 0.2, "backbone.arch": "vit_tiny",
        "backbone.patch_size": 8, "run.device": "cpu", "run.precision": "fp32", "run.compile": False,
        "data.num_workers": 0,
    }  # fmt: skip
