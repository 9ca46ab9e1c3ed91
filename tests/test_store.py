"""The atomic-write helper: all or nothing, ordinary permissions, symlink targets untouched."""

from __future__ import annotations

import os
import stat

import pytest

from wtours.store import Store, atomic_path, atomic_write_json, read_json


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

    from wtours.store import file_sha256

    data = os.urandom((4 << 20) + 12345)  # more than one 4 MiB chunk
    path = tmp_path / "blob"
    path.write_bytes(data)
    assert file_sha256(path) == hashlib.sha256(data).hexdigest()
