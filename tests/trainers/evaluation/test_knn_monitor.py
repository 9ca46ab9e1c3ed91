"""`run.knn_every`: the k-NN curve of the encoder while it trains, from its floor at step 0 to `eval knn` at the end,
measured between steps without changing what the run learns."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from wtours.errors import WtoursError
from wtours.sample.study import make_study_labelled_set
from wtours.trainers.evaluation.compare import compare_runs, load_run
from wtours.trainers.evaluation.knn import run_knn
from wtours.trainers.evaluation.monitor import KnnMonitor
from wtours.trainers.training.engine import pretrain


@pytest.fixture(scope="module")
def labelled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_study_labelled_set(tmp_path_factory.mktemp("labelled"), per_class_train=6, per_class_val=3)


def _lines(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_the_curve_runs_from_the_floor_to_eval_knn_and_changes_nothing_the_run_learns(
    tmp_path: Path, tiny_config, sample_frames, labelled: Path
) -> None:
    plain = tiny_config(tmp_path / "runs", **{"run.name": "plain", "optim.steps_per_epoch": 5, "run.log_every": 1})
    pretrain(plain, sample_frames, show_progress=False)
    monitored = tiny_config(tmp_path / "runs", **{
        "run.name": "monitored", "optim.steps_per_epoch": 5, "run.log_every": 1, "run.knn_every": 2,
        "run.knn_data": str(labelled), "run.knn_image_size": 48,
    })  # fmt: skip
    monitor = KnnMonitor.of(monitored, announce=False)
    assert monitor is not None and monitor.every == 2 and monitor.image_size == 48
    result = pretrain(monitored, sample_frames, show_progress=False, monitor=monitor)

    # Bit for bit the same encoder and the same losses as without the monitor.
    trained = load_file(result.encoder_path)
    for name, tensor in load_file(tmp_path / "runs" / "plain" / "encoder.safetensors").items():
        assert torch.equal(tensor, trained[name]), name
    plain_losses = [line["loss"] for line in _lines(tmp_path / "runs" / "plain")]
    lines = _lines(result.run_dir)
    assert [line["loss"] for line in lines if "loss" in line] == plain_losses

    # Step 0, every 2 steps, and the last step: the first is the untrained floor, the last the trained encoder.
    curve = [(line["step"], line["knn_top1"]) for line in lines if "knn_top1" in line]
    assert [step for step, _ in curve] == [0, 2, 4, 5]
    common = dict(ks=(10, 20), image_size=48, batch_size=100, device="cpu")
    floor = run_knn(result.run_dir, labelled, untrained=True, **common)["top1"]
    final = run_knn(result.run_dir, labelled, **common)["top1"]
    assert curve[0][1] == pytest.approx(floor, abs=1e-6)
    assert curve[-1][1] == pytest.approx(final, abs=1e-6)
    assert {key for _, top1 in curve for key in top1} == {"10", "20"}

    # `wtours compare` reads the curve and draws it; a run without one draws no such figure.
    assert load_run(result.run_dir).knn_curve[0] == (0, {int(k): v for k, v in curve[0][1].items()})
    written = compare_runs([tmp_path / "runs" / "plain", result.run_dir], tmp_path / "compare")
    assert {"knn_curves.png", "knn_curves.pdf"} <= set(written)
    assert "knn_curves.png" not in compare_runs([tmp_path / "runs" / "plain"], tmp_path / "compare-plain")


def test_a_resumed_run_may_change_how_often_it_is_scored(
    tmp_path: Path, tiny_config, sample_frames, labelled: Path
) -> None:
    first = tiny_config(tmp_path / "runs", **{"run.knn_every": 4, "run.knn_data": str(labelled)})
    monitor = KnnMonitor.of(first, announce=False)
    pretrain(first, sample_frames, show_progress=False, stop_after_steps=4, monitor=monitor)
    again = tiny_config(tmp_path / "runs", **{"run.knn_every": 3, "run.knn_data": str(labelled)})
    result = pretrain(again, sample_frames, resume=True, show_progress=False,
                      monitor=KnnMonitor.of(again, announce=False))  # fmt: skip
    steps = [line["step"] for line in _lines(result.run_dir) if "knn_top1" in line]
    assert steps == [0, 4, 6]  # kept from the first invocation, then every 3 and the last step


def test_a_knn_set_that_is_not_a_labelled_set_is_refused_before_any_step(
    tmp_path: Path, tiny_config, sample_frames
) -> None:
    (tmp_path / "notaset").mkdir()
    config = tiny_config(tmp_path / "runs", **{"run.knn_every": 2, "run.knn_data": str(tmp_path / "notaset")})
    with pytest.raises(WtoursError, match=r"run.knn_data=.*notaset: expected train/<class>/\* and val/<class>/\*"):
        KnnMonitor.of(config)
    unnamed = tiny_config(tmp_path / "runs", **{"run.knn_every": 2})
    with pytest.raises(WtoursError, match="run.knn_every needs run.knn_data"):
        KnnMonitor.of(unnamed)  # a room has no built-in set of its own: the workflow passes it
    assert KnnMonitor.of(tiny_config(tmp_path / "runs")) is None  # off unless asked for
    assert not (tmp_path / "runs").exists()


class _SlowMonitor:
    """A monitor that takes far longer than a step, as scoring a real encoder does."""

    every = 1

    def __call__(self, step: int, method) -> dict:
        time.sleep(0.3)
        return {"slow": step}


def test_throughput_counts_the_steps_of_an_interval_and_not_the_scoring_between_them(
    tmp_path: Path, tiny_config, sample_frames
) -> None:
    common = {"optim.steps_per_epoch": 8, "optim.epochs": 1, "run.log_every": 4}
    pretrain(tiny_config(tmp_path / "runs", **{"run.name": "plain", **common}), sample_frames, show_progress=False)
    result = pretrain(tiny_config(tmp_path / "runs", **{"run.name": "scored", **common}), sample_frames,
                      show_progress=False, monitor=_SlowMonitor())  # fmt: skip

    def throughput(run_dir: Path) -> list[float]:
        return [line["images_per_s"] for line in _lines(run_dir) if "images_per_s" in line]

    plain, scored = throughput(tmp_path / "runs" / "plain"), throughput(result.run_dir)
    assert [line["slow"] for line in _lines(result.run_dir) if "slow" in line] == list(range(9))
    # Counting the 0.3 s of scoring would divide the figure by about ten; counting only the steps since the last
    # scoring (one of the interval's four) would multiply it by four.
    for alone, beside in zip(plain, scored, strict=True):
        assert alone / 2.5 < beside < alone * 2.5, (plain, scored)
