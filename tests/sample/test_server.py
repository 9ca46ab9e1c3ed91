"""The loopback server behaves like a video host: ranges, types, injected errors, throttling, counters."""

from __future__ import annotations

import time
import urllib.error
import urllib.request

import pytest

from wtours.sample.server import LoopbackServer, write_video_page


def fetch(url: str, *, method: str = "GET", headers: dict | None = None):
    request = urllib.request.Request(url, method=method, headers=headers or {})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status, dict(response.headers), response.read()


def test_ranges_types_errors_and_counters(tmp_path):
    body = bytes(range(256)) * 40  # 10240 bytes
    (tmp_path / "clip.mp4").write_bytes(body)
    (tmp_path / "secret.txt").write_text("outside")
    served = tmp_path / "www"
    served.mkdir()
    (served / "clip.mp4").write_bytes(body)
    write_video_page(served, "clip.mp4", page_name="walk.html", title="A <walk>")
    with LoopbackServer(served, fail={"/broken.mp4": 500}) as server:
        status, headers, data = fetch(server.url("clip.mp4"))
        assert (status, headers["Content-Type"], headers["Content-Length"], data) == (200, "video/mp4", "10240", body)

        status, headers, data = fetch(server.url("clip.mp4"), headers={"Range": "bytes=10000-"})
        assert status == 206 and headers["Content-Range"] == "bytes 10000-10239/10240" and data == body[10000:]

        status, headers, data = fetch(server.url("clip.mp4"), method="HEAD")
        assert status == 200 and headers["Content-Length"] == "10240" and data == b""

        status, headers, page = fetch(server.url("walk.html"))
        assert headers["Content-Type"].startswith("text/html") and b"<video" in page and b"A &lt;walk&gt;" in page

        for name, code in (("broken.mp4", 500), ("missing.mp4", 404), ("../secret.txt", 404)):
            with pytest.raises(urllib.error.HTTPError) as raised:
                fetch(server.url(name))
            assert raised.value.code == code
        with pytest.raises(urllib.error.HTTPError) as raised:
            fetch(server.url("clip.mp4"), headers={"Range": "bytes=20000-"})
        assert raised.value.code == 416

        assert server.bytes_sent("/clip.mp4") == 10240 + 240
        assert server.bytes_sent("walk.html") == len(page)
        assert [r.status for r in server.requests if r.path == "/clip.mp4"] == [200, 206, 200, 416]
        server.reset_counts()
        assert server.bytes_sent() == 0 and server.requests == []


def test_throttling_can_be_changed_while_running(tmp_path):
    (tmp_path / "big.mp4").write_bytes(b"\0" * 200_000)
    with LoopbackServer(tmp_path, throttle_bytes_per_s=400_000) as server:
        began = time.monotonic()
        fetch(server.url("big.mp4"))
        assert time.monotonic() - began >= 0.4  # 200 kB at 400 kB/s
        server.throttle_bytes_per_s = None
        began = time.monotonic()
        fetch(server.url("big.mp4"))
        assert time.monotonic() - began < 0.4
