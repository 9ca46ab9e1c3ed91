"""A loopback HTTP server that stands in for video hosts, so that fetching is tested (and demonstrated)
with the real yt-dlp and no network.

    with LoopbackServer(folder, throttle_bytes_per_s=2_000_000, fail={"/gone.mp4": 404}) as server:
        url = server.url("clip.mp4")        # http://127.0.0.1:<port>/clip.mp4
        ...                                  # run `wtours fetch` against it
        server.bytes_sent("/clip.mp4")       # body bytes written for that path so far

It serves the files of one folder (no listings) on 127.0.0.1 with an ephemeral port, from a daemon
thread: GET and HEAD, single byte ranges (206 + Content-Range, which is how yt-dlp resumes a ``.part``
file), Content-Length, the right types for .mp4/.html/.json, optional throttling (changeable while
running), injected error statuses by path, and counts of requests and body bytes per path.
"""

from __future__ import annotations

import html
import mimetypes
import re
import socket
import threading
import time
import urllib.parse
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

_CONTENT_TYPES = {
    ".mp4": "video/mp4",
    ".m4v": "video/mp4",
    ".mkv": "video/x-matroska",
    ".webm": "video/webm",
    ".mov": "video/quicktime",
    ".html": "text/html; charset=utf-8",
    ".json": "application/json",
    ".txt": "text/plain; charset=utf-8",
}
_CHUNK_BYTES = 64 * 1024
_SEND_BUFFER_BYTES = 128 * 1024
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


@dataclass(frozen=True)
class Request:
    """One request as the server saw it."""

    method: str
    path: str
    range: str | None
    status: int


class LoopbackServer:
    """Serve ``directory`` on 127.0.0.1 while the ``with`` block runs.

    ``throttle_bytes_per_s`` caps the body rate of every response (None: as fast as possible) and may be
    changed while the server runs. ``fail`` maps URL paths (``"/name.mp4"``) to an HTTP status returned
    instead of the file, e.g. ``{"/broken.mp4": 500}``. ``port=0`` picks a free port.
    """

    def __init__(
        self,
        directory: str | Path,
        *,
        throttle_bytes_per_s: float | None = None,
        fail: dict[str, int] | None = None,
        port: int = 0,
    ) -> None:
        self.directory = Path(directory).resolve()
        self.throttle_bytes_per_s = throttle_bytes_per_s
        self.fail = {_normalise(path): status for path, status in (fail or {}).items()}
        self._requested_port = port
        self._lock = threading.Lock()
        self._bytes_sent: dict[str, int] = {}
        self._requests: list[Request] = []
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> LoopbackServer:
        handler = type("Handler", (_Handler,), {"loopback": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", self._requested_port), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="loopback-http", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> LoopbackServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- addresses and counters ------------------------------------------------------------------
    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("the server is not running")
        return self._httpd.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, name: str) -> str:
        """The URL of a file (relative to the served folder)."""
        return f"{self.base_url}/{urllib.parse.quote(name.lstrip('/'))}"

    def bytes_sent(self, path: str | None = None) -> int:
        """Body bytes written for one URL path (``"/clip.mp4"`` or ``"clip.mp4"``), or for all paths."""
        with self._lock:
            if path is None:
                return sum(self._bytes_sent.values())
            return self._bytes_sent.get(_normalise(path), 0)

    @property
    def requests(self) -> list[Request]:
        with self._lock:
            return list(self._requests)

    def reset_counts(self) -> None:
        with self._lock:
            self._bytes_sent.clear()
            self._requests.clear()

    def _record(self, request: Request) -> None:
        with self._lock:
            self._requests.append(request)

    def _count(self, path: str, sent: int) -> None:
        with self._lock:
            self._bytes_sent[path] = self._bytes_sent.get(path, 0) + sent


def _normalise(path: str) -> str:
    return "/" + urllib.parse.unquote(path.split("?", 1)[0]).lstrip("/")


class _Handler(BaseHTTPRequestHandler):
    loopback: LoopbackServer
    protocol_version = "HTTP/1.0"

    def setup(self) -> None:
        # A small send buffer keeps "bytes sent" close to "bytes the client took": otherwise loopback's
        # auto-tuned buffers swallow megabytes of a response the client only peeked at and closed.
        self.request.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _SEND_BUFFER_BYTES)
        super().setup()

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - signature of the base class
        """Quiet: tests and the demo read the counters instead of a log."""

    def do_HEAD(self) -> None:  # noqa: N802 - name required by http.server
        self._serve(send_body=False)

    def do_GET(self) -> None:  # noqa: N802 - name required by http.server
        self._serve(send_body=True)

    def _serve(self, *, send_body: bool) -> None:
        server = self.loopback
        path = _normalise(self.path)
        range_header = self.headers.get("Range")
        status = server.fail.get(path)
        file = self._file_for(path)
        if status is None and file is None:
            status = 404
        if status is not None:
            server._record(Request(self.command, path, range_header, status))
            self.send_error(status)
            return
        size = file.stat().st_size
        start, end = 0, size - 1
        status = 200
        if range_header and (match := _RANGE.match(range_header.strip())):
            first, last = match.groups()
            if first:
                start, end = int(first), min(int(last), size - 1) if last else size - 1
            elif last:  # "bytes=-N": the last N bytes
                start = max(size - int(last), 0)
            if start >= size or start > end:
                server._record(Request(self.command, path, range_header, 416))
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status = 206
        server._record(Request(self.command, path, range_header, status))
        self.send_response(status)
        self.send_header("Content-Type", _CONTENT_TYPES.get(file.suffix.lower()) or _guess_type(file))
        self.send_header("Content-Length", str(end - start + 1))
        self.send_header("Accept-Ranges", "bytes")
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.end_headers()
        if send_body:
            self._send_body(file, path, start, end - start + 1)

    def _file_for(self, path: str) -> Path | None:
        candidate = (self.loopback.directory / path.lstrip("/")).resolve()
        if not candidate.is_relative_to(self.loopback.directory) or not candidate.is_file():
            return None
        return candidate

    def _send_body(self, file: Path, path: str, start: int, length: int) -> None:
        began = time.monotonic()
        sent = 0
        with open(file, "rb") as stream:
            stream.seek(start)
            while sent < length:
                chunk = stream.read(min(_CHUNK_BYTES, length - sent))
                if not chunk:
                    break
                try:
                    self.wfile.write(chunk)
                except (BrokenPipeError, ConnectionResetError):
                    return  # the client hung up (yt-dlp probing a link, or a killed download)
                sent += len(chunk)
                self.loopback._count(path, len(chunk))
                rate = self.loopback.throttle_bytes_per_s
                if rate:
                    ahead = sent / rate - (time.monotonic() - began)
                    if ahead > 0:
                        time.sleep(ahead)


def _guess_type(file: Path) -> str:
    return mimetypes.guess_type(file.name)[0] or "application/octet-stream"


def write_video_page(
    directory: str | Path, video_name: str, *, page_name: str = "index.html", title: str = "A walk"
) -> Path:
    """Write an HTML page embedding ``video_name`` (a file beside it) in an HTML5 ``<video>`` tag."""
    page = Path(directory) / page_name
    src = html.escape(urllib.parse.quote(video_name))
    page.write_text(
        "<!doctype html>\n<html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title></head>\n<body>\n<h1>{html.escape(title)}</h1>\n"
        f"<video controls width='640'><source src='{src}' type='video/mp4'></video>\n</body></html>\n",
        encoding="utf-8",
    )
    return page
