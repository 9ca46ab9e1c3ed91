"""Fetch the manifest's videos into the store: resumable, verified, atomic, idempotent.

For every video the sources are tried in order (YouTube, a direct URL or a page with a <video> tag,
the authors' figshare mirror, a local file). A download goes through yt-dlp, used as a library, into the
staging folder ``videos/.partial/<id>/<source>/`` where its ``.part`` file survives an interruption: the
next run resumes it with an HTTP Range request. A staged file is verified (`wtours.video.verify_video`)
before it is moved into ``videos/<id>.mp4`` in one rename, next to its sidecar ``videos/<id>.json``.
A verified video (sidecar size == file size) is skipped on a re-run without touching the network.
A local file (``path:``) is copied (reflinked where the file system can), never shared with the user's
original, unless the manifest says ``link: true``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import hashlib
import json
import optparse
import os
import re
import shlex
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.markup import escape

from wtours import __version__
from wtours.errors import BusyError, WtoursError, os_error_message, prefixed
from wtours.manifest import FigshareSource, FileSource, Manifest, VideoEntry
from wtours.progress import console, make_progress
from wtours.store import (
    Store,
    atomic_path,
    atomic_write_json,
    check_writable,
    copy_file,
    file_digests,
    file_sha256,
    read_json,
)
from wtours.video import VideoProbe, format_clock, verify_video

FIGSHARE_API_ENV = "WTOURS_FIGSHARE_API"
FIGSHARE_API = "https://api.figshare.com/v2"
MAX_RETRY_WAIT = 60.0  # seconds: a host that is down for longer gets the next source instead
# yt-dlp keys that would move files out of the staging folder or stop the download.
_RESERVED_YTDLP_KEYS = ("outtmpl", "paths", "simulate", "skip_download", "progress_hooks", "logger")
# The part of yt-dlp's info dict worth keeping in the sidecar: where the video came from and under
# which licence, not the hundreds of format entries.
_YTDLP_INFO_KEYS = (
    "id", "title", "uploader", "upload_date", "webpage_url", "format_id", "vcodec", "acodec",
    "license", "extractor",
)  # fmt: skip


@dataclass
class FetchOptions:
    """How to fetch; the CLI's `wtours fetch` options map one to one onto these fields."""

    max_height: int = 2160
    cookies: Path | None = None
    extractor_args: list[str] = field(default_factory=list)
    proxy: str | None = None
    ytdlp_args: str | None = None
    retries: int = 3  # tries of a source in a row that get no further, before the next source
    retry_wait: float = 2.0  # seconds before the first retry; doubles with every further one, up to MAX_RETRY_WAIT
    full_verify: bool = False
    min_duration_ratio: float = 0.9
    figshare_api: str = field(default_factory=lambda: os.environ.get(FIGSHARE_API_ENV, FIGSHARE_API))

    def wait_before_retry(self, failures: int) -> float:
        """The one back-off of a fetch: seconds to wait after ``failures`` failed tries in a row."""
        return min(self.retry_wait * 2 ** (failures - 1), MAX_RETRY_WAIT)


@dataclass
class FetchResult:
    video_id: str
    ok: bool
    status: str  # 'fetched' | 'skipped' | 'failed'
    path: Path | None = None
    source: str | None = None
    error: str | None = None
    bytes_downloaded: int = 0


class _SourceFailed(Exception):
    """One source did not give a verified video; ``permanent`` means retrying it is pointless."""

    def __init__(self, message: str, *, permanent: bool) -> None:
        super().__init__(message)
        self.permanent = permanent


# -- entry points ------------------------------------------------------------------------------------


def fetch_videos(
    manifest: Manifest, entries: list[VideoEntry], store: Store, options: FetchOptions
) -> list[FetchResult]:
    """Fetch ``entries`` one after the other; a failing video never stops the others."""
    ytdlp_params = ytdlp_options(options)  # bad --yt-dlp options fail here, before any download
    if not all(store.is_verified(entry.id) for entry in entries):
        check_writable(store.state_dir)  # a read-only data directory: one line, before any work
    results = []
    progress = _DownloadBars()
    try:
        for entry in entries:
            fetcher = _VideoFetcher(entry, manifest, store, options, ytdlp_params, progress)
            results.append(fetcher.run())
    finally:
        progress.stop()
    _print_results(results, store)
    return results


def print_plan(entries: list[VideoEntry], store: Store) -> None:
    """The `--dry-run` table: what would be fetched, from where, in which order."""
    from rich.table import Table

    table = Table(title=f"{len(entries)} videos; each video's sources are tried in order", title_justify="left")
    table.add_column("id", no_wrap=True)
    table.add_column("group", no_wrap=True)
    table.add_column("expected", justify="right", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("sources", overflow="fold")
    for entry in entries:
        state, _ = video_state(store, entry.id)
        sources = "\n".join(
            f"{i}. {s.kind}: {s.location.removeprefix(s.kind + ':')}" for i, s in enumerate(entry.sources, 1)
        )
        table.add_row(entry.id, entry.group, format_clock(entry.duration), state, escape(sources))
    _stdout_console().print(table)


def print_status(entries: list[VideoEntry], store: Store) -> None:
    """Which videos are verified, missing, partly downloaded, failed or present but unverified."""
    from rich.table import Table

    table = Table(title=f"videos in {store.videos_dir}", title_justify="left")
    for name in ("id", "group", "status", "size", "duration", "resolution"):
        table.add_column(name, no_wrap=True, justify="right" if name in ("size", "duration") else "left")
    table.add_column("source / detail", overflow="fold")
    counts: dict[str, int] = {}
    for entry in entries:
        state, detail = video_state(store, entry.id)
        counts[state] = counts.get(state, 0) + 1
        sidecar = store.sidecar(entry.id) if state == "verified" else None
        if sidecar:
            table.add_row(
                entry.id, entry.group, state, _size(sidecar.get("size")), format_clock(sidecar.get("duration")),
                _resolution(sidecar), escape(detail),
            )  # fmt: skip
        else:
            table.add_row(entry.id, entry.group, state, "", format_clock(entry.duration), "", escape(detail))
    out = _stdout_console()
    out.print(table)
    out.print(", ".join(f"{count} {state}" for state, count in counts.items()), highlight=False)


def video_state(store: Store, video_id: str) -> tuple[str, str]:
    """(status, detail): verified | unverified | failed | partial | missing, read from disk only."""
    if store.is_verified(video_id):
        source = (store.sidecar(video_id) or {}).get("source") or {}
        return "verified", f"{source.get('kind', '?')}: {source.get('location', '?')}"
    if store.video_path(video_id).is_file():
        return "unverified", "videos/<id>.mp4 without a matching sidecar; `wtours fetch` re-verifies it"
    state = read_json(store.state_path(video_id)) or {}
    staged = _staged_bytes(store.partial_dir(video_id))
    if state.get("status") == "failed":
        resume = f" ({_size(staged)} staged)" if staged else ""
        return "failed", f"{state.get('error', 'unknown error')}{resume}"
    if staged:
        return "partial", f"{_size(staged)} staged; `wtours fetch` resumes"
    return "missing", ""


# -- yt-dlp configuration ------------------------------------------------------------------------------


def format_preferences(max_height: int) -> dict[str, Any]:
    """yt-dlp format selection: the best video at or below ``max_height`` (the smallest above it if there
    is none), more fps first, then H.264 over HEVC/VP9/AV1 at equal height and fps, merged with the best
    audio (AAC first) into mp4.

    In format sorting, ``res:H`` prefers the largest resolution up to H (yt-dlp measures the smaller side,
    i.e. the height of a landscape video); ``+vcodec:avc`` sorts codecs
    ascending from h264 (h264 > h265 > vp9 > vp9.2 > av01), i.e. prefers the most widely decodable one.
    YouTube serves H.264 only up to 1080p, so 4K comes as VP9 or AV1.
    """
    return {
        "format": "bv*+ba/b",
        "format_sort": [f"res:{max_height}", "fps", "+vcodec:avc", "+acodec:m4a"],
        "merge_output_format": "mp4",
    }


def ytdlp_options(options: FetchOptions) -> dict[str, Any]:
    """yt-dlp parameters from the fetch options; cookies, extractor args, proxy and the raw ``--yt-dlp``
    string go through yt-dlp's own option parser, so they mean exactly what they mean on its command line."""
    argv: list[str] = []
    for value in options.extractor_args:
        argv += ["--extractor-args", value]
    if options.cookies is not None:
        argv += ["--cookies", str(options.cookies)]
    if options.proxy is not None:
        argv += ["--proxy", options.proxy]
    try:
        argv += shlex.split(options.ytdlp_args or "")
    except ValueError as err:
        raise WtoursError(f"--yt-dlp {options.ytdlp_args!r}: {err}") from None
    changed = _ytdlp_cli_options(argv) if argv else {}
    reserved = [key for key in _RESERVED_YTDLP_KEYS if key in changed]
    if reserved:
        raise WtoursError(
            f"--yt-dlp may not set {', '.join(reserved)}: wtours decides where files go and downloads them"
        )
    params: dict[str, Any] = {
        **format_preferences(options.max_height),
        "noplaylist": True,
        "playlist_items": "1",  # a page with several videos: take the first
        "continuedl": True,
        "nopart": False,
        "overwrites": False,
        "updatetime": False,
        # The fetch's own loop is the one retry policy (`--retries`, `--retry-wait`): yt-dlp retrying inside each
        # of its tries would multiply them. Nothing is lost: each try resumes the .part file where the last
        # stopped. A fragment that fails fails the try (never skipped: that would leave a hole in the video).
        "retries": 0,
        "fragment_retries": 0,
        "extractor_retries": 0,
        "skip_unavailable_fragments": False,
        "socket_timeout": 30,
        "quiet": True,
        "noprogress": True,
        "no_color": True,
    }
    extra_postprocessors = changed.pop("postprocessors", [])
    params.update(changed)
    if extra_postprocessors:
        params["postprocessors"] = extra_postprocessors
    return params


def _ytdlp_cli_options(argv: list[str]) -> dict[str, Any]:
    """The yt-dlp parameters that ``argv`` sets, i.e. those differing from yt-dlp's defaults."""
    import yt_dlp

    def parse(args: list[str]) -> dict[str, Any]:
        captured = _OneLine()
        try:
            with contextlib.redirect_stderr(captured):
                return yt_dlp.parse_options(args).ydl_opts
        except (SystemExit, optparse.OptParseError) as err:
            if isinstance(err, optparse.OptParseError):
                captured.write(str(err))
            raise WtoursError(f"yt-dlp options {shlex.join(args)!r}: {captured.last_line()}") from None

    defaults = parse([])
    return {key: value for key, value in parse(argv).items() if defaults.get(key) != value}


class _OneLine:
    """A stderr stand-in that keeps the last non-empty line (optparse prints usage, then the error)."""

    def __init__(self) -> None:
        self.text = ""

    def write(self, text: str) -> int:
        self.text += text
        return len(text)

    def flush(self) -> None:
        pass

    def last_line(self) -> str:
        lines = [line.strip() for line in self.text.splitlines() if line.strip()]
        return re.sub(r"^\S*: error: ", "", lines[-1]) if lines else "invalid options"


def ffmpeg_dir(store: Store) -> Path:
    """A folder holding ``ffmpeg``: a link to imageio-ffmpeg's binary, whose file name yt-dlp would not
    recognise (``ffmpeg-linux-x86_64-v9.0.2``)."""
    import imageio_ffmpeg

    binary = Path(imageio_ffmpeg.get_ffmpeg_exe())
    folder = store.tools_dir.resolve()
    link = folder / ("ffmpeg.exe" if os.name == "nt" else "ffmpeg")
    with contextlib.suppress(OSError):
        if link.is_symlink() and Path(os.readlink(link)) == binary:
            return folder
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(link) as tmp:
        tmp.unlink()
        try:
            tmp.symlink_to(binary)
        except OSError:  # no symlinks (some Windows set-ups): a copy works too
            shutil.copy2(binary, tmp)
    return folder


# -- one video -----------------------------------------------------------------------------------------


class _VideoFetcher:
    """Everything that happens to one manifest entry: skip, re-verify, or try its sources in order."""

    def __init__(
        self,
        entry: VideoEntry,
        manifest: Manifest,
        store: Store,
        options: FetchOptions,
        ytdlp_params: dict[str, Any],
        progress: Any,
    ) -> None:
        self.entry = entry
        self.manifest = manifest
        self.store = store
        self.options = options
        self.ytdlp_params = ytdlp_params
        self.progress = progress
        self.bytes_downloaded = 0
        self.attempts: list[dict[str, Any]] = []

    @property
    def video_id(self) -> str:
        return self.entry.id

    def run(self) -> FetchResult:
        """Fetch this video; an OSError on the data directory (read-only, full) is raised, not recorded: every
        other video would fail the same way."""
        if self.store.is_verified(self.video_id):
            return self._skipped()
        try:
            lock = self.store.lock(self.video_id, "fetch")  # two runs appending to one .part file would corrupt it
            with lock:
                return self._run_locked()
        except BusyError as err:
            return FetchResult(self.video_id, False, "failed", error=str(err))

    def _run_locked(self) -> FetchResult:
        if self.store.is_verified(self.video_id):  # another run has just finished it
            return self._skipped()
        self.store.clear_stale_temps(self.video_id)
        try:
            if self.store.video_path(self.video_id).is_file() and self._reverify_existing():
                return self._skipped()
            return self._fetch_from_sources()
        except WtoursError as err:
            return self._failed(str(err))
        except OSError as err:
            if err.filename is None or self.store.holds(err.filename):
                raise
            return self._failed(os_error_message(err))  # e.g. a local source file we may not read
        except Exception as err:  # noqa: BLE001 - one broken video must not stop the others
            return self._failed(f"{type(err).__name__}: {err}")

    def _skipped(self) -> FetchResult:
        path = self.store.video_path(self.video_id)
        return FetchResult(self.video_id, True, "skipped", path, _sidecar_source(self.store, self.video_id))

    def _reverify_existing(self) -> bool:
        """A video without a (matching) sidecar, e.g. copied in by hand or cut off before its sidecar was
        written: verify it locally instead of downloading it again. A bad one is moved aside."""
        path = self.store.video_path(self.video_id)
        _say(f"{self.video_id}: videos/{path.name} has no matching sidecar; verifying it")
        try:
            probe = self._verify(path)
        except WtoursError as err:
            rejected = self.store.partial_dir(self.video_id) / "rejected.mp4"
            rejected.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, rejected)
            self.store.sidecar_path(self.video_id).unlink(missing_ok=True)
            _say(f"{self.video_id}: rejected ({err}); moved to {rejected}, fetching again")
            return False
        self._publish(path, probe, {"kind": "existing", "location": str(path)}, ytdlp_info=None)
        return True

    def _fetch_from_sources(self) -> FetchResult:
        """Each source in turn, each tried until it gives a verified video, fails for good (an HTTP 4xx, bad
        bytes) or fails ``retries`` times in a row without getting further: a try that added to the staged
        download (a long download cut off by a flaky connection) does not count, so hours of 4K are not given
        up for a few dropped connections."""
        attempts = max(1, self.options.retries)  # FetchOptions(retries=0) still tries each source once
        errors = []
        for source in self.entry.sources:
            label = f"{source.kind} {source.location}"
            tries = failures = 0
            staged = _staged_bytes(self._staging(source))
            while True:
                tries += 1
                try:
                    path = self._fetch_source(source)
                except (_SourceFailed, WtoursError) as err:
                    self.attempts.append({"source": label, "attempt": tries, "error": str(err)})
                    staged, before = max(staged, _staged_bytes(self._staging(source))), staged
                    failures = 0 if staged > before else failures + 1
                    if getattr(err, "permanent", True) or failures >= attempts:
                        errors.append(f"{label}: {err}")
                        break
                    wait = self.options.wait_before_retry(max(1, failures))
                    _say(f"{self.video_id}: {label}: {err}; retrying in {wait:g} s")
                    time.sleep(wait)
                else:
                    return FetchResult(self.video_id, True, "fetched", path, label, None, self.bytes_downloaded)
        _remove_empty_folders(self.store.partial_dir(self.video_id))
        if len(errors) == 1:
            return self._failed(errors[0])
        return self._failed(f"all {len(errors)} sources failed: " + "; ".join(errors))

    def _staging(self, source: Any) -> Path:
        """One staging folder per source, so that a .part file is only ever resumed from where it came from."""
        digest = hashlib.sha1(source.location.encode()).hexdigest()[:10]
        return self.store.partial_dir(self.video_id) / f"{source.kind}-{digest}"

    def _fetch_source(self, source: Any) -> Path:
        """Stage, verify and publish one source; raise _SourceFailed if it gives no good video."""
        staging = self._staging(source)
        staging.mkdir(parents=True, exist_ok=True)
        info: dict[str, Any] | None = None
        expected: dict[str, Any] = {}
        if isinstance(source, FileSource):
            staged = self._stage_file(source, staging)
        else:
            url = source.location
            if isinstance(source, FigshareSource):
                url, expected = self._resolve_figshare(source)
            staged, info = self._download(url, staging)
            staged = _as_mp4(staged)
        try:
            probe = self._verify(staged)
            digests = file_digests(staged, ("sha256", "md5") if expected.get("md5") else ("sha256",))
            _check_expected(staged, digests, expected)
        except WtoursError as err:
            # The bytes themselves are bad: drop them so that no later run resumes or re-verifies them.
            shutil.rmtree(staging, ignore_errors=True)
            raise _SourceFailed(str(err), permanent=True) from None
        record: dict[str, Any] = {"kind": source.kind, "location": source.location}
        if isinstance(source, FigshareSource):
            record["url"] = url
        if isinstance(source, FileSource) and source.link:
            record["link"] = True
        self._publish(staged, probe, record, ytdlp_info=info, sha256=digests["sha256"])
        return self.store.video_path(self.video_id)

    def _verify(self, path: Path) -> VideoProbe:
        _say(f"{self.video_id}: verifying {path.name}")
        return verify_video(
            path,
            expected_duration=self.entry.duration,
            min_duration_ratio=self.options.min_duration_ratio,
            full_decode=self.options.full_verify,
        )

    def _publish(
        self, staged: Path, probe: VideoProbe, source: dict[str, Any], *, ytdlp_info: dict | None,
        sha256: str | None = None,
    ) -> None:  # fmt: skip
        """Move the verified file into videos/ (one rename), then write its sidecar atomically."""
        target = self.store.video_path(self.video_id)
        sha256 = sha256 or file_sha256(staged)
        size = staged.stat().st_size
        if staged != target:
            os.replace(staged, target)
        sidecar = {
            "id": self.video_id,
            "group": self.entry.group,
            "source": source,
            "sha256": sha256,
            "size": size,
            **probe.as_dict(),
            "expected_duration": self.entry.duration,
            "verified": "every frame decoded" if self.options.full_verify else "every packet read, 3 frames decoded",
            "fetched_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "wtours_version": __version__,
            "ytdlp": {key: ytdlp_info.get(key) for key in _YTDLP_INFO_KEYS} if ytdlp_info else None,
        }
        # Its temporary file goes to the staging folder: a kill leaves nothing half-written in videos/.
        staging = self.store.partial_dir(self.video_id)
        atomic_write_json(self.store.sidecar_path(self.video_id), sidecar, staging=staging)
        shutil.rmtree(staging, ignore_errors=True)
        self.store.state_path(self.video_id).unlink(missing_ok=True)

    def _failed(self, error: str) -> FetchResult:
        error = " ".join(error.split())  # one line, whatever the source of the message
        atomic_write_json(
            self.store.state_path(self.video_id),
            {
                "status": "failed",
                "error": error,
                "time": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                "attempts": self.attempts,
            },
        )
        return FetchResult(self.video_id, False, "failed", None, None, error, self.bytes_downloaded)

    # -- source kinds ------------------------------------------------------------------------------

    def _download(self, url: str, staging: Path) -> tuple[Path, dict[str, Any]]:
        """yt-dlp into ``staging``; an existing ``.part`` file there is resumed (HTTP Range)."""
        import yt_dlp

        staging = staging.resolve()  # yt-dlp joins a relative temp path onto a relative home path
        already_on_disk = {str(part): part.stat().st_size for part in staging.glob("*.part")}
        params = {
            **self.ytdlp_params,
            "outtmpl": {"default": f"{self.video_id}.%(ext)s"},
            "paths": {"home": str(staging), "temp": str(staging)},
            "ffmpeg_location": self.ytdlp_params.get("ffmpeg_location") or str(ffmpeg_dir(self.store)),
            "logger": _YtdlpLogger(self.video_id),
            "progress_hooks": [self._progress_hook(already_on_disk)],
        }
        try:
            with yt_dlp.YoutubeDL(params) as ydl:
                info = ydl.extract_info(url, download=True)
        except yt_dlp.utils.YoutubeDLError as err:
            _raise_disk_error(err, staging)
            raise _SourceFailed(_ytdlp_message(err), permanent=_is_permanent(err)) from None
        if info and info.get("_type") == "playlist":
            info = next(iter(info.get("entries") or []), None)
        downloads = (info or {}).get("requested_downloads") or []
        if not downloads or not Path(downloads[0].get("filepath", "")).is_file():
            raise _SourceFailed(f"yt-dlp found no downloadable video at {url}", permanent=True)
        return Path(downloads[0]["filepath"]), info

    def _progress_hook(self, already_on_disk: dict[str, int]) -> Callable[[dict[str, Any]], None]:
        """Feed yt-dlp's progress into one bar per file, and count the bytes this run downloaded
        (a resumed file starts from what an earlier run left in its .part file)."""
        tasks: dict[str, Any] = {}
        counted: dict[str, int] = {}

        def hook(status: dict[str, Any]) -> None:
            name = status.get("filename", "")
            done = status.get("downloaded_bytes") or 0
            total = status.get("total_bytes") or status.get("total_bytes_estimate")
            if name not in tasks:
                tasks[name] = self.progress.add_task(self.video_id, total=total, completed=done)
                counted[name] = already_on_disk.get(status.get("tmpfilename") or name, 0)
            self.bytes_downloaded += done - counted[name]
            counted[name] = done
            self.progress.update(tasks[name], completed=done, total=total or None)

        return hook

    def _resolve_figshare(self, source: FigshareSource) -> tuple[str, dict[str, Any]]:
        """The download URL (and published size/md5) of a file of a figshare article."""
        import yt_dlp

        api_url = f"{self.options.figshare_api.rstrip('/')}/articles/{source.figshare}"
        try:
            with yt_dlp.YoutubeDL({**self.ytdlp_params, "logger": _YtdlpLogger(self.video_id)}) as ydl:
                article = json.load(ydl.urlopen(api_url))
        except yt_dlp.networking.exceptions.HTTPError as err:
            raise _SourceFailed(f"figshare article {source.figshare}: {err}", permanent=err.status == 404) from None
        except (yt_dlp.networking.exceptions.RequestError, OSError, ValueError) as err:
            raise _SourceFailed(f"figshare API {api_url}: {err}", permanent=False) from None
        files = article.get("files") if isinstance(article, dict) else None
        if not isinstance(files, list):
            raise _SourceFailed(f"figshare API {api_url}: no 'files' list in the answer", permanent=True)
        wanted = _loose_name(source.file)
        for item in files:
            if isinstance(item, dict) and _loose_name(str(item.get("name", ""))) == wanted:
                return str(item["download_url"]), {"size": item.get("size"), "md5": item.get("computed_md5")}
        names = ", ".join(str(item.get("name")) for item in files if isinstance(item, dict)) or "none"
        raise _SourceFailed(
            f"figshare article {source.figshare} has no file {source.file!r} (files: {names})", permanent=True
        )

    def _stage_file(self, source: FileSource, staging: Path) -> Path:
        """A local file into staging as an independent copy (a reflink where the file system can: instant, no
        extra space), so that editing either file never changes the other; a hard link instead when the
        manifest says ``link: true`` (no second copy of gigabytes; both names then share one file). Other
        containers are remuxed to mp4 without re-encoding."""
        path = self.manifest.resolve_path(source)
        if not path.is_file():
            raise _SourceFailed(f"file not found: {path}", permanent=True)
        staged = staging / f"{self.video_id}.mp4"
        if _container(path) not in (None, "mp4"):
            _remux_to_mp4(path, staged)
            return staged
        staged.unlink(missing_ok=True)
        if source.link:
            try:
                os.link(path, staged)
                return staged
            except OSError as err:  # another file system, or links not allowed there
                _say(f"{self.video_id}: cannot hard-link {path} ({os_error_message(err)}); copying it instead")
        copy_file(path, staged)
        return staged


# -- helpers ---------------------------------------------------------------------------------------------


class _DownloadBars:
    """The download progress bars, started with the first download: a run that downloads nothing (local
    files, verified videos, an error before any transfer) prints no empty bar."""

    def __init__(self) -> None:
        self._progress: Any = None

    def add_task(self, *args: Any, **kwargs: Any) -> Any:
        if self._progress is None:
            self._progress = make_progress(transfer=True)
            self._progress.start()
        return self._progress.add_task(*args, **kwargs)

    def update(self, *args: Any, **kwargs: Any) -> None:
        self._progress.update(*args, **kwargs)

    def stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()


class _YtdlpLogger:
    """yt-dlp's chatter is dropped; its warnings are shown; its errors come back as exceptions."""

    def __init__(self, video_id: str) -> None:
        self.video_id = video_id

    def debug(self, message: str) -> None:
        pass

    info = debug

    def warning(self, message: str) -> None:
        if "generic information extractor" in message or "direct video link" in message:
            return  # expected for direct links and plain web pages
        console.print(f"[dim]{self.video_id}: yt-dlp: {escape(_strip_ansi(message))}[/]", highlight=False)

    def error(self, message: str) -> None:
        pass


def _say(text: str) -> None:
    """A plain progress message on stderr (no markup: messages quote paths and yt-dlp's [brackets])."""
    console.print(text, highlight=False, markup=False)


def _ytdlp_message(err: Exception) -> str:
    text = _strip_ansi(str(err)).strip().removeprefix("ERROR: ")
    text = re.sub(r"\s*\(caused by .*\)\s*$", "", text, flags=re.DOTALL)  # repeats the message
    return " ".join(text.split()) or type(err).__name__


def _is_permanent(err: Exception) -> bool:
    """An HTTP 4xx (except timeouts and rate limits) will not heal by retrying; 5xx and network errors might."""
    import yt_dlp

    seen: set[int] = set()
    cause: Any = err
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, yt_dlp.networking.exceptions.HTTPError):
            return 400 <= cause.status < 500 and cause.status not in (408, 429)
        exc_info = getattr(cause, "exc_info", None)
        cause = getattr(cause, "cause", None) or (exc_info[1] if exc_info else None) or cause.__cause__
    match = re.search(r"HTTP Error (\d{3})", str(err))
    return bool(match) and 400 <= int(match[1]) < 500 and int(match[1]) not in (408, 429)


# What the disk, not the source, said: retrying or trying another source cannot help.
_DISK_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM)


def _raise_disk_error(err: Exception, staging: Path) -> None:
    """Re-raise the OSError behind a yt-dlp error when it is about our disk (full, read-only, not ours);
    yt-dlp's own message does not say where it was writing."""
    seen: set[int] = set()
    cause: Any = err
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, OSError) and cause.errno in _DISK_ERRNOS:
            raise OSError(cause.errno, cause.strerror, cause.filename or str(staging)) from None
        exc_info = getattr(cause, "exc_info", None)
        cause = (exc_info[1] if exc_info else None) or cause.__cause__ or cause.__context__
    match = re.search(r"\[Errno (\d+)\] ([^:\n]+)", str(err))
    if match and int(match[1]) in _DISK_ERRNOS:
        raise OSError(int(match[1]), match[2].strip(), str(staging))


def _strip_ansi(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


def _loose_name(name: str) -> str:
    """File names compare case-insensitively, ignoring '_', '-' and spaces: Chiang_Mai.MP4 == chiangmai.mp4."""
    return re.sub(r"[\s_-]", "", name).lower()


def _container(path: Path) -> str | None:
    """'mp4' for the MP4/QuickTime family, another demuxer name otherwise, None if PyAV cannot open it
    (verification then says why)."""
    import av

    try:
        with av.open(str(path), metadata_errors="ignore") as container:
            names = container.format.name.split(",")
    except (av.FFmpegError, OSError):
        return None
    return "mp4" if "mp4" in names else names[0]


def _as_mp4(path: Path) -> Path:
    """The downloaded file itself if it is MP4, else a stream-copied MP4 beside it."""
    if _container(path) in (None, "mp4"):
        return path
    remuxed = path.with_name(f"{path.stem}.remuxed.mp4")
    _remux_to_mp4(path, remuxed)
    path.unlink()
    return remuxed


def _remux_to_mp4(source: Path, target: Path) -> None:
    """Change the container without re-encoding (ffmpeg -c copy): seconds even for hours of 4K."""
    import imageio_ffmpeg

    with atomic_path(target) as tmp:
        command = [
            imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-v", "error", "-y", "-i", str(source),
            "-map", "0:v:0", "-map", "0:a:0?", "-c", "copy", "-movflags", "+faststart", "-f", "mp4", str(tmp),
        ]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            reason = (done.stderr.strip().splitlines() or ["unknown error"])[-1]
            raise WtoursError(f"{source.name}: cannot remux to mp4: {reason}")


def _check_expected(path: Path, digests: dict[str, str], expected: dict[str, Any]) -> None:
    """Compare with the size and md5 the host publishes (figshare does)."""
    size = path.stat().st_size
    if expected.get("size") and int(expected["size"]) != size:
        raise WtoursError(f"{path.name}: {size} bytes but the host lists {expected['size']}")
    if expected.get("md5") and expected["md5"].lower() != digests.get("md5"):
        raise WtoursError(f"{path.name}: md5 {digests.get('md5')} differs from the host's {expected['md5']}")


def _remove_empty_folders(folder: Path) -> None:
    """Staging folders of sources that left nothing to resume."""
    for path in sorted(folder.rglob("*"), key=lambda p: len(p.parts), reverse=True) + [folder]:
        if path.is_dir() and not any(path.iterdir()):
            path.rmdir()


def _staged_bytes(folder: Path) -> int:
    if not folder.is_dir():
        return 0
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def _sidecar_source(store: Store, video_id: str) -> str | None:
    source = (store.sidecar(video_id) or {}).get("source") or {}
    return f"{source.get('kind')} {source.get('location')}" if source else None


def _print_results(results: list[FetchResult], store: Store) -> None:
    from rich.table import Table

    table = Table(title="wtours fetch", title_justify="left")
    for name in ("id", "status", "size", "duration", "resolution"):
        table.add_column(name, no_wrap=True, justify="right" if name in ("size", "duration") else "left")
    table.add_column("source / error", overflow="fold")
    for result in results:
        sidecar = store.sidecar(result.video_id) if result.ok else None
        style = {"fetched": "green", "skipped": "dim", "failed": "red"}[result.status]
        table.add_row(
            result.video_id,
            f"[{style}]{result.status}[/]",
            _size(sidecar.get("size")) if sidecar else "",
            format_clock(sidecar.get("duration")) if sidecar else "",
            _resolution(sidecar) if sidecar else "",
            escape(result.source or "") if result.ok else f"[red]{escape(_shorten(result.error or '', 160))}[/]",
        )
    console.print(table)
    counts = {status: sum(r.status == status for r in results) for status in ("fetched", "skipped", "failed")}
    downloaded = sum(result.bytes_downloaded for result in results)
    summary = ", ".join(f"{count} {status}" for status, count in counts.items())
    _say(f"{summary}; {_size(downloaded) or '0 B'} downloaded by this run")
    # Each failure once more as a single unwrapped line, for logs and grep.
    for result in results:
        if not result.ok:
            console.print(
                f"[bold red]error:[/] {escape(prefixed(result.video_id, result.error or ''))}", highlight=False,
                soft_wrap=True,
            )


def _shorten(text: str, length: int) -> str:
    return text if len(text) <= length else text[: length - 1] + "…"


def _stdout_console() -> Any:
    """Tables for stdout: as wide as the terminal, or 160 columns when piped (rich would use 80)."""
    import sys

    from rich.console import Console

    return Console(width=None if sys.stdout.isatty() else 160)


def _size(value: Any) -> str:
    if not isinstance(value, (int, float)):
        return ""
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return ""


def _resolution(sidecar: dict[str, Any]) -> str:
    if not sidecar.get("width"):
        return ""
    return f"{sidecar['width']}x{sidecar['height']} {sidecar.get('fps', 0):g}fps {sidecar.get('codec', '')}"
