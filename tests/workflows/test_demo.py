"""`wtours demo` end to end: render, serve on loopback, fetch through the real yt-dlp, analyze, curate, pretrain
the three methods on the study walk, evaluate each beside its floor, compare; then again, which must redo
nothing."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from wtours.sample import SampleTruth, StudyTruth

VIDEO_IDS = ("sample_walk", "sample_movie", "study_walk")
METHODS = ("dino", "dora", "videomae")


def run_demo_command(workdir: Path, seconds: float = 2) -> tuple[subprocess.CompletedProcess, float]:
    began = time.monotonic()
    completed = subprocess.run(
        [sys.executable, "-m", "wtours", "demo", "--workdir", str(workdir), "--seconds", str(seconds)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return completed, time.monotonic() - began


@pytest.mark.slow
def test_demo_runs_every_stage_on_the_sample_and_a_rerun_redoes_nothing(tmp_path):
    workdir = tmp_path / "demo"
    first, first_seconds = run_demo_command(workdir)
    videos = workdir / "data" / "videos"
    for video_id in VIDEO_IDS:
        sidecar = json.loads((videos / f"{video_id}.json").read_text())
        assert sidecar["size"] == (videos / f"{video_id}.mp4").stat().st_size
        assert sidecar["source"]["location"].startswith("http://127.0.0.1:")
        # yt-dlp's generic extractor names a page's <video> tag "html5".
        assert sidecar["ytdlp"]["extractor"] in ("generic", "html5")
        assert f"{video_id} (fetched)" in first.stdout
    # The movie came through an HTML page with a <video> tag, the walk as a direct link.
    movie_source = json.loads((videos / "sample_movie.json").read_text())["source"]["location"]
    assert movie_source.endswith("/movie.html")
    assert first.stdout.count("identical to the rendered file") == 3
    assert str(videos / "sample_walk.mp4") in first.stdout

    truth = SampleTruth.load(workdir / "source" / "walk.truth.json")
    assert json.loads((videos / "sample_walk.json").read_text())["frame_count"] == truth.n_frames == 60

    # Analysis finds the movie's cuts where the truth has them, and none in the walk; the study walk's cuts are
    # checked against its truth too (found, missed, spurious).
    data = workdir / "data"
    for video_id, name in (("sample_walk", "walk"), ("sample_movie", "movie")):
        shots = pd.read_parquet(data / "analysis" / video_id / "shots.parquet")
        cut_frames = SampleTruth.load(workdir / "source" / f"{name}.truth.json").cut_frames
        assert shots["start_frame"].tolist()[1:] == cut_frames
        assert len(pd.read_parquet(data / "clips" / f"{video_id}.parquet")) > 0
    assert (data / "figures" / "figure2.png").is_file()
    assert first.stdout.count("as in the truth") == 2
    study_truth = StudyTruth.load(workdir / "source" / "study.truth.json")
    assert (study_truth.width, study_truth.height, study_truth.fps, len(study_truth.scenes)) == (128, 96, 8, 20)
    assert f"of {len(study_truth.cut_frames)} cuts found" in first.stdout
    assert len(pd.read_parquet(data / "clips" / "study_walk.parquet")) > 100

    # Each method trained on the study walk's clips, its loss fell, and k-NN was measured beside its floor (the
    # same network at step 0), both shown in the summary and in `wtours compare`'s table.
    runs = workdir / "runs"
    for method in METHODS:
        run = runs / f"{method}-study"
        losses = [json.loads(line)["loss"] for line in (run / "metrics.jsonl").open()]
        summary = json.loads((run / "summary.json").read_text())
        config = yaml.safe_load((run / "config.yaml").read_text())
        assert summary["steps_done"] == summary["total_steps"] > 0 and config["data"]["video_ids"] == ["study_walk"]
        assert all(math.isfinite(loss) for loss in losses) and losses[-1] < losses[0]
        assert (run / "encoder.safetensors").is_file() and (run / "encoder_init.safetensors").is_file()
        trained = json.loads((run / "eval" / "knn.json").read_text())
        floor = json.loads((run / "eval" / "knn_untrained.json").read_text())
        assert floor["untrained"] and len(trained["classes"]) == 20 and trained["n_val"] == floor["n_val"]
        line = next(line for line in first.stdout.splitlines() if str(run) in line)
        assert f"loss {losses[0]:.3f} -> {losses[-1]:.3f}" in line
        assert f"{trained['top1']['20']:.1f}% vs {floor['top1']['20']:.1f}% untrained" in line
    table = (workdir / "comparison" / "results.md").read_text()
    header = table.splitlines()[0]
    assert all(f"{method}-study" in table for method in METHODS)
    assert "first loss" in header and "final loss" in header and "k-NN untrained" in header
    assert (workdir / "comparison" / "loss_curves.pdf").is_file()
    assert (workdir / "tracks" / "dora-study.gif").is_file()
    assert (workdir / "videomae-reconstruction.png").is_file()
    assert f"wtours demo --workdir {workdir} --full" in first.stdout  # how to see them learn

    kept = [*videos.iterdir(), *(workdir / "source").glob("*.mp4"), *(data / "figures").iterdir(),
            *runs.glob("*/checkpoint.pt")]  # fmt: skip
    stamps = {path: path.stat().st_mtime_ns for path in kept}
    second, second_seconds = run_demo_command(workdir)
    for video_id in VIDEO_IDS:
        assert f"{video_id} (skipped)" in second.stdout
    assert "(fetched)" not in second.stdout
    assert {path: path.stat().st_mtime_ns for path in stamps} == stamps  # nothing rendered, fetched or drawn again
    assert second_seconds < first_seconds

    # A longer sample replaces the earlier one everywhere: fetched again, analyzed against its own truth. The runs
    # learnt from the study walk alone, which did not change: they are kept.
    third, _ = run_demo_command(workdir, seconds=3)
    assert third.stdout.count("(fetched)") == 2 and third.stdout.count("as in the truth") == 2
    assert json.loads((videos / "sample_walk.json").read_text())["frame_count"] == 90
    dino_checkpoint = runs / "dino-study" / "checkpoint.pt"
    assert dino_checkpoint.stat().st_mtime_ns == stamps[dino_checkpoint]


def test_stages_without_their_optional_dependencies_say_so_and_step_aside(tmp_path, monkeypatch):
    import importlib.util

    from wtours.workflows import demo

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *args: None if name == "scenedetect" else real_find_spec(name, *args)
    )
    run = demo.DemoRun(tmp_path, seconds=2.0)
    demo.analyze_sample(run)
    demo.curate_sample(run)
    assert run.outputs == [
        ("analysis", "skipped: scenedetect missing (pip install 'wtours[analysis]')"),
        ("clips", "skipped: curation needs the analysis"),
    ]
    assert not (tmp_path / "data").exists()


def test_a_finished_run_from_another_preset_is_trained_again_and_an_older_config_is_read_with_defaults(tmp_path):
    from wtours.store import RunDir
    from wtours.trainers.training.config import config_to_tree, load_config
    from wtours.workflows.demo import DemoRun, _trained_otherwise

    def written(method: str, tree: dict) -> RunDir:
        files = RunDir(tmp_path / method)
        files.root.mkdir(exist_ok=True)
        files.config_path.write_text(yaml.safe_dump(tree))
        return files

    for method in METHODS:
        overrides = DemoRun(tmp_path, seconds=2.0).run_settings(method)
        tree = config_to_tree(load_config(f"{method}_study_cpu", overrides))
        tree["data"]["data_dir"], tree["run"]["name"] = "elsewhere", "renamed"  # not what the network learns
        assert not _trained_otherwise(written(method, tree), method, overrides)
        older = json.loads(json.dumps(tree))
        del older["optim"]["momentum_teacher_end"]  # written before the key existed: DINO's 1 then
        held = tree["optim"]["momentum_teacher_end"] != 1.0  # only the study DINO preset holds it at 0.99
        assert _trained_otherwise(written(method, older), method, overrides) == held, method
        tree["optim"]["lr"] *= 2
        assert _trained_otherwise(written(method, tree), method, overrides)


def test_full_trains_each_study_preset_for_the_studys_steps_beside_the_short_runs(tmp_path):
    from wtours.trainers.training.config import load_config
    from wtours.workflows.demo import DemoRequest, DemoRun

    assert DemoRequest().full is False and DemoRequest(full=True).full is True
    short, full = DemoRun(tmp_path, seconds=2.0), DemoRun(tmp_path, seconds=2.0, full=True)
    study_steps = {"dino": 600, "dora": 1590, "videomae": 520}  # benchmarks/study_cpu.py's runs
    for method in METHODS:
        assert full.run_dir(method).root.name == f"{method}-study-full" != short.run_dir(method).root.name
        preset = load_config(f"{method}_study_cpu", {})
        whole, cut = (load_config(f"{method}_study_cpu", run.run_settings(method)) for run in (full, short))
        assert whole.optim.epochs * whole.optim.steps_per_epoch == study_steps[method], method
        assert cut.optim.epochs * cut.optim.steps_per_epoch <= 48
        # Everything else the preset says stands: its schedules, temperatures, views and optimiser.
        for section in ("optim", "backbone"):
            mine, theirs = getattr(whole, section).model_dump(), getattr(preset, section).model_dump()
            changed = {key for key in mine if mine[key] != theirs[key]}
            assert changed <= {"steps_per_epoch", "batch_size"}, (method, changed)
        assert whole.options == preset.options, method
        assert whole.data.mode == "any_start"  # every valid start: the 222 index clips would cap an epoch at 13 steps
    # DINO sees each 2-frame clip as 2 images: 16 clips are the preset's 32 images per step.
    dino = load_config("dino_study_cpu", full.run_settings("dino"))
    assert dino.optim.batch_size * dino.data.frames_per_clip == load_config("dino_study_cpu", {}).optim.batch_size
