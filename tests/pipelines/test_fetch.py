"""`wtours fetch` / `wtours status` end to end: the real yt-dlp against a loopback server, real PyAV
verification, the real CLI entry point (one-line errors, exit codes). No network beyond 127.0.0.1."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from wtours.errors import WtoursError
from wtours.manifest import PACKAGED_MANIFEST
from wtours.pipelines.fetch import FetchOptions, ffmpeg_dir, format_preferences, ytdlp_options
from wtours.sample.server import LoopbackServer, write_video_page
from wtours.store import Store

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def cli(capsys, monkeypatch):
    """Run the console entry point in-process: ``cli("fetch", ...) -> (exit code, stdout, stderr)``."""
    from wtours.cli import main

    def run(*args: str) -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "argv", ["wtours", *map(str, args)])
        try:
            main()
            code = 0
        except SystemExit as done:
            code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.fixture
def www(tmp_path: Path) -> Path:
    folder = tmp_path / "www"
    folder.mkdir()
    return folder


def write_manifest(path: Path, videos: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({"version": 1, "videos": videos}, sort_keys=False), encoding="utf-8")
    return path


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def published(data: Path) -> set[str]:
    """Files in videos/ other than the staging and state folders."""
    videos = data / "videos"
    return {p.name for p in videos.iterdir() if p.name not in (".partial", ".state")} if videos.is_dir() else set()


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def test_direct_link_and_video_page_are_fetched_verified_and_skipped_on_rerun(cli, make_video, www, tmp_path):
    clip = make_video("clip.mp4", frames=30, width=64, height=48)
    walk = make_video("walk.mp4", frames=45, width=96, height=64)
    (www / "clip.mp4").write_bytes(clip.read_bytes())
    (www / "walk.mp4").write_bytes(walk.read_bytes())
    write_video_page(www, "walk.mp4", page_name="walk.html")
    data = tmp_path / "data"
    with LoopbackServer(www) as server:
        manifest = write_manifest(
            tmp_path / "manifest.yaml",
            [
                {"id": "direct", "duration": 1.0, "sources": [server.url("clip.mp4")]},
                {"id": "page", "sources": [{"url": server.url("walk.html")}]},
            ],
        )
        code, _, err = cli("fetch", "-m", manifest, "-d", data)
        assert code == 0, err
        assert published(data) == {"direct.mp4", "direct.json", "page.mp4", "page.json"}
        for video_id, source, frames, size in (("direct", clip, 30, (64, 48)), ("page", walk, 45, (96, 64))):
            video = data / "videos" / f"{video_id}.mp4"
            sidecar = json.loads((data / "videos" / f"{video_id}.json").read_text())
            assert video.read_bytes() == source.read_bytes()
            assert sidecar["sha256"] == sha256_of(video)
            assert sidecar["size"] == video.stat().st_size
            assert sidecar["frame_count"] == frames
            assert (sidecar["width"], sidecar["height"]) == size
            assert sidecar["fps"] == 30.0 and sidecar["codec"] == "h264" and sidecar["pix_fmt"] == "yuv420p"
            assert sidecar["duration"] == pytest.approx(frames / 30, abs=0.04)
            assert sidecar["source"]["kind"] == "url"
            assert sidecar["ytdlp"]["extractor"] in ("generic", "html5")
            assert sidecar["fetched_at"] and sidecar["wtours_version"]
        assert json.loads((data / "videos" / "page.json").read_text())["source"]["location"].endswith("walk.html")
        assert not (data / "videos" / ".state").exists() or not any((data / "videos" / ".state").iterdir())

        server.reset_counts()
        code, _, err = cli("fetch", "-m", manifest, "-d", data)
        assert code == 0, err
        assert server.requests == [], "a verified video must be skipped without a single request"
        assert "skipped" in err

    code, out, _ = cli("status", "-m", manifest, "-d", data)
    assert code == 0
    assert out.count("verified") >= 2 and "2 verified" in out


def test_killed_download_resumes_from_its_part_file(cli, make_video, www, tmp_path, monkeypatch):
    noise = make_video("noise.mp4", noise=True, width=320, height=240, frames=60)  # incompressible: ~8 MB
    total = noise.stat().st_size
    (www / "walk.mp4").write_bytes(noise.read_bytes())
    monkeypatch.chdir(tmp_path)  # the default data dir is relative: test that case
    data = Path("data")
    with LoopbackServer(www, throttle_bytes_per_s=total / 6) as server:
        manifest = write_manifest(tmp_path / "manifest.yaml", [{"id": "walk", "sources": [server.url("walk.mp4")]}])
        process = subprocess.Popen(
            [sys.executable, "-m", "wtours", "fetch", "-m", str(manifest), "-d", str(data)],
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        staging = data / "videos" / ".partial" / "walk"
        deadline = time.monotonic() + 60
        part_size = 0
        while time.monotonic() < deadline and process.poll() is None:
            parts = list(staging.glob("*/walk.mp4.part")) if staging.is_dir() else []
            part_size = parts[0].stat().st_size if parts else 0
            if part_size > total * 0.4:
                break
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
        process.wait()
        assert total * 0.4 < part_size < total, "the download should have been killed midway"
        assert not (data / "videos" / "walk.mp4").exists()
        code, out, _ = cli("status", "-m", manifest, "-d", data)
        assert code == 0 and "partial" in out and "1 partial" in out

        server.throttle_bytes_per_s = None
        server.reset_counts()
        code, _, err = cli("fetch", "-m", manifest, "-d", data)
        assert code == 0, err
        second_run_bytes = server.bytes_sent("walk.mp4")
        downloaded_mb = float(re.search(r"1 fetched, 0 skipped, 0 failed; ([\d.]+) MB downloaded by this run", err)[1])
        resumed = [r for r in server.requests if r.range and r.range.startswith("bytes=") and r.status == 206]

    assert sha256_of(data / "videos" / "walk.mp4") == sha256_of(noise)
    assert json.loads((data / "videos" / "walk.json").read_text())["sha256"] == sha256_of(noise)
    assert resumed and int(resumed[0].range.removeprefix("bytes=").split("-")[0]) >= part_size * 0.9
    assert second_run_bytes < total - part_size * 0.8, (second_run_bytes, total, part_size)
    assert downloaded_mb == pytest.approx((total - part_size) / 1e6, abs=0.1)
    print(
        f"\nresume: file {total} B, {part_size} B on disk when killed, second run sent {second_run_bytes} B "
        f"({second_run_bytes / total:.0%} of the file; a fresh download would send 100%)"
    )


def test_404_and_500_sources_fall_over_to_the_next_source(cli, make_video, www, tmp_path):
    (www / "clip.mp4").write_bytes(make_video("clip.mp4").read_bytes())
    (www / "broken.mp4").write_bytes(b"never served")
    data = tmp_path / "data"
    with LoopbackServer(www, fail={"/broken.mp4": 500}) as server:
        manifest = write_manifest(
            tmp_path / "manifest.yaml",
            [{"id": "walk", "sources": [server.url("gone.mp4"), server.url("broken.mp4"), server.url("clip.mp4")]}],
        )
        code, _, err = cli("fetch", "-m", manifest, "-d", data, "--retries", "2", "--retry-wait", "0.05")
        requests = server.requests
    assert code == 0, err
    assert json.loads((data / "videos" / "walk.json").read_text())["source"]["location"].endswith("/clip.mp4")
    assert [r.status for r in requests if r.path == "/gone.mp4"] == [404], "a 404 is not worth a retry"
    assert [r.status for r in requests if r.path == "/broken.mp4"] == [500, 500], "a 500 is retried"
    state = data / "videos" / ".state" / "walk.json"
    assert not state.exists(), "a success clears the failure record"


class CutOffServer:
    """Serves one file over HTTP (with Range requests), every response cut off after ``cut`` bytes of its
    body: a connection that keeps dropping. Records each request's start offset."""

    def __init__(self, payload: bytes, cut: int) -> None:
        import http.server
        import threading

        self.payload, self.cut, self.starts = payload, cut, []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the http.server name
                match = re.match(r"bytes=(\d+)-", self.headers.get("Range") or "")
                start = int(match[1]) if match else 0
                server.starts.append(start)
                self.send_response(206 if match else 200)
                self.send_header("Content-Type", "video/mp4")
                self.send_header("Accept-Ranges", "bytes")
                self.send_header("Content-Length", str(len(server.payload) - start))
                if match:
                    self.send_header("Content-Range", f"bytes {start}-{len(server.payload) - 1}/{len(server.payload)}")
                self.end_headers()
                self.wfile.write(server.payload[start : start + server.cut])
                self.close_connection = True

            def log_message(self, *args) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> CutOffServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{name}"


def test_a_download_cut_off_again_and_again_finishes_while_each_try_gets_further(cli, make_video, tmp_path):
    """One retry policy: yt-dlp makes no retries of its own (they would multiply with wtours'), and a try that
    got further does not count against --retries. Here every response stops after a third of the file."""
    video = make_video("clip.mp4", frames=60, width=160, height=96, noise=True)
    payload = video.read_bytes()
    data = tmp_path / "data"
    with CutOffServer(payload, cut=len(payload) // 3 + 1) as server:
        manifest = write_manifest(tmp_path / "m.yaml", [{"id": "walk", "sources": [server.url("clip.mp4")]}])
        code, _, err = cli("fetch", "-m", manifest, "-d", data, "--retries", "1", "--retry-wait", "0.01")
    assert code == 0, err
    assert (data / "videos" / "walk.mp4").read_bytes() == payload
    resumed_at = [start for start in server.starts if start > 0]  # each try resumes the .part file further on
    assert len(resumed_at) >= 2 and resumed_at == sorted(set(resumed_at)), server.starts
    assert err.count("retrying in 0.01 s") >= 2, err


def test_the_retry_back_off_doubles_up_to_a_minute(cli, tmp_path, monkeypatch):
    from wtours.pipelines import fetch

    assert [FetchOptions(retry_wait=10).wait_before_retry(n) for n in range(1, 6)] == [10, 20, 40, 60, 60]
    params = ytdlp_options(FetchOptions(retries=5))
    assert (params["retries"], params["fragment_retries"], params["extractor_retries"]) == (0, 0, 0)
    assert params["skip_unavailable_fragments"] is False  # a failed fragment fails the try, never leaves a hole
    waits: list[float] = []
    monkeypatch.setattr(fetch.time, "sleep", waits.append)
    manifest = write_manifest(tmp_path / "m.yaml", [{"id": "walk", "sources": ["http://127.0.0.1:9/walk.mp4"]}])
    code, _, err = cli("fetch", "-m", manifest, "-d", tmp_path / "data", "--retries", "4", "--retry-wait", "20")
    assert code == 1 and waits == [20, 40, 60], err  # 4 tries (nothing listens on port 9), 3 waits


def test_figshare_source_is_resolved_through_the_api(cli, make_video, www, tmp_path, monkeypatch):
    clip = make_video("clip.mp4", frames=30)
    (www / "files").mkdir()
    (www / "files" / "43718490").write_bytes(clip.read_bytes())
    (www / "files" / "43718490.mp4").write_bytes(clip.read_bytes())
    data = tmp_path / "data"
    with LoopbackServer(www) as server:
        article = {
            "id": 25189275,
            "files": [
                {"name": "Zurich.mp4", "download_url": server.url("files/none.mp4"), "size": 1},
                {
                    "name": "Chiang_Mai.MP4",
                    "download_url": server.url("files/43718490.mp4"),
                    "size": clip.stat().st_size,
                    "computed_md5": hashlib.md5(clip.read_bytes()).hexdigest(),
                },
            ],
        }
        (www / "api" / "articles").mkdir(parents=True)
        (www / "api" / "articles" / "25189275").write_text(json.dumps(article))
        monkeypatch.setenv("WTOURS_FIGSHARE_API", server.url("api"))
        manifest = write_manifest(
            tmp_path / "manifest.yaml",
            [
                {"id": "chiang_mai", "sources": [{"figshare": 25189275, "file": "chiangmai.mp4"}]},
                {"id": "oslo", "sources": [{"figshare": 25189275, "file": "oslo.mp4"}]},
            ],
        )
        code, _, err = cli("fetch", "-m", manifest, "-d", data)
    assert code == 1
    sidecar = json.loads((data / "videos" / "chiang_mai.json").read_text())
    assert sidecar["source"]["kind"] == "figshare" and sidecar["source"]["url"].endswith("/files/43718490.mp4")
    assert sidecar["sha256"] == sha256_of(clip)
    [oslo_error] = [line for line in error_lines(err) if "oslo" in line]
    assert "no file 'oslo.mp4'" in oslo_error and "Chiang_Mai.MP4" in oslo_error and "Zurich.mp4" in oslo_error


def test_local_path_sources_relative_to_the_manifest_and_remuxed_to_mp4(cli, make_video, tmp_path):
    import av

    folder = tmp_path / "project"
    (folder / "clips").mkdir(parents=True)
    mp4 = make_video("a.mp4", frames=30)
    (folder / "clips" / "a.mp4").write_bytes(mp4.read_bytes())
    (folder / "clips" / "b.mkv").write_bytes(make_video("b.mkv", frames=24).read_bytes())
    manifest = write_manifest(
        folder / "manifest.yaml",
        [{"id": "a", "sources": ["clips/a.mp4"]}, {"id": "b", "sources": [{"path": "clips/b.mkv"}]}],
    )
    data = tmp_path / "data"
    code, _, err = cli("fetch", "-m", manifest, "-d", data)
    assert code == 0, err
    assert (data / "videos" / "a.mp4").read_bytes() == mp4.read_bytes()
    assert (folder / "clips" / "a.mp4").is_file(), "the user's file stays where it was"
    with av.open(str(data / "videos" / "b.mp4")) as container:
        assert "mp4" in container.format.name.split(",")
    assert json.loads((data / "videos" / "b.json").read_text())["frame_count"] == 24


def test_a_local_file_is_copied_unless_the_manifest_asks_for_a_link(cli, make_video, tmp_path):
    original = make_video("a.mp4", frames=10)
    manifest = write_manifest(
        tmp_path / "manifest.yaml",
        [{"id": "copied", "sources": [str(original)]}, {"id": "linked", "sources": [{"path": str(original),
                                                                                    "link": True}]}],
    )  # fmt: skip
    data = tmp_path / "data"
    code, _, err = cli("fetch", "-m", manifest, "-d", data)
    assert code == 0, err
    copied, linked = data / "videos" / "copied.mp4", data / "videos" / "linked.mp4"
    assert copied.read_bytes() == original.read_bytes() and not os.path.samefile(copied, original)
    assert os.path.samefile(linked, original), "link: true shares the user's file, as asked"
    assert json.loads((data / "videos" / "linked.json").read_text())["source"]["link"] is True
    with open(original, "r+b") as stream:  # the user edits the original in place
        stream.seek(64)
        stream.write(b"\0" * 16)
    assert copied.read_bytes() != original.read_bytes(), "the fetched copy must not change with the original"
    assert not list((data / "videos").glob(".*.tmp")) and not any((data / "videos" / ".partial").rglob("*"))


def test_a_webm_link_is_remuxed_to_mp4_without_reencoding(cli, make_video, www, tmp_path):
    import av

    webm = www / "walk.webm"
    with av.open(str(webm), mode="w") as container:
        stream = container.add_stream("libvpx-vp9", rate=30)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for index in range(20):
            rgb = np.full((48, 64, 3), index * 10, np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        container.mux(stream.encode(None))
    data = tmp_path / "data"
    with LoopbackServer(www) as server:
        manifest = write_manifest(tmp_path / "manifest.yaml", [{"id": "walk", "sources": [server.url("walk.webm")]}])
        code, _, err = cli("fetch", "-m", manifest, "-d", data)
    assert code == 0, err
    with av.open(str(data / "videos" / "walk.mp4")) as container:
        assert "mp4" in container.format.name.split(",")
    sidecar = json.loads((data / "videos" / "walk.json").read_text())
    assert (sidecar["codec"], sidecar["frame_count"]) == ("vp9", 20)


def test_a_video_without_sidecar_is_reverified_locally_and_a_bad_one_replaced(cli, make_video, www, tmp_path):
    clip = make_video("clip.mp4", frames=30)
    (www / "clip.mp4").write_bytes(clip.read_bytes())
    data = tmp_path / "data"
    videos = data / "videos"
    with LoopbackServer(www) as server:
        manifest = write_manifest(
            tmp_path / "manifest.yaml",
            [{"id": video_id, "sources": [server.url("clip.mp4")]} for video_id in ("kept", "broken")],
        )
        videos.mkdir(parents=True)
        (videos / "kept.mp4").write_bytes(clip.read_bytes())  # e.g. copied in by hand
        (videos / "broken.mp4").write_bytes(b"half a file")
        (videos / "broken.json").write_text(json.dumps({"size": 1}))  # a stale sidecar
        code, out, _ = cli("status", "-m", manifest, "-d", data)
        assert code == 0 and "2 unverified" in out
        code, _, err = cli("fetch", "-m", manifest, "-d", data)
        requested = {r.path for r in server.requests}
    assert code == 0, err
    assert json.loads((videos / "kept.json").read_text())["source"]["kind"] == "existing"
    assert json.loads((videos / "broken.json").read_text())["source"]["kind"] == "url"
    assert (videos / "broken.mp4").read_bytes() == clip.read_bytes()
    assert requested == {"/clip.mp4"} and sum(r.method == "GET" for r in server.requests) == 2, (
        "only the broken video is downloaded again"
    )


def test_a_video_another_run_is_fetching_is_left_alone(cli, make_video, www, tmp_path):
    fcntl = pytest.importorskip("fcntl", reason="advisory locks are POSIX-only")
    (www / "clip.mp4").write_bytes(make_video("clip.mp4").read_bytes())
    data = tmp_path / "data"
    lock = Store.at(data).state_path("walk").with_suffix(".lock")
    lock.parent.mkdir(parents=True)
    with LoopbackServer(www) as server, open(lock, "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # as a concurrent `wtours fetch` would
        manifest = write_manifest(tmp_path / "manifest.yaml", [{"id": "walk", "sources": [server.url("clip.mp4")]}])
        code, _, err = cli("fetch", "-m", manifest, "-d", data)
        assert code == 1 and "walk: another wtours process is on this video now" in err
        assert server.requests == []


@pytest.mark.parametrize(
    ("manifest_text", "expected"),
    [
        ("videos: [\n  - id: a\n    sources: [x.mp4\n", "malformed YAML"),
        ("videos:\n  - {id: a, sources: [a.mp4]}\n  - {id: a, sources: [b.mp4]}\n", "duplicate id 'a'"),
        ("videos:\n  - {id: ../x, sources: [a.mp4]}\n", "unsafe id '../x'"),
        ("videos:\n  - {id: a/b, sources: [a.mp4]}\n", "unsafe id 'a/b'"),
        ("videos:\n  - {id: a, sources: ['ftp://example.org/a.mp4']}\n", "unknown source kind 'ftp'"),
    ],
    ids=["malformed-yaml", "duplicate-ids", "dotdot-id", "slash-id", "ftp-source"],
)
def test_bad_manifests_give_one_line_errors_and_exit_2(cli, tmp_path, manifest_text, expected):
    manifest = tmp_path / "manifest.yaml"
    manifest.write_text(manifest_text)
    code, out, err = cli("fetch", "-m", manifest, "-d", tmp_path / "data")
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("error:") and expected in err, err
    assert not (tmp_path / "data").exists()


def test_bad_videos_are_rejected_and_the_good_one_still_fetched(cli, make_video, www, tmp_path):
    clip = make_video("clip.mp4", frames=30)  # 1 s
    faststart = make_video("faststart.mp4", frames=30, faststart=True).read_bytes()
    moov_last = clip.read_bytes()
    local = tmp_path / "local"
    local.mkdir()
    (local / "zero.mp4").write_bytes(b"")
    (local / "text.mp4").write_text("this is not a video\n")
    (local / "cut_mdat.mp4").write_bytes(faststart[: len(faststart) // 2])
    (local / "short.mp4").write_bytes(moov_last)
    (www / "clip.mp4").write_bytes(moov_last)
    (www / "cut_moov.mp4").write_bytes(moov_last[: len(moov_last) // 2])
    data = tmp_path / "data"
    with LoopbackServer(www) as server:
        manifest = write_manifest(
            tmp_path / "manifest.yaml",
            [
                {"id": "good", "sources": [server.url("clip.mp4")]},
                {"id": "zero", "sources": [str(local / "zero.mp4")]},
                {"id": "text", "sources": [str(local / "text.mp4")]},
                {"id": "cut_moov", "sources": [server.url("cut_moov.mp4")]},
                {"id": "cut_mdat", "sources": [str(local / "cut_mdat.mp4")]},
                {"id": "short", "duration": "0:10", "sources": [str(local / "short.mp4")]},
                {"id": "gone", "sources": [server.url("gone.mp4")]},
                {"id": "later", "sources": [server.url("clip.mp4")]},
                {"id": "staged", "sources": [server.url("clip.mp4")]},
            ],
        )
        code, _, err = cli("fetch", "-m", manifest, "-d", data, "--only", "good,zero,text,cut_moov,cut_mdat,short,gone")
    assert code == 1
    assert published(data) == {"good.mp4", "good.json"}, "a rejected file never lands in videos/"
    errors = {line.split(":")[1].strip(): line for line in error_lines(err)}
    assert set(errors) == {"zero", "text", "cut_moov", "cut_mdat", "short", "gone"}
    assert "empty file (0 bytes)" in errors["zero"]
    assert "not a readable video" in errors["text"]
    assert "not a readable video" in errors["cut_moov"]
    assert "truncated: the container lists 30 frames but only" in errors["cut_mdat"]
    assert "too short: 1.0 s but the manifest expects 10.0 s" in errors["short"]
    assert "[generic]" in errors["gone"] and "HTTP Error 404" in errors["gone"], "yt-dlp's text, not rich markup"
    for bad in ("zero", "text", "cut_moov", "cut_mdat", "short"):
        state = json.loads((data / "videos" / ".state" / f"{bad}.json").read_text())
        assert state["status"] == "failed" and state["error"] and state["attempts"]
        assert not (data / "videos" / ".partial" / bad).exists() or not any(
            (data / "videos" / ".partial" / bad).rglob("*.mp4")
        ), "rejected bytes are not kept for resuming"

    staged = Store.at(data).partial_dir("staged") / "url-0123456789"
    staged.mkdir(parents=True)
    (staged / "download.mp4.part").write_bytes(b"\0" * 1234)
    code, out, _ = cli("status", "-m", manifest, "-d", data)
    assert code == 0
    rows = {line.split()[1]: line for line in out.splitlines() if line.startswith("│")}
    assert "verified" in rows["good"] and "failed" in rows["zero"] and "missing" in rows["later"]
    assert "partial" in rows["staged"] and "1.2 KB" in rows["staged"]
    assert "1 verified, 6 failed, 1 missing, 1 partial" in out


def test_dry_run_lists_the_ten_walking_tours_videos(cli, tmp_path):
    code, out, err = cli("fetch", "--dry-run", "-m", PACKAGED_MANIFEST, "-d", tmp_path / "data")
    assert code == 0, err
    ids = ["amsterdam", "bangkok", "chiang_mai", "istanbul", "kuala_lumpur", "singapore", "stockholm", "venice",
           "wildlife", "zurich"]  # fmt: skip
    assert all(video_id in out for video_id in ids)
    assert out.count("youtube:") == 11 and out.count("figshare:") == 10
    assert not (tmp_path / "data").exists(), "a dry run writes nothing"


def test_format_preferences_pick_the_best_height_then_fps_then_h264(tmp_path):
    import yt_dlp

    def video(format_id, height, vcodec, fps, ext="mp4"):
        return {"format_id": format_id, "url": f"http://127.0.0.1/{format_id}", "ext": ext, "height": height,
                "width": height * 16 // 9, "vcodec": vcodec, "acodec": "none", "fps": fps}  # fmt: skip

    def audio(format_id, acodec, ext):
        return {"format_id": format_id, "url": f"http://127.0.0.1/{format_id}", "ext": ext, "vcodec": "none",
                "acodec": acodec, "abr": 128}  # fmt: skip

    formats = [
        video("2160-vp9", 2160, "vp9", 60, "webm"),
        video("2160-av1", 2160, "av01.0.12M.08", 60),
        video("1440-vp9", 1440, "vp9", 60, "webm"),
        video("1080-vp9", 1080, "vp9", 60, "webm"),
        video("1080-av1", 1080, "av01.0.09M.08", 60),
        video("1080-h264-60", 1080, "avc1.64002a", 60),
        video("1080-h264-30", 1080, "avc1.640028", 30),
        video("720-h264", 720, "avc1.4d4020", 60),
        audio("opus", "opus", "webm"),
        audio("aac", "mp4a.40.2", "m4a"),
    ]

    def chosen(max_height: int) -> str:
        params = {**format_preferences(max_height), "quiet": True, "simulate": True,
                  "ffmpeg_location": str(ffmpeg_dir(Store.at(tmp_path)))}  # fmt: skip
        with yt_dlp.YoutubeDL(params) as ydl:
            info = ydl.process_ie_result(
                {"id": "x", "title": "x", "formats": [dict(f) for f in formats], "extractor": "test",
                 "extractor_key": "Test", "webpage_url": "http://127.0.0.1/x"}, download=False)  # fmt: skip
        return info["format_id"]

    assert chosen(2160) == "2160-vp9+aac"  # no H.264 at 4K (as on YouTube); VP9 decodes faster than AV1
    assert chosen(1440) == "1440-vp9+aac"
    assert chosen(1080) == "1080-h264-60+aac"  # same height and fps: H.264 wins
    assert chosen(480) == "720-h264+aac"  # nothing at or below: the smallest above


def test_ytdlp_options_are_parsed_by_ytdlp_and_merged(tmp_path):
    cookies = tmp_path / "cookies.txt"
    cookies.write_text("# Netscape HTTP Cookie File\n")
    params = ytdlp_options(
        FetchOptions(
            max_height=1080,
            cookies=cookies,
            extractor_args=["youtube:player_client=web_safari"],
            proxy="socks5://127.0.0.1:1080",
            ytdlp_args="--limit-rate 20M --concurrent-fragments 4",
        )
    )
    assert params["extractor_args"] == {"youtube": {"player_client": ["web_safari"]}}
    assert params["cookiefile"] == str(cookies) and params["proxy"] == "socks5://127.0.0.1:1080"
    assert params["ratelimit"] == 20 * 1024**2 and params["concurrent_fragment_downloads"] == 4
    assert params["format_sort"][0] == "res:1080"
    with pytest.raises(WtoursError, match="may not set outtmpl"):
        ytdlp_options(FetchOptions(ytdlp_args="-o '%(title)s.%(ext)s'"))
    with pytest.raises(WtoursError, match="no such option") as raised:
        ytdlp_options(FetchOptions(ytdlp_args="--no-such-option"))
    assert "\n" not in str(raised.value)
