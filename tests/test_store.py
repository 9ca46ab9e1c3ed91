"""The atomic-write helper: all or nothing, ordinary permissions, symlink targets untouched."""

from __future__ import annotations

import os
import stat

import pytest

from wtours.store import (
    RunDir,
    Store,
    atomic_path,
    atomic_write_json,
    encoder_weights,
    initial_encoder_weights,
    read_json,
)


def test_atomic_write_replaces_whole_file_with_plain_permissions(tmp_path):
    target = tmp_path / "sub" / "a.json"
    atomic_write_json(target, {"x": 1})
    assert read_json(target) == {"x": 1}
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask
    assert [p.name for p in target.parent.iterdir()] == ["a.json"], "no temporary file left behind"


def test_failed_write_leaves_old_content_and_no_temp(tmp_path):
    target = tmp_path / "a.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("interrupted")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_symlink_through_atomic_path_keeps_target_mode(tmp_path):
    tool = tmp_path / "tool"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    link = tmp_path / "bin" / "tool"
    with atomic_path(link) as tmp:
        tmp.unlink()
        tmp.symlink_to(tool)
    assert link.is_symlink()
    assert stat.S_IMODE(tool.stat().st_mode) == 0o755


def test_is_verified_needs_matching_sidecar(tmp_path):
    store = Store.at(tmp_path)
    store.videos_dir.mkdir()
    store.video_path("a").write_bytes(b"12345")
    assert not store.is_verified("a")
    atomic_write_json(store.sidecar_path("a"), {"size": 4})
    assert not store.is_verified("a")
    atomic_write_json(store.sidecar_path("a"), {"size": 5})
    assert store.is_verified("a")


def test_file_sha256_matches_hashlib_across_chunks(tmp_path):
    import hashlib

    from wtours.store import file_digests, file_sha256

    data = os.urandom((4 << 20) + 12345)  # more than one 4 MiB chunk
    path = tmp_path / "blob"
    path.write_bytes(data)
    assert file_sha256(path) == hashlib.sha256(data).hexdigest()
    both = {"sha256": hashlib.sha256(data).hexdigest(), "md5": hashlib.md5(data).hexdigest()}
    assert file_digests(path, ("sha256", "md5")) == both  # one read for a host's md5 and our sha256


def test_a_staged_atomic_write_leaves_nothing_beside_its_target(tmp_path):
    staging = tmp_path / "videos" / ".partial" / "a"
    target = tmp_path / "videos" / "a.json"
    with pytest.raises(RuntimeError), atomic_path(target, staging=staging) as tmp:
        assert tmp.parent == staging
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert not target.exists() and not any(staging.iterdir()) and os.listdir(target.parent) == [".partial"]
    atomic_write_json(target, {"x": 1}, staging=staging)
    assert read_json(target) == {"x": 1} and not any(staging.iterdir())


def test_a_write_error_without_a_file_name_is_given_the_targets(tmp_path):
    import errno

    from wtours.errors import os_error_message

    target = tmp_path / "a.bin"
    with pytest.raises(OSError) as raised, atomic_path(target):
        raise OSError(errno.ENOSPC, "No space left on device")  # what write() says on a full disk
    assert os_error_message(raised.value) == f"{target}: No space left on device (ENOSPC)"
    assert os.listdir(tmp_path) == []


def test_a_videos_lock_refuses_a_second_run_and_names_the_first(tmp_path):
    pytest.importorskip("fcntl", reason="advisory locks are POSIX-only")
    from wtours.errors import BusyError

    store = Store.at(tmp_path)
    with store.lock("walk", "anonymize"):
        assert f"anonymize (pid {os.getpid()})" in store.lock_path("walk").read_text()
        with pytest.raises(BusyError) as raised, store.lock("walk", "fetch"):
            pass
        assert str(raised.value) == f"walk: another wtours anonymize (pid {os.getpid()}) is on this video now"
        assert raised.value.exit_code == 1
        with store.lock("other", "fetch"):  # other videos are free
            pass
    assert not store.lock_path("walk").exists()
    with store.lock("walk", "fetch"):  # released: the next run takes it
        pass


def test_stale_temps_of_one_video_are_cleared_and_no_others(tmp_path):
    store = Store.at(tmp_path)
    store.videos_dir.mkdir()
    names = [".walk-anon.mp4.abcd1234.tmp", ".walk-anon.json.x_yz9876.tmp", ".walk-anon.mp4.mp4.abcd1234.tmp",
             ".walk.mp4.abcd1234.tmp", "walk-anon.mp4", ".walk-anon.mp4.partial"]  # fmt: skip
    for name in names:
        (store.videos_dir / name).write_bytes(b"x")
    store.clear_stale_temps("walk-anon")
    assert sorted(os.listdir(store.videos_dir)) == sorted(names[2:])


def test_copy_file_makes_an_independent_copy(tmp_path):
    from wtours.store import copy_file

    source = tmp_path / "a.mp4"
    source.write_bytes(os.urandom(100_000))
    target = tmp_path / "videos" / "a.mp4"
    assert copy_file(source, target) in ("copy", "reflink")
    assert target.read_bytes() == source.read_bytes() and not os.path.samefile(source, target)
    source.write_bytes(b"changed")
    assert len(target.read_bytes()) == 100_000
    assert os.listdir(target.parent) == ["a.mp4"]


def test_the_store_names_every_folder_of_the_data_directory(tmp_path):
    """The layout of the module docstring, spelled in one place (commands ask the Store, never join names)."""
    store = Store.at(tmp_path)
    layout = {
        store.video_path("v"): "videos/v.mp4",
        store.sidecar_path("v"): "videos/v.json",
        store.partial_dir("v"): "videos/.partial/v",
        store.state_path("v"): "videos/.state/v.json",
        store.lock_path("v"): "videos/.state/v.lock",
        store.parts_dir("v-anon"): "videos/.v-anon.parts",
        store.tools_dir: ".cache/bin",
        store.analysis_dir("v"): "analysis/v",
        store.figures_dir: "figures",
        store.clips_path("v"): "clips/v.parquet",
        store.proxy_dir("v", 320): "proxies/v/short320",
    }
    assert {str(path.relative_to(tmp_path)): name for path, name in layout.items()} == {
        name: name for name in layout.values()
    }
    assert not tmp_path.joinpath("videos").exists(), "naming a path creates nothing"


def test_the_run_dir_names_every_file_of_a_run_folder(tmp_path):
    """Training writes, evaluation adds and compare reads a run folder through RunDir alone."""
    run = RunDir.at(tmp_path / "runs" / "dino")
    layout = {
        run.config_path: "config.yaml",
        run.metrics_path: "metrics.jsonl",
        run.checkpoint_path: "checkpoint.pt",
        run.encoder_path: "encoder.safetensors",
        run.encoder_init_path: "encoder_init.safetensors",
        run.summary_path: "summary.json",
        run.knn_path(): "eval/knn.json",
        run.knn_path(untrained=True): "eval/knn_untrained.json",
        run.linear_path(): "eval/linear.json",
        run.linear_path(untrained=True): "eval/linear_untrained.json",
        run.davis_dir: "eval/davis",
    }
    assert {str(path.relative_to(run.root)): name for path, name in layout.items()} == {
        name: name for name in layout.values()
    }
    assert not run.root.exists(), "naming a path creates nothing"
    assert RunDir.holding(run.encoder_path) is None, "a file outside a run folder names no run"
    run.root.mkdir(parents=True)
    run.config_path.write_text("method: dino\n")
    assert RunDir.holding(run.encoder_path) == run and RunDir.holding(run.root) == run
    assert encoder_weights(run.root) == run.encoder_path and initial_encoder_weights(run.encoder_path) == (
        run.encoder_init_path
    )
    assert not run.is_finished() and run.losses() == []
    run.metrics_path.write_text('{"step": 1, "loss": 2.5}\n{"step": 2, "loss": 2.0}\n{"step": 3, "lo')
    atomic_write_json(run.summary_path, {"steps_done": 2, "total_steps": 2})
    assert run.is_finished() and run.losses() == [2.5, 2.0]
