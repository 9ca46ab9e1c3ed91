"""Bad manifests and bad options: exit 2, one line on stderr, nothing written. (The manifest model's own
messages are tested line by line in tests/test_manifest.py; here the whole CLI answers.)"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from faultkit import assert_one_line_error, write_manifest

pytestmark = pytest.mark.faults

# 267 bytes whose aliases, once followed, are 9**7 strings: it took 56 s and 4.5 GB before it was refused.
ALIAS_BOMB = "".join(
    f"{name}: &{name} [{', '.join([f'*{previous}'] * 9 if previous else ['x'] * 9)}]\n"
    for previous, name in zip(["", "a", "b", "c", "d", "e", "f"], "abcdefg", strict=True)
) + "videos: [*g]\n"

MANIFESTS = {
    "alias-bomb": (ALIAS_BOMB, "line 1: YAML anchors and aliases (&name, *name) are not allowed"),
    "deep-nesting": ("videos: " + "[" * 5000 + "]" * 5000 + "\n", "nested more than 32 levels deep"),
    "oversized": ("# padding\n" * 300_000, "larger than a manifest may be (2 MiB)"),
    "empty": ("", "expected a mapping with a 'videos' list, got NoneType"),
    "a-list": ("- a.mp4\n- b.mp4\n", "expected a mapping with a 'videos' list, got list"),
    "binary": (b"\x00\xff\xfe garbage", "cannot read manifest"),
    "tabs": ("videos:\n\t- {id: a, sources: [a.mp4]}\n", "malformed YAML"),
    "bad-url": ("videos:\n  - {id: a, sources: [{url: 'ftp://x/a.mp4'}]}\n", ".sources[0].url: not an http(s) URL"),
    "unsafe-name": ("videos:\n  - {id: ../x, sources: [a.mp4]}\n", "unsafe id '../x'"),
}


@pytest.mark.parametrize("name", MANIFESTS)
def test_a_bad_manifest_is_one_line_fast_and_writes_nothing(cli, tmp_path: Path, name: str) -> None:
    text, expected = MANIFESTS[name]
    manifest = tmp_path / "m.yaml"
    manifest.write_bytes(text if isinstance(text, bytes) else text.encode())
    started = time.perf_counter()
    outcome = cli("fetch", "-m", manifest, "-d", tmp_path / "data")
    assert time.perf_counter() - started < 1.0
    line = assert_one_line_error(outcome, expected, code=2)
    assert line.count(str(manifest)) == 1 and ": error:" not in line, "the file is named once, no repeated prefix"
    assert not (tmp_path / "data").exists()


def test_a_folder_or_a_missing_file_as_manifest_is_one_line(cli, tmp_path: Path) -> None:
    assert_one_line_error(cli("fetch", "-m", tmp_path, "-d", tmp_path / "data"), str(tmp_path), code=2)
    assert_one_line_error(cli("status", "-m", tmp_path / "none.yaml"), "manifest not found", code=2)


OPTIONS = {
    "no-command": (["frobnicate"], "No such command 'frobnicate'"),
    "unknown-option": (["fetch", "--frobnicate"], "wtours fetch: No such option: --frobnicate"),
    "retries-0": (["fetch", "--retries", "0"], "Invalid value for '--retries'"),
    "max-height": (["fetch", "--max-height", "10"], "Invalid value for '--max-height'"),
    "missing-cookies": (["fetch", "--cookies", "none.txt"], "Invalid value for '--cookies'"),
    "reserved-yt-dlp": (["fetch", "--yt-dlp", "-o x.mp4"], "--yt-dlp may not set outtmpl"),
    "unknown-yt-dlp": (["fetch", "--yt-dlp", "--frobnicate"], "no such option: --frobnicate"),
    "unbalanced-yt-dlp": (["fetch", "--yt-dlp", "'--limit-rate 1M"], "No closing quotation"),
    "unknown-id": (["fetch", "--only", "nowhere"], "not in the manifest: nowhere"),
    "unknown-group": (["fetch", "--group", "nowhere"], "no group 'nowhere'"),
    "figure-3": (["analyze", "x.mp4", "--figure", "3"], "only the paper's Figure 2"),
    "executor": (["analyze", "x.mp4", "--executor", "spark"], "--executor 'spark': use local or ray"),
    "confidence": (["analyze", "x.mp4", "--confidence", "2"], "Invalid value for '--confidence'"),
    "clip-length": (["curate", "-T", "0"], "Invalid value for '--frames-per-clip' / '-T'"),
    "jpeg-quality": (["curate", "--jpeg-qscale", "99"], "Invalid value for '--jpeg-qscale'"),
    "blur-threshold": (["anonymize", "--threshold", "5"], "Invalid value for '--threshold'"),
    "method": (["pretrain", "--method", "simclr"], "unknown method 'simclr'"),
    "preset": (["pretrain", "--preset", "nowhere"], "no preset or YAML file 'nowhere'"),
    "preset-method": (["pretrain", "--method", "dora", "--preset", "dino_tiny_cpu"], "is for method 'dino'"),
    "set-syntax": (["pretrain", "--set", "optim.lr"], "--set expects key=value"),
    "set-key": (["pretrain", "--set", "optim.learning_rate=1"], "optim.learning_rate: Extra inputs"),
    "set-value": (["pretrain", "--set", "optim.lr=-1"], "optim.lr: Input should be greater than 0"),
    "precision": (["pretrain", "--precision", "fp17"], "run.precision: Input should be"),
    "arch": (["pretrain", "--arch", "vit_huge"], "backbone.arch: Input should be"),
    "cpu-fp16": (["pretrain", "--preset", "dino_tiny_cpu", "--device", "cpu", "--precision", "fp16", "--video",
                  "{video}"], "run.precision=fp16 needs a GPU"),  # fmt: skip
    "knn-encoder": (["eval", "knn", "nowhere"], "wtours eval knn: Invalid value for 'encoder'"),
    "compare-run": (["compare", "nowhere"], "nowhere"),
}


@pytest.mark.parametrize("name", OPTIONS)
def test_a_bad_option_is_one_line_and_writes_nothing(cli, make_video, tmp_path: Path, monkeypatch, name: str) -> None:
    args, expected = OPTIONS[name]
    video = make_video("v.mp4", frames=30) if "{video}" in args else None
    manifest = write_manifest(tmp_path / "m.yaml", [{"id": "walk", "sources": ["walk.mp4"]}])
    monkeypatch.chdir(tmp_path)  # default outputs (runs/, compare/, data/) would land here
    before = sorted(path.name for path in tmp_path.iterdir())
    args = [str(video) if arg == "{video}" else arg for arg in args]
    if args[0] in ("fetch", "curate", "anonymize"):
        args += ["-m", str(manifest)]
    assert_one_line_error(cli(*args), expected, code=2)
    assert sorted(path.name for path in tmp_path.iterdir()) == before, "nothing written"
