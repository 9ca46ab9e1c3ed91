"""Where things live on disk, and the one way to write a file atomically.

Layout under the data directory (``--data-dir`` or ``$WTOURS_DATA_DIR``, default ``./data``)::

    videos/<id>.mp4            verified video, appears atomically
    videos/<id>.json           its sidecar: source, sha256, probe results, yt-dlp info
    videos/.partial/<id>/      staging area of an unfinished download (resumable)
    videos/.state/<id>.json    outcome of the last fetch attempt (e.g. failed, and why)
    videos/.state/<id>.lock    held while a fetch or anonymize of <id> runs; names its holder
    videos/.<id>.parts/        finished parts of a video being made, e.g. an anonymized copy <id> = <orig>-anon
                               (resumable), and the joined copy while it is written
    .cache/bin/ffmpeg          link to the bundled ffmpeg binary, for yt-dlp
    analysis/<id>/             per-video statistics (Parquet + summary.json)
    figures/                   the paper's Figure 2 and Table 1 of the analysed videos (``analyze --figure 2``)
    clips/<id>.parquet         curated clip index
    proxies/<id>/short<S>/     training proxy: every frame as JPEG in shards (random access at train size)

A pretraining run is one folder (``runs/<name>/`` by default, outside the data directory)::

    config.yaml                the resolved config the run trains with
    metrics.jsonl              one line per logged step: step, epoch, loss, lr, ...; with run.knn_every also
                               step, knn_top1 (the k-NN curve while training)
    checkpoint.pt              everything a --resume needs
    encoder_init.safetensors   the encoder at step 0 (+ .json): the floor of ``eval ... --untrained``
    encoder.safetensors        the trained encoder (+ .json), once the run is finished
    summary.json               steps done of the total, last loss
    eval/                      what ``wtours eval`` wrote: knn.json, knn_untrained.json, linear.json, davis/

``Store`` and ``RunDir`` are the one place these names are spelled: every command asks them for a path, so
the layout can be read (and changed) here alone.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wtours.errors import BusyError, WtoursError

DATA_DIR_ENV = "WTOURS_DATA_DIR"


def default_data_dir() -> Path:
    return Path(os.environ.get(DATA_DIR_ENV, "data"))


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], *, staging: str | os.PathLike[str] | None = None) -> Iterator[Path]:
    """Yield a temporary path; on success it replaces ``path`` in one rename.

    The temporary file lies beside ``path``, or in ``staging`` (a folder on the same file system, e.g. a
    staging area, so that a killed writer leaves nothing in the folder users and later stages read).
    If the body raises, the temporary file is removed and ``path`` is left untouched, so a reader never
    sees a half-written file. An OSError that names no file (a full disk reported by ``write``) is given
    ``path`` as its file name: the error a user reads says where.
    """
    path = Path(path)
    folder = Path(staging) if staging is not None else path.parent
    tmp: Path | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
        os.close(fd)
        tmp = Path(tmp_name)
        yield tmp
        if tmp.is_file() and not tmp.is_symlink():
            # mkstemp creates files 0600; add the read/write bits a plain open() would give (keeping an
            # executable bit). Never chmod through a symlink: that would change its target.
            mode = tmp.stat().st_mode & 0o7777
            os.chmod(tmp, mode | (0o666 & ~_umask()))
        os.replace(tmp, path)
    except OSError as err:
        if err.filename is None or Path(err.filename).name.startswith(f".{path.name}."):
            err.filename = str(path)  # the file the user knows of, not our temporary name for it
        raise
    finally:
        if tmp is not None:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()


def remove_atomic_temps(folder: str | os.PathLike[str], names: Iterable[str] | None = None) -> None:
    """Delete what `atomic_path` leaves in ``folder`` when its writer is killed (``.<name>.<8 random>.tmp``),
    for the files ``names`` or, with None, for any file. Call it only where no writer of those files can be at
    work (under their lock, or in a folder one process owns)."""
    stems = "|".join(re.escape(name) for name in names) if names is not None else ".+"
    pattern = re.compile(rf"^\.({stems})\.[A-Za-z0-9_]{{8}}\.tmp$")
    if Path(folder).is_dir():
        for path in Path(folder).iterdir():
            if pattern.match(path.name):
                path.unlink(missing_ok=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes, *, staging: str | os.PathLike[str] | None = None
                       ) -> None:  # fmt: skip
    with atomic_path(path, staging=staging) as tmp, open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def atomic_write_text(path: str | os.PathLike[str], text: str, *, staging: str | os.PathLike[str] | None = None
                      ) -> None:  # fmt: skip
    atomic_write_bytes(path, text.encode("utf-8"), staging=staging)


def atomic_write_json(path: str | os.PathLike[str], obj: Any, *, staging: str | os.PathLike[str] | None = None
                      ) -> None:  # fmt: skip
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n", staging=staging)


def read_json(path: str | os.PathLike[str]) -> Any | None:
    """The parsed JSON at ``path``, or None if it is missing or unreadable."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def read_yaml_sections(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The YAML mapping at ``path`` (a run's config, a preset): an empty file is an empty mapping; invalid YAML or
    anything but a mapping at the top level is a one-line `WtoursError` naming the file."""
    import yaml

    try:
        tree = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise WtoursError(f"{path}: not valid YAML ({err.__class__.__name__})") from None
    except OSError as err:
        raise WtoursError(f"{path}: cannot be read ({err.strerror or err.__class__.__name__})") from None
    if not isinstance(tree, dict):
        raise WtoursError(f"{path}: expected a mapping of sections at the top level")
    return tree


def file_digests(path: str | os.PathLike[str], algorithms: tuple[str, ...] = ("sha256",)) -> dict[str, str]:
    """Hex digests of a file by hashlib name (``sha256``, ``md5``), all in one read of 4 MiB chunks: videos
    and weights may be gigabytes, and a host's published md5 is checked beside our sha256."""
    import hashlib

    digests = {name: hashlib.new(name) for name in algorithms}
    with open(path, "rb") as stream:
        while chunk := stream.read(4 << 20):
            for digest in digests.values():
                digest.update(chunk)
    return {name: digest.hexdigest() for name, digest in digests.items()}


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file (see `file_digests`)."""
    return file_digests(path)["sha256"]


def check_writable(folder: str | os.PathLike[str]) -> None:
    """Create ``folder`` if needed and a file in it, or raise the OSError that says why not (read-only,
    permission): a command calls it before its first long step rather than fail after it."""
    Path(folder).mkdir(parents=True, exist_ok=True)
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        err.filename = str(folder)
        raise


def copy_file(source: str | os.PathLike[str], target: str | os.PathLike[str]) -> str:
    """Write an independent copy of ``source`` at ``target`` (atomically) and say how: ``"reflink"`` where the
    file system shares blocks copy-on-write (Btrfs, XFS: instant, no extra space, and still two files: an
    edit of one never shows in the other), else ``"copy"``."""
    with atomic_path(target) as tmp, open(source, "rb") as src, open(tmp, "wb") as dst:
        if _reflink(src.fileno(), dst.fileno()):
            return "reflink"
        shutil.copyfileobj(src, dst, 4 << 20)
    return "copy"


def _reflink(source_fd: int, target_fd: int) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    import fcntl

    try:
        fcntl.ioctl(target_fd, getattr(fcntl, "FICLONE", 0x40049409), source_fd)
    except OSError:  # not supported here (ext4, tmpfs), or across file systems
        return False
    return True


@contextlib.contextmanager
def _held_lock(path: Path, holder: str, busy_message: str) -> Iterator[None]:
    """An advisory lock on ``path`` (fcntl.flock) while the body runs; BusyError(busy_message) at once if
    another process holds it. The file exists only while held and names its holder."""
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks, runs are not serialised
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        handle = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - held open for as long as the lock
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            other = handle.read().strip() or "process"
            handle.close()
            raise BusyError(busy_message.format(holder=other)) from None
        try:  # the last holder may have removed the file between our open and flock: lock the one there now
            if os.stat(path).st_ino == os.fstat(handle.fileno()).st_ino:
                break
        except FileNotFoundError:
            pass
        handle.close()
    try:
        handle.truncate(0)
        handle.write(f"{holder} (pid {os.getpid()})\n")
        handle.flush()
        yield
    finally:
        path.unlink(missing_ok=True)
        handle.close()


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
        """Staging area of ``video_id``'s unfinished download (one folder per source inside)."""
        return self.videos_dir / ".partial" / video_id

    def parts_dir(self, video_id: str) -> Path:
        """Finished parts of ``video_id`` while it is being made from another video (an anonymized copy)."""
        return self.videos_dir / f".{video_id}.parts"

    @property
    def state_dir(self) -> Path:
        """Outcomes of fetch attempts and the per-video locks."""
        return self.videos_dir / ".state"

    def state_path(self, video_id: str) -> Path:
        return self.state_dir / f"{video_id}.json"

    def lock_path(self, video_id: str) -> Path:
        return self.state_dir / f"{video_id}.lock"

    @property
    def tools_dir(self) -> Path:
        """Programs the store provides to others, e.g. ``ffmpeg`` for yt-dlp."""
        return self.root / ".cache" / "bin"

    def lock(self, video_id: str, holder: str) -> contextlib.AbstractContextManager[None]:
        """Hold ``video_id``'s lock while ``holder`` (``"fetch"``, ``"anonymize"``) writes its files: two runs
        never share a download or a copy. BusyError, with nothing touched, if another process holds it."""
        return _held_lock(self.lock_path(video_id), holder,
                          f"{video_id}: another wtours {{holder}} is on this video now")  # fmt: skip

    def clear_stale_temps(self, video_id: str) -> None:
        """Remove temporary files of ``video_id``'s video and sidecar that a killed writer left in videos/
        (older versions wrote them there). Call it holding the video's lock: none can be in use then."""
        remove_atomic_temps(self.videos_dir, [f"{video_id}.mp4", f"{video_id}.json"])

    def holds(self, path: str | os.PathLike[str]) -> bool:
        """True if ``path`` lies inside this data directory."""
        try:
            Path(path).resolve().relative_to(self.root.resolve())
        except ValueError:
            return False
        return True

    @property
    def analysis_root(self) -> Path:
        return self.root / "analysis"

    def analysis_dir(self, video_id: str) -> Path:
        return self.analysis_root / video_id

    @property
    def figures_dir(self) -> Path:
        """Default folder of ``analyze --figure 2``'s figure and table."""
        return self.root / "figures"

    @property
    def clips_dir(self) -> Path:
        return self.root / "clips"

    def clips_path(self, video_id: str) -> Path:
        return self.clips_dir / f"{video_id}.parquet"

    def proxies_dir(self, video_id: str) -> Path:
        """Every training proxy of ``video_id`` (one per short side)."""
        return self.root / "proxies" / video_id

    def proxy_dir(self, video_id: str, short_side: int) -> Path:
        """The training proxy of ``video_id`` at ``short_side`` pixels (built by pipelines/proxy.py)."""
        return self.proxies_dir(video_id) / f"short{short_side}"

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


@dataclass(frozen=True)
class RunDir:
    """Paths of one pretraining run folder (see the module docstring). Creating one touches nothing on disk.

    Training writes it, evaluation adds to its ``eval/`` folder, ``wtours compare`` reads it: all three ask
    here, so none of them needs to know another's file names."""

    root: Path

    @classmethod
    def at(cls, root: str | os.PathLike[str]) -> RunDir:
        return cls(Path(root))

    @classmethod
    def holding(cls, path: str | os.PathLike[str]) -> RunDir | None:
        """The run a command argument names (the folder itself, or a file in it such as its exported encoder),
        or None for weights that live outside a run."""
        path = Path(path)
        if path.is_dir():
            return cls(path)
        if cls(path.parent).config_path.is_file():
            return cls(path.parent)
        return None

    @property
    def config_path(self) -> Path:
        return self.root / "config.yaml"

    @property
    def metrics_path(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def checkpoint_path(self) -> Path:
        return self.root / "checkpoint.pt"

    @property
    def encoder_path(self) -> Path:
        return self.root / "encoder.safetensors"

    @property
    def encoder_init_path(self) -> Path:
        """The encoder at step 0: the floor its evaluations are read against."""
        return self.root / "encoder_init.safetensors"

    @property
    def summary_path(self) -> Path:
        return self.root / "summary.json"

    @property
    def eval_dir(self) -> Path:
        return self.root / "eval"

    def knn_path(self, *, untrained: bool = False) -> Path:
        """``eval knn``'s report of the trained encoder, or with ``untrained`` of its floor."""
        return self.eval_dir / ("knn_untrained.json" if untrained else "knn.json")

    def linear_path(self, *, untrained: bool = False) -> Path:
        """``eval linear``'s report of the trained encoder, or with ``untrained`` of its floor."""
        return self.eval_dir / ("linear_untrained.json" if untrained else "linear.json")

    @property
    def davis_dir(self) -> Path:
        """``eval davis``'s masks, per-object CSV and summary."""
        return self.eval_dir / "davis"

    @property
    def davis_summary_path(self) -> Path:
        return self.davis_dir / "summary.json"

    def summary(self) -> dict[str, Any] | None:
        return read_json(self.summary_path)

    def is_finished(self) -> bool:
        """True when the run trained every step it planned (its summary says so)."""
        summary = self.summary() or {}
        return bool(summary) and summary.get("steps_done") == summary.get("total_steps")

    def losses(self) -> list[float]:
        """The logged loss of every metrics line, in order (a partial last line is skipped)."""
        losses = []
        if self.metrics_path.is_file():
            for line in self.metrics_path.read_text(encoding="utf-8").splitlines():
                with contextlib.suppress(ValueError, KeyError, TypeError):
                    losses.append(float(json.loads(line)["loss"]))
        return losses


def encoder_weights(path: str | os.PathLike[str]) -> Path:
    """The weights file an evaluation argument means: itself, or a run folder's trained encoder."""
    path = Path(path)
    return RunDir(path).encoder_path if path.is_dir() else path


def initial_encoder_weights(weights: str | os.PathLike[str]) -> Path:
    """The step-0 encoder written beside ``weights`` (a run's encoder): the same network before training."""
    return RunDir(Path(weights).parent).encoder_init_path
