"""`wtours eval linear|attention|davis|knn` through the real CLI on tiny data."""

from __future__ import annotations

import json

from test_attention_maps import write_images
from test_davis import write_synthetic_davis
from test_linear import write_image_folder, write_tiny_vit
from typer.testing import CliRunner

from wtours.cli import app
from wtours.errors import WtoursError


def test_eval_commands_write_their_results(tmp_path):
    runner = CliRunner()
    weights = write_tiny_vit(tmp_path / "w.safetensors")
    write_image_folder(tmp_path / "train", 6, 0)
    write_image_folder(tmp_path / "val", 4, 1)
    linear = ["eval", "linear", str(weights), "--data", str(tmp_path), "--n-last-blocks", "2", "--resize", "32",
              "--crop", "32", "--epochs", "3", "--num-workers", "0", "--cache-dir", str(tmp_path / "cache"),
              "--device", "cpu"]  # fmt: skip
    for protocol in ("dino", "cached"):
        result = runner.invoke(app, [*linear, "--protocol", protocol, "-o", str(tmp_path / f"{protocol}.json")])
        assert result.exit_code == 0, result.output
        report = json.loads((tmp_path / f"{protocol}.json").read_text())
        assert 0.0 <= report["top1"] <= report["top5"] <= 1.0
        assert report["protocol"] == protocol
        # DINO's eval_linear.py defaults: lr 0.001 at a batch of 128, scaled by 128 / 256.
        assert (report["config"]["lr"], report["config"]["batch_size"], report["scaled_lr"]) == (0.001, 128, 0.0005)
    result = runner.invoke(app, [*linear, "--protocol", "fast"])
    assert isinstance(result.exception, WtoursError) and "--protocol 'fast'" in str(result.exception)
    assert "\n" not in str(result.exception)

    images = write_images(tmp_path / "imgs")
    result = runner.invoke(app, [
        "eval", "attention", str(weights), *map(str, images), "-o", str(tmp_path / "a.png"),
        "--image-size", "32", "--threshold", "0.6", "--device", "cpu",
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert (tmp_path / "a.png").stat().st_size > 0 and (tmp_path / "a.pdf").stat().st_size > 0

    write_synthetic_davis(tmp_path / "davis")
    davis = ["eval", "davis", str(weights), str(tmp_path / "davis"), "-o", str(tmp_path / "dout"),
             "--short-side", "64", "--sequence", "squares", "--device", "cpu"]  # fmt: skip
    result = runner.invoke(app, davis)
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "dout" / "summary.json").read_text())
    assert 0.0 <= summary["JF_mean"] <= 1.0 and summary["sequences"] == 1
    assert summary["config"]["void"] == "background"  # the DAVIS toolkit's semi-supervised rule by default
    result = runner.invoke(app, [*davis, "--void", "skip"])
    assert isinstance(result.exception, WtoursError) and "--void 'skip'" in str(result.exception)


def test_eval_knn_untrained_writes_the_baseline_beside_the_run(tmp_path):
    from wtours.store import RunDir
    from wtours.trainers.training.backbones import BackboneSpec, export_encoder

    run_dir = tmp_path / "runs" / "tiny"
    spec = BackboneSpec("vit_tiny_patch16_224", {"embed_dim": 32, "depth": 2, "num_heads": 2, "patch_size": 8})
    export_encoder(spec.create().eval(), spec, RunDir(run_dir).encoder_path)
    write_image_folder(tmp_path / "data" / "train", 6, 0)
    write_image_folder(tmp_path / "data" / "val", 4, 1)
    common = ["eval", "knn", str(run_dir), "--data", str(tmp_path / "data"), "--k", "3", "--image-size", "32",
              "--num-workers", "0", "--device", "cpu"]  # fmt: skip
    for extra in ([], ["--untrained"]):
        result = CliRunner().invoke(app, [*common, *extra])
        assert result.exit_code == 0, result.output
    trained = json.loads((run_dir / "eval" / "knn.json").read_text())
    baseline = json.loads((run_dir / "eval" / "knn_untrained.json").read_text())
    assert (trained["untrained"], baseline["untrained"]) == (False, True)
    assert baseline["n_val"] == trained["n_val"] and set(baseline["top1"]) == {"3"}
