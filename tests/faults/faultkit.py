"""Helpers of the fault suite: run the real CLI as a process (to kill it, or to put its data on a small disk),
and check that a failure is what a user should see: a non-zero exit, one line, no traceback."""

from __future__ import annotations

import functools
import os
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Outcome:
    code: int
    out: str
    err: str


def wtours_command(*args: object) -> list[str]:
    """The command line of ``wtours ARGS`` in a fresh interpreter (for processes to kill or sandbox)."""
    return [sys.executable, "-m", "wtours", *map(str, args)]


def wtours_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200"}


def assert_one_line_error(outcome: Outcome, *expected: str, code: int | None = None) -> str:
    """A failure as a user should see it: non-zero exit, exactly one line on stderr, no traceback."""
    assert outcome.code != 0, outcome
    if code is not None:
        assert outcome.code == code, outcome
    assert "Traceback" not in outcome.err, outcome.err
    lines = outcome.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), outcome.err
    for text in expected:
        assert text in lines[0], (text, lines[0])
    return lines[0]


def assert_error_lines(outcome: Outcome, count: int) -> list[str]:
    """For commands that report per video (a table, then one ``error:`` line per failed video)."""
    assert "Traceback" not in outcome.err, outcome.err
    errors = [line for line in outcome.err.splitlines() if line.startswith("error: ")]
    assert len(errors) == count, outcome.err
    return errors


def write_manifest(path: Path, videos: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({"version": 1, "videos": videos}, sort_keys=False), encoding="utf-8")
    return path


def files_under(folder: Path) -> dict[str, int]:
    """Relative path -> size of every file below ``folder``."""
    return {str(p.relative_to(folder)): p.stat().st_size for p in sorted(folder.rglob("*")) if p.is_file()}


# -- a data directory on a small or read-only disk ----------------------------------------------------------


@functools.cache
def mount_namespaces() -> bool:
    """True if this machine lets us mount a tmpfs in a private mount namespace (``unshare -rm``): as root,
    or as a user where unprivileged user namespaces are enabled."""
    if not shutil.which("unshare") or not sys.platform.startswith("linux"):
        return False
    done = subprocess.run(["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt 2>/dev/null || "
                           "mount -t tmpfs -o size=64k tmpfs /tmp"], capture_output=True)  # fmt: skip
    return done.returncode == 0


def on_small_disk(
    workdir: Path, data: Path | None, commands: dict[str, list[str]], *, size_kib: int, read_only: bool,
    fill: bool = False,
) -> tuple[dict[str, Outcome], dict[str, int]]:
    """Run each ``wtours`` command with ``workdir/disk`` on a tmpfs of ``size_kib`` KiB (a real kernel: EROFS,
    ENOSPC), ``data`` copied onto it first, its free space then taken by a ``ballast`` file if ``fill``, and the
    disk remounted read-only if asked. ``{disk}`` in a command stands for that folder. Returns each command's
    outcome and the files on the disk afterwards.

    Without mount namespaces, a read-only disk is a folder made read-only with chmod (EACCES), which stops
    everyone but root; a full disk cannot be made, and the test is skipped with the reason."""
    disk = workdir / "disk"
    disk.mkdir(parents=True)
    results = workdir / "results"
    results.mkdir()
    script = ["set -e"]
    namespaced = mount_namespaces()
    if namespaced:
        script.append(f"mount -t tmpfs -o size={size_kib}k tmpfs {shlex.quote(str(disk))}")
    elif not read_only or os.geteuid() == 0:
        pytest.skip("needs a tmpfs in a mount namespace (unshare -rm), or a non-root user for a chmod read-only "
                    "folder; the simulated ENOSPC tests cover this machine")  # fmt: skip
    if data is not None:
        script.append(f"cp -a {shlex.quote(str(data))} {shlex.quote(str(disk))}/")
    if fill:
        script.append(f"dd if=/dev/zero of={shlex.quote(str(disk))}/ballast bs=4096 2> /dev/null || true")
    if read_only:
        script.append(f"mount -o remount,ro {shlex.quote(str(disk))}" if namespaced else f"chmod -R a-w {disk}")
    script.append("set +e")
    for name, args in commands.items():  # side by side: they share the disk, not each other's files
        command = shlex.join(wtours_command(*(str(arg).format(disk=disk) for arg in args)))
        script.append(f"({command} > {results}/{name}.out 2> {results}/{name}.err; echo $? > {results}/{name}.rc) &")
    script.append("wait")
    script.append(f"cd {shlex.quote(str(disk))} && find . -type f -printf '%P %s\\n' > {results}/files")
    if not namespaced:
        script.append(f"chmod -R u+w {disk}")
    runner = ["unshare", "-rm", "bash", "-c"] if namespaced else ["bash", "-c"]
    subprocess.run([*runner, "\n".join(script)], cwd=workdir, env=wtours_env(), check=True, timeout=300)
    outcomes = {
        name: Outcome(int((results / f"{name}.rc").read_text()), (results / f"{name}.out").read_text(),
                      (results / f"{name}.err").read_text())
        for name in commands
    }  # fmt: skip
    files = {}
    for line in (results / "files").read_text().splitlines():
        path, _, size = line.rpartition(" ")
        files[path] = int(size)
    return outcomes, files
