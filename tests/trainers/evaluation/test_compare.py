"""`wtours compare` on a real tiny DINO run (evaluated through `wtours eval`) beside runs written by hand."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml
from test_attention_maps import write_images
from test_linear import write_image_folder
from typer.testing import CliRunner

from wtours.cli import app
from wtours.errors import WtoursError
from wtours.store import RunDir
from wtours.trainers.evaluation.compare import (
    build_comparison,
    compare_runs,
    evaluation_panels,
    gather_runs,
    group_conditions,
)
from wtours.trainers.training.engine import pretrain

FIGURES = ("loss_curves", "eval_by_method", "eval_by_videos")
TABLES = ("results.md", "results.csv", "results.tex")


def write_run_by_hand(
    run_dir: Path,
    method: str,
    video_ids: list[str] | None,
    losses: list[float],
    evaluations: dict[str, dict],
    settings: dict[str, object] | None = None,
    precision: str | None = None,
) -> None:
    """A run folder in the format `pretrain` and `wtours eval` write, without training anything. ``settings``:
    dotted config keys to add (``run.seed``); ``precision``: what summary.json says the run trained in."""
    run_dir.mkdir(parents=True)
    config = {
        "method": method,
        "run": {"name": run_dir.name},
        "backbone": {"arch": "vit_small", "patch_size": 16},
        "optim": {"epochs": 2},
        "data": {"data_dir": "data", "video_ids": video_ids},
    }
    for key, value in (settings or {}).items():
        section, name = key.split(".")
        config[section][name] = value
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    if losses:
        lines = [
            json.dumps({"step": step, "epoch": (step - 1) // 2, "loss": loss}) for step, loss in enumerate(losses, 1)
        ]
        (run_dir / "metrics.jsonl").write_text("\n".join(lines) + "\n")
        summary = {"method": method, "steps_done": len(losses), "total_steps": len(losses)}
        if precision:
            summary["precision"] = precision
        (run_dir / "summary.json").write_text(json.dumps(summary))
    for relative_path, report in evaluations.items():
        path = run_dir / "eval" / relative_path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report))


def markdown_rows(text: str) -> dict[str, dict[str, str]]:
    """run name -> {column title: cell} of the Markdown table."""
    lines = [line for line in text.splitlines() if line.startswith("|")]
    headers = [cell.strip() for cell in lines[0].strip("|").split("|")]
    rows = [
        dict(zip(headers, (cell.strip() for cell in line.strip("|").split("|")), strict=True)) for line in lines[2:]
    ]
    return {row["run"]: row for row in rows}


def test_compare_two_runs_writes_every_file_with_the_runs_numbers(tmp_path: Path, sample_frames, tiny_config) -> None:
    runner = CliRunner()
    config = tiny_config(tmp_path / "runs", **{"run.name": "dino-a", "optim.steps_per_epoch": 3, "run.log_every": 1})
    run_a = pretrain(config, sample_frames, show_progress=False).run_dir
    labelled = tmp_path / "labelled"
    write_image_folder(labelled / "train", 6, seed=0)
    write_image_folder(labelled / "val", 4, seed=1)
    # No --out: results of a run folder land in <run>/eval/, where compare reads them.
    result = runner.invoke(app, [
        "eval", "knn", str(run_a), "--data", str(labelled), "--k", "3", "--k", "5", "--image-size", "32",
        "--num-workers", "0", "--device", "cpu",
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, [
        "eval", "linear", str(run_a), "--data", str(labelled), "--resize", "32", "--crop", "32", "--epochs", "3",
        "--n-last-blocks", "1", "--no-cache", "--num-workers", "0", "--device", "cpu",
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, [
        "eval", "knn", str(run_a), "--data", str(labelled), "--k", "3", "--k", "5", "--image-size", "32",
        "--num-workers", "0", "--device", "cpu", "--untrained",
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, [
        "eval", "linear", str(run_a), "--data", str(labelled), "--resize", "32", "--crop", "32", "--epochs", "3",
        "--n-last-blocks", "1", "--no-cache", "--num-workers", "0", "--device", "cpu", "--untrained",
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    linear_floor = json.loads((run_a / "eval" / "linear_untrained.json").read_text())
    assert linear_floor["untrained"] and linear_floor["weights"].endswith("encoder_init.safetensors")
    knn = json.loads((run_a / "eval" / "knn.json").read_text())
    untrained = json.loads((run_a / "eval" / "knn_untrained.json").read_text())
    linear = json.loads((run_a / "eval" / "linear.json").read_text())

    run_b = tmp_path / "runs" / "dora-b"
    write_run_by_hand(run_b, "dora", ["Venice", "Kyoto"], [3.5, 3.1, 2.9, 2.95], evaluations={})
    image = write_images(tmp_path / "images")[0]
    out = tmp_path / "compare"
    result = runner.invoke(app, [
        "compare", str(run_a), str(run_b), "--out", str(out), "--image", str(image), "--image-size", "32",
        "--device", "cpu",
    ])  # fmt: skip
    assert result.exit_code == 0, result.output

    for stem in (*FIGURES, "attention"):
        assert (out / f"{stem}.png").read_bytes().startswith(b"\x89PNG")
        assert (out / f"{stem}.pdf").read_bytes().startswith(b"%PDF")
    for name in TABLES:
        assert (out / name).stat().st_size > 0
    assert not list(out.glob(".*.tmp")), "no temporary files are left behind"

    rows = {row["run"]: row for row in csv.DictReader((out / "results.csv").open())}
    metrics = [json.loads(line) for line in (run_a / "metrics.jsonl").read_text().splitlines()]
    best_k, best_top1 = max(sorted((int(k), v) for k, v in knn["top1"].items()), key=lambda item: item[1])
    a, b = rows["dino-a"], rows["dora-b"]
    assert (a["method"], a["steps"], a["total_steps"]) == ("dino", "3", "3")
    assert float(a["final_loss"]) == metrics[-1]["loss"]
    assert (float(a["knn_top1"]), int(a["knn_k"])) == (best_top1, best_k)
    assert float(a["knn_untrained_top1"]) == untrained["top1"][str(best_k)]  # the baseline at the same k
    assert float(a["linear_top1"]) == pytest.approx(100 * linear["best_top1"])
    assert float(a["linear_untrained_top1"]) == pytest.approx(100 * linear_floor["best_top1"])
    assert a["davis_jf"] == "" and a["missing"] == "DAVIS"
    assert (b["method"], b["pretraining_videos"], float(b["final_loss"])) == ("dora", "Venice+Kyoto", 2.95)
    assert b["knn_top1"] == b["knn_untrained_top1"] == b["linear_top1"] == b["davis_jf"] == ""

    markdown = markdown_rows((out / "results.md").read_text())
    assert markdown["dora-b"]["k-NN top-1"] == markdown["dora-b"]["linear top-1"] == markdown["dora-b"]["J&F"] == "—"
    assert markdown["dino-a"]["k-NN top-1"] == f"{best_top1:.1f}"
    latex = (out / "results.tex").read_text()
    assert all(rule in latex for rule in (r"\toprule", r"\midrule", r"\bottomrule"))
    assert r"\textbf{" + f"{best_top1:.1f}" + "}" in latex and "dora-b" in latex


def test_runs_missing_metrics_or_evaluations_are_marked_not_dropped(tmp_path: Path) -> None:
    bare = tmp_path / "bare"
    write_run_by_hand(bare, "videomae", None, [], evaluations={})
    davis = {"JF_mean": 0.5, "J_mean": 0.45, "F_mean": 0.55}
    evaluated = tmp_path / "evaluated"
    write_run_by_hand(
        evaluated,
        "dino",
        ["Venice"],
        [5.0, 4.0],
        evaluations={"davis/summary.json": davis, "linear.json": {"top1": 0.25}},
    )
    written = compare_runs([bare, evaluated], tmp_path / "out")
    assert {f"{stem}.{suffix}" for stem in FIGURES for suffix in ("png", "pdf")} | set(TABLES) <= set(written)
    assert "attention.png" not in written  # no images asked for

    rows = {row["run"]: row for row in csv.DictReader((tmp_path / "out" / "results.csv").open())}
    assert rows["bare"]["final_loss"] == rows["bare"]["steps"] == ""
    assert rows["bare"]["missing"] == "metrics, k-NN, linear, DAVIS"
    assert float(rows["evaluated"]["davis_jf"]) == 50.0 and float(rows["evaluated"]["linear_top1"]) == 25.0
    markdown = markdown_rows((tmp_path / "out" / "results.md").read_text())
    assert markdown["bare"]["final loss"] == markdown["bare"]["J&F"] == "—"
    assert markdown["evaluated"]["pretraining videos"] == "Venice"
    assert r"\textbf{50.0}" in (tmp_path / "out" / "results.tex").read_text()


@pytest.mark.parametrize(
    "make, message", [(lambda root: root / "nope", "no such run folder"), (lambda root: root, "no config.yaml")]
)
def test_a_folder_that_is_not_a_run_is_a_one_line_error(tmp_path: Path, make, message: str) -> None:
    result = CliRunner().invoke(app, ["compare", str(make(tmp_path)), "--out", str(tmp_path / "out")])
    assert isinstance(result.exception, WtoursError)
    assert message in str(result.exception) and "\n" not in str(result.exception)
    assert not (tmp_path / "out").exists()


def test_eval_results_of_a_run_default_to_its_eval_folder(tmp_path: Path) -> None:
    run_dir = tmp_path / "runs" / "dino"
    write_run_by_hand(run_dir, "dino", None, [1.0], evaluations={})
    assert RunDir.holding(run_dir).davis_dir == run_dir / "eval" / "davis"
    assert RunDir.holding(run_dir / "encoder.safetensors").knn_path() == run_dir / "eval" / "knn.json"
    assert RunDir.holding(tmp_path / "elsewhere.safetensors") is None


def test_each_knn_bar_is_drawn_beside_its_own_untrained_floor(tmp_path: Path) -> None:
    floored, unfloored = tmp_path / "dino-a", tmp_path / "dora-b"
    write_run_by_hand(floored, "dino", None, [5.0, 4.0], evaluations={
        "knn.json": {"top1": {"10": 61.0, "20": 58.5}}, "knn_untrained.json": {"top1": {"10": 59.0, "20": 56.5}},
    })  # fmt: skip
    write_run_by_hand(unfloored, "dora", None, [5.0, 4.0], evaluations={"knn.json": {"top1": {"20": 51.0}}})
    conditions = group_conditions(gather_runs([floored, unfloored]))
    panels = {panel.title: panel for panel in evaluation_panels(conditions)}
    assert panels["k-NN top-1, k=10"].values == [[61.0], []] and panels["k-NN top-1, k=10"].floors == [[59.0], []]
    assert panels["k-NN top-1, k=20"].values == [[58.5], [51.0]] and panels["k-NN top-1, k=20"].floors == [[56.5], []]
    assert panels["linear top-1"].floors == [[], []]
    written = compare_runs([floored, unfloored], tmp_path / "out")
    assert {"eval_by_method.png", "eval_by_method.pdf"} <= set(written)


def test_runs_that_differ_only_in_their_seed_are_one_condition_with_its_mean_spread_and_interval(tmp_path) -> None:
    import statistics

    from scipy.stats import t

    def scores(trained20: float, floor20: float) -> dict[str, dict]:
        return {
            "knn.json": {"top1": {"10": trained20 - 1.0, "20": trained20}},
            "knn_untrained.json": {"top1": {"10": floor20 + 0.5, "20": floor20}},
        }

    trained, floors, final_losses = [70.0, 69.0, 71.5], [56.5, 55.0, 58.0], [1.0, 0.8, 1.3]
    runs = []
    for seed in range(3):  # where they were written and how they were logged may differ: still one condition
        run = tmp_path / f"out{seed}" / f"dino-seed{seed}"
        write_run_by_hand(run, "dino", None, [5.0, 3.0, final_losses[seed]], scores(trained[seed], floors[seed]),
                          {"run.seed": seed, "run.log_every": 10 + seed, "run.output_dir": str(run.parent)},
                          precision="fp32")  # fmt: skip
        runs.append(run)
    other_lr = tmp_path / "dino-lr-seed0"  # a setting that changes what is learned: its own condition
    write_run_by_hand(other_lr, "dino", None, [5.0, 2.0], scores(60.0, 56.5), {"run.seed": 0, "optim.lr": 0.01},
                      precision="fp32")  # fmt: skip
    other_precision = tmp_path / "dino-bf16-seed1"  # trained in bf16, the others in fp32
    write_run_by_hand(other_precision, "dino", None, [5.0, 2.0], scores(65.0, 55.0), {"run.seed": 1},
                      precision="bf16")  # fmt: skip
    records = gather_runs([runs[2], other_lr, runs[0], other_precision, runs[1]])

    conditions = group_conditions(records)
    assert [(c.label, c.seeds) for c in conditions] == [
        ("dino", [0, 1, 2]), ("dino-lr-seed0", [0]), ("dino-bf16-seed1", [1]),
    ]  # fmt: skip
    panels = {panel.title: panel for panel in evaluation_panels(conditions)}
    assert panels["k-NN top-1, k=20"].values == [trained, [60.0], [65.0]]
    assert panels["k-NN top-1, k=20"].floors == [floors, [56.5], [55.0]]

    out = tmp_path / "compare"
    written = compare_runs([runs[2], other_lr, runs[0], other_precision, runs[1]], out)
    assert {"summary.md", "summary.csv", "summary.tex", "eval_by_method.png", "loss_curves.png"} <= set(written)
    summary = {row["condition"]: row for row in csv.DictReader((out / "summary.csv").open())}
    dino = summary["dino"]
    gains = [a - b for a, b in zip(trained, floors, strict=True)]
    half = t.ppf(0.975, 2) * statistics.stdev(gains) / 3**0.5
    assert (dino["runs"], dino["seeds"], dino["knn_k"]) == ("3", "0 1 2", "20")  # k=20 has the best mean
    assert float(dino["knn_top1_mean"]) == pytest.approx(statistics.fmean(trained))
    assert float(dino["knn_top1_sd"]) == pytest.approx(statistics.stdev(trained))
    assert float(dino["knn_untrained_mean"]) == pytest.approx(statistics.fmean(floors))
    assert float(dino["knn_gain_mean"]) == pytest.approx(statistics.fmean(gains))
    assert float(dino["knn_gain_ci95"]) == pytest.approx(half)
    assert float(dino["final_loss_mean"]) == pytest.approx(statistics.fmean(final_losses))
    assert float(dino["loss_change_pct_mean"]) == pytest.approx(
        statistics.fmean(100 * (x - 5) / 5 for x in final_losses)
    )
    one = summary["dino-lr-seed0"]
    assert (one["runs"], float(one["knn_gain_mean"]), one["knn_top1_sd"], one["knn_gain_ci95"]) == ("1", 3.5, "", "")

    table = (out / "summary.md").read_text()
    mean_gain = statistics.fmean(gains)
    assert "| 3 (0, 1, 2) |" in table and f"{statistics.fmean(trained):.1f} ± {statistics.stdev(trained):.1f}" in table
    assert f"{mean_gain:+.1f} ({mean_gain - half:+.1f} to {mean_gain + half:+.1f})" in table
    assert r"$\pm$" in (out / "summary.tex").read_text() and r"\textbf{" in (out / "summary.tex").read_text()
    per_run = {row["run"]: row for row in csv.DictReader((out / "results.csv").open())}
    assert len(per_run) == 5 and per_run["dino-seed2"]["seed"] == "2"  # results.* keeps one row per run
    gathered = {entry["label"]: entry["condition"] for entry in json.loads((out / "runs.json").read_text())}
    assert gathered["dino-seed1"] == "dino" and gathered["dino-bf16-seed1"] == "dino-bf16-seed1"


def test_knn_scores_from_different_sets_are_never_set_side_by_side_as_if_they_compared(tmp_path: Path) -> None:
    def report(top1: float, n_val: int, where: str, untrained: bool = False) -> dict:
        return {"top1": {"20": top1}, "classes": ["a", "b"], "n_train": 100, "n_val": n_val, "image_size": 64,
                "temperature": 0.07, "labelled_set": where, "untrained": untrained}  # fmt: skip

    # The floor scored on the same set named another way (a relative path, a moved folder): kept.
    same = tmp_path / "dino-seed0"
    write_run_by_hand(same, "dino", None, [5.0, 4.0], {
        "knn.json": report(70.0, 40, str(tmp_path / "study_set")),
        "knn_untrained.json": report(56.0, 40, "study_set", untrained=True),
        # ... but its linear floor ran the cached probe, the run DINO's: left out too.
        "linear.json": {"best_top1": 0.5, "protocol": "dino", "val_images": 40},
        "linear_untrained.json": {"best_top1": 0.3, "protocol": "cached", "val_images": 40},
    }, {"run.seed": 0})  # fmt: skip
    # The floor scored on another set (the default study set, the run on the user's own): left out, with a note.
    other_floor = tmp_path / "dino-seed1"
    write_run_by_hand(other_floor, "dino", None, [5.0, 4.0], {
        "knn.json": report(71.0, 80, "imagenet"), "knn_untrained.json": report(55.0, 40, "study_set", untrained=True),
    }, {"run.seed": 1})  # fmt: skip

    comparison = build_comparison([same, other_floor])
    same_record, other_record = comparison.records
    assert same_record.knn_untrained_top1 == {20: 56.0} and other_record.knn_untrained_top1 == {}
    assert same_record.linear_top1 == 50.0 and same_record.linear_untrained_top1 is None
    assert same_record.knn_set == "study_set (100 / 40, 64 px)"
    # The two seeds were scored on different sets: their condition takes no k-NN mean.
    (condition,) = comparison.conditions
    assert condition.label == "dino" and not condition.knn_comparable and condition.knn() is None
    panels = {panel.title: panel for panel in evaluation_panels(comparison.conditions)}
    assert panels["k-NN top-1, k=20"].values == [[]]  # not drawn, as not averaged
    assert panels["linear top-1"].values == [[50.0]] and panels["linear top-1"].floors == [[]]  # its floor left out
    notes = "\n".join(comparison.notes)
    assert "dino-seed1: its untrained floor was scored on study_set (100 / 40, 64 px), the run on imagenet" in notes
    assert "dino: its seeds' k-NN were scored on different sets" in notes
    assert "k-NN was scored on 2 different sets" in notes
    assert (
        "dino-seed0: its untrained linear probe ran another protocol or set than the run's (protocol cached vs dino)"
        in notes
    )

    result = CliRunner().invoke(app, ["compare", str(same), str(other_floor), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "note: k-NN was scored on 2 different sets" in result.stderr
    rows = markdown_rows((tmp_path / "out" / "results.md").read_text())
    assert rows["dino-seed1"]["k-NN untrained"] == "—" and rows["dino-seed0"]["k-NN untrained"] == "56.0"
    assert rows["dino-seed1"]["k-NN set"] == "imagenet (100 / 80, 64 px)"
    summary = (tmp_path / "out" / "summary.md").read_text()
    assert "Left out or not comparable:" in summary and "| dino | dino |" in summary
    assert next(row for row in csv.DictReader((tmp_path / "out" / "summary.csv").open()))["knn_top1_mean"] == ""


def test_a_run_whose_config_is_not_text_is_a_one_line_error(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_bytes(b"\xff\xfe\x00binary")
    result = CliRunner().invoke(app, ["compare", str(run), "--out", str(tmp_path / "out")])
    assert isinstance(result.exception, WtoursError) and "not valid YAML" in str(result.exception)
    assert "\n" not in str(result.exception) and not (tmp_path / "out").exists()
