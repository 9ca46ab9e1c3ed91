"""Where things live on disk, and the one way to write a file atomically.

Layout under the data directory (``--data-dir`` or ``$WTOURS_DATA_DIR``, default ``./data``)::

    videos/<id>.mp4            verified video, appears atomically
    videos/<id>.json           its sidecar: source, sha256, probe results, yt-dlp info
    videos/.partial/<id>/      staging area of an unfinished download (resumable)
    videos/.state/<id>.json    outcome of the last fetch attempt (e.g. failed, and why)
    videos/.state/<id>.lock    held while a fetch of <id> runs (two fetches never share a .part file)
    videos/.<id>-anon.parts/   finished parts of an unfinished anonymized copy (resumable)
    .cache/bin/ffmpeg          link to the bundled ffmpeg binary, for yt-dlp
    analysis/<id>/             per-video statistics (Parquet + summary.json)
    clips/<id>.parquet         curated clip index
    proxies/<id>/short<S>/     training proxy: every frame as JPEG in shards (random access at train size)
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DATA_DIR_ENV = "WTOURS_DATA_DIR"


def default_data_dir() -> Path:
    return Path(os.environ.get(DATA_DIR_ENV, "data"))


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` in one rename.

    If the body raises, the temporary file is removed and ``path`` is left untouched, so a
    reader never sees a half-written file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        if tmp.is_file() and not tmp.is_symlink():
            # mkstemp creates files 0600; add the read/write bits a plain open() would give (keeping an
            # executable bit). Never chmod through a symlink: that would change its target.
            mode = tmp.stat().st_mode & 0o7777
            os.chmod(tmp, mode | (0o666 & ~_umask()))
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def read_json(path: str | os.PathLike[str]) -> Any | None:
    """The parsed JSON at ``path``, or None if it is missing or unreadable."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file, read in 4 MiB chunks (videos and weights may be gigabytes)."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while chunk := stream.read(4 << 20):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class Store:
    """Paths of one data directory. Creating a Store touches nothing on disk."""

    root: Path

    @classmethod
    def at(cls, root: str | os.PathLike[str] | None = None) -> Store:
        return cls(Path(root) if root is not None else default_data_dir())

    @property
    def videos_dir(self) -> Path:
        return self.root / "videos"

    def video_path(self, video_id: str) -> Path:
        return self.videos_dir / f"{video_id}.mp4"

    def sidecar_path(self, video_id: str) -> Path:
        return self.videos_dir / f"{video_id}.json"

    def partial_dir(self, video_id: str) -> Path:
        return self.videos_dir / ".partial" / video_id

    def state_path(self, video_id: str) -> Path:
        return self.videos_dir / ".state" / f"{video_id}.json"

    def analysis_dir(self, video_id: str) -> Path:
        return self.root / "analysis" / video_id

    def clips_path(self, video_id: str) -> Path:
        return self.root / "clips" / f"{video_id}.parquet"

    def sidecar(self, video_id: str) -> dict[str, Any] | None:
        return read_json(self.sidecar_path(video_id))

    def is_verified(self, video_id: str) -> bool:
        """True when the video and its sidecar are both in place and agree on the file size.

        Cheap on purpose (no hashing): a re-run of ``wtours fetch`` uses it to skip finished
        videos without touching the network or reading gigabytes.
        """
        sidecar = self.sidecar(video_id)
        video = self.video_path(video_id)
        if not sidecar or not video.is_file():
            return False
        return sidecar.get("size") == video.stat().st_size
