"""Training proxy: every frame of a video, at training resolution, as JPEG frame shards.

Why JPEG shards and not a short-GOP H.264 file: a clip of T frames at stride s touches T frames that
are far apart, so any inter-coded proxy decodes from a keyframe for each of them. A JPEG shard reads
exactly the T frames asked for (one ``pread`` and one libjpeg-turbo decode each), needs no container
or seek state per worker, and fork-safe file descriptors are all a worker opens.
``benchmarks/bench_loader.py`` measures the alternatives on the same 4K60 source.

Layout, under ``<data>/proxies/<id>/short<S>/`` (S = short side in pixels)::

    shard-00000.jpg.bin        JPEG files back to back, frames [0, F)
    shard-00000.offsets.npy    int64 byte offsets, F + 1 of them (the last is the shard size)
    ...
    proxy.json                 sidecar, written last: source identity, settings, size, frame count

Proxy frame ``i`` is original frame ``i`` (every frame is kept), so clip indices and frame numbers
need no mapping. A variable-frame-rate source (a phone, an action camera) is resampled to its average
rate instead: proxy frame ``i`` is the source frame on screen at ``i / rate`` seconds, so clips at a
fixed stride span fixed times; the sidecar says so (``frame_mapping: resampled``, ``resampled_fps``), and
``ProxyReader.frames_shown`` maps the analysis's source frames onto proxy frames by their times.
A build is resumable shard by shard (each shard appears by an atomic rename and is
cut by one ffmpeg run that seeks to its first frame), and a proxy whose source changed, whose
settings differ, or whose shards are missing, truncated or undecodable is detected and rebuilt.
"""

from __future__ import annotations

import math
import os
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import IO, Any

import numpy as np

from wtours.errors import WtoursError
from wtours.store import Store, atomic_path, atomic_write_json, read_json

PROXY_FORMAT = "jpeg-shards-v1"
SIDECAR_NAME = "proxy.json"


@dataclass(frozen=True)
class ProxySettings:
    """How a proxy is cut. Changing any of these makes an existing proxy stale (it is rebuilt)."""

    short_side: int = 320
    jpeg_qscale: int = 3  # ffmpeg's MJPEG quantiser: 2 (best, biggest) .. 31 (worst)
    frames_per_shard: int = 3600  # one minute at 60 fps: the unit of resuming after an interruption

    def __post_init__(self) -> None:
        if self.short_side < 16 or self.short_side % 2:
            raise WtoursError(f"proxy short side must be an even number of pixels >= 16, got {self.short_side}")
        if not 2 <= self.jpeg_qscale <= 31:
            raise WtoursError(f"JPEG qscale must be in 2..31, got {self.jpeg_qscale}")
        if self.frames_per_shard < 1:
            raise WtoursError(f"frames per shard must be >= 1, got {self.frames_per_shard}")


def proxy_size(width: int, height: int, short_side: int) -> tuple[int, int]:
    """(width, height) with the short side at ``short_side`` (never upscaled), both even."""
    scale = min(1.0, short_side / min(width, height))
    return max(2, round(width * scale / 2) * 2), max(2, round(height * scale / 2) * 2)


def source_identity(store: Store, video_id: str) -> dict[str, Any]:
    """What ties a proxy to its source: size and the fetch sidecar's sha256 (else the mtime)."""
    path = store.video_path(video_id)
    if not path.is_file():
        raise WtoursError(f"{video_id}: no video at {path}; run `wtours fetch --only {video_id}` first")
    stat = path.stat()
    sidecar = store.sidecar(video_id) or {}
    if sidecar.get("sha256") and sidecar.get("size") == stat.st_size:
        return {"size": stat.st_size, "sha256": sidecar["sha256"]}
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def check_proxy(directory: Path, *, expected_source: dict[str, Any] | None = None,
                settings: ProxySettings | None = None) -> str | None:  # fmt: skip
    """Why the proxy in ``directory`` cannot be used as is, or None when it is complete and intact.

    Cheap: sizes and offsets of every shard, and a decode of each shard's first and last frame. A bit
    flip in the middle of a shard is caught when that frame is read (a WtoursError naming the fix).
    """
    sidecar = read_json(directory / SIDECAR_NAME)
    if sidecar is None:
        return "no proxy yet" if not directory.exists() else "unfinished (no proxy.json)"
    if sidecar.get("format") != PROXY_FORMAT:
        return f"format {sidecar.get('format')!r} is not {PROXY_FORMAT!r}"
    if expected_source is not None and sidecar.get("source") != expected_source:
        return "the source video changed since the proxy was made"
    if settings is not None and sidecar.get("settings") != asdict(settings):
        return "made with other settings"
    for shard in sidecar["shards"]:
        problem = _check_shard(directory, shard["index"], shard["frames"], shard["bytes"])
        if problem:
            return problem
    return None


def ensure_proxy(store: Store, video_id: str, settings: ProxySettings = ProxySettings(), *,
                 show_progress: bool = True) -> Path:  # fmt: skip
    """Build the proxy of ``video_id`` unless an intact, current one exists; return its directory."""
    from wtours.progress import console

    directory = store.proxy_dir(video_id, settings.short_side)
    source = source_identity(store, video_id)
    problem = check_proxy(directory, expected_source=source, settings=settings)
    if problem is None:
        return directory
    sidecar = read_json(directory / SIDECAR_NAME)
    if sidecar is not None:
        console.print(f"[yellow]{video_id}[/]: proxy {directory} is unusable ({problem}); rebuilding it")
        if sidecar.get("source") != source or sidecar.get("settings") != asdict(settings):
            _remove_shards(directory)  # nothing in it can be trusted for the new source or settings
        (directory / SIDECAR_NAME).unlink()
    _build(store, video_id, directory, settings, source, show_progress=show_progress)
    return directory


def _build(store: Store, video_id: str, directory: Path, settings: ProxySettings,
           source: dict[str, Any], *, show_progress: bool) -> None:  # fmt: skip
    from wtours.progress import make_progress
    from wtours.video import probe_video

    path = store.video_path(video_id)
    probe = probe_video(path)
    resample = probe.variable_frame_rate
    if resample:
        # The average rate, measured (frames / duration; a header's "average" may be a guess from the first
        # frames): the proxy then has as many frames as the source, one every 1 / rate seconds.
        rate = Fraction(probe.frame_count) / (_stream_timing(path)[1] or Fraction(str(probe.duration)))
        frame_count = probe.frame_count
    else:
        rate, frame_count = exact_frame_rate(path), probe.frame_count
    width, height = proxy_size(probe.width, probe.height, settings.short_side)
    directory.mkdir(parents=True, exist_ok=True)
    shard_count = -(-frame_count // settings.frames_per_shard)
    shards = []
    with make_progress() as progress:
        task = progress.add_task(f"proxy {video_id} {width}x{height}", total=frame_count,
                                 visible=show_progress)  # fmt: skip
        for index in range(shard_count):
            first = index * settings.frames_per_shard
            frames = min(settings.frames_per_shard, frame_count - first)
            if _check_shard(directory, index, frames, None) is not None:  # missing or damaged: (re)cut it
                _cut_shard(path, directory, index, first, frames, rate, width, height, settings,
                           lambda: progress.advance(task), resample=resample)  # fmt: skip
            else:
                progress.advance(task, frames)
            shards.append({"index": index, "first_frame": first, "frames": frames,
                           "bytes": _shard_path(directory, index).stat().st_size})  # fmt: skip
    atomic_write_json(
        directory / SIDECAR_NAME,
        {
            "format": PROXY_FORMAT,
            "video_id": video_id,
            "source": source,
            "settings": asdict(settings),
            "width": width,
            "height": height,
            "fps": float(rate) if resample else probe.fps,
            "frame_count": frame_count,
            # identity: proxy frame i is original frame i; resampled: the source frame shown at i / fps
            "frame_mapping": "resampled" if resample else "identity",
            **({"resampled_fps": f"{rate.numerator}/{rate.denominator}", "source_frame_count": probe.frame_count}
               if resample else {}),
            "source_size": [probe.width, probe.height],
            "shards": shards,
        },
    )


def _cut_shard(source: Path, directory: Path, index: int, first: int, frames: int, rate: Fraction,
               width: int, height: int, settings: ProxySettings, advance: Any, *,
               resample: bool = False) -> None:  # fmt: skip
    """One ffmpeg run: frames [first, first + frames) scaled, as MJPEG on a pipe, split into a shard.

    ``resample``: frame ``i`` is the source frame on screen at ``i / rate`` s (a variable-rate source).
    """
    import ffmpeg
    import imageio_ffmpeg

    if resample:
        command = _resampling_command(source, first, frames, rate, width, height, settings)
    else:
        input_options: dict[str, Any] = {}
        if first:
            # Accurate input seeking drops frames before the time given; half a frame early lands on `first`.
            input_options["ss"] = f"{float((first - Fraction(1, 2)) / rate):.6f}"
        command = (
            ffmpeg.input(str(source), **input_options)
            .video.filter("scale", width, height, flags="area")
            .output("pipe:", format="image2pipe", vcodec="mjpeg", pix_fmt="yuvj420p",
                    fps_mode="passthrough", **{"q:v": settings.jpeg_qscale, "frames:v": frames})  # fmt: skip
            .global_args("-nostdin", "-hide_banner", "-loglevel", "error")
            .compile(cmd=imageio_ffmpeg.get_ffmpeg_exe())
        )
    # The frame table goes first: a shard without one is never mistaken for a finished shard.
    _offsets_path(directory, index).unlink(missing_ok=True)
    offsets = [0]
    with tempfile.TemporaryFile() as errors, atomic_path(_shard_path(directory, index)) as tmp:
        with open(tmp, "wb") as shard:
            process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=errors)
            try:
                for jpeg in split_jpeg_stream(process.stdout):
                    shard.write(jpeg)
                    offsets.append(offsets[-1] + len(jpeg))
                    advance()
            finally:
                process.stdout.close()
                returncode = process.wait()
            shard.flush()
            os.fsync(shard.fileno())
        if returncode != 0:
            errors.seek(0)
            message = " ".join(errors.read().decode(errors="replace").split())[-300:]
            raise WtoursError(f"{source.name}: ffmpeg failed on frames {first}..{first + frames - 1}: {message}")
        if len(offsets) - 1 != frames:
            raise WtoursError(
                f"{source.name}: expected {frames} frames from {first} but ffmpeg gave {len(offsets) - 1}; "
                "is the video variable frame rate or truncated?"
            )
    with atomic_path(_offsets_path(directory, index)) as tmp, open(tmp, "wb") as handle:
        np.save(handle, np.asarray(offsets, dtype=np.int64))


def _resampling_command(source: Path, first: int, frames: int, rate: Fraction, width: int, height: int,
                        settings: ProxySettings) -> list[str]:  # fmt: skip
    """ffmpeg's ``fps`` filter on the source's own timestamps, kept absolute (``-copyts``), so every shard
    lands on the same grid as a single pass would: with ``round=up`` grid slot ``n`` takes the last frame
    whose time is at most ``n / rate``, and ``trim`` keeps slots from ``first`` on. The input is not
    trimmed at the seek point (``-noaccurate_seek``): the frame on screen at the shard's first slot may
    start long before it. The seek itself lands a second early, on the key frame before.
    """
    import ffmpeg
    import imageio_ffmpeg

    origin = float(_stream_timing(source)[0])
    seek = max(0.0, float(first / rate) - 1.0)  # -ss counts from the file's start, whatever -copyts keeps
    video = ffmpeg.input(str(source), ss=f"{seek:.6f}", copyts=None, noaccurate_seek=None).video
    if origin:
        video = video.filter("setpts", f"PTS-{origin:.9f}/TB")  # grid slot 0 is the stream's first frame
    return (
        video.filter("fps", fps=f"{rate.numerator}/{rate.denominator}", round="up")
        .filter("trim", start_pts=first)
        .filter("scale", width, height, flags="area")
        .output("pipe:", format="image2pipe", vcodec="mjpeg", pix_fmt="yuvj420p",
                **{"q:v": settings.jpeg_qscale, "frames:v": frames})  # fmt: skip
        .global_args("-nostdin", "-hide_banner", "-loglevel", "error")
        .compile(cmd=imageio_ffmpeg.get_ffmpeg_exe())
    )


def _stream_timing(path: Path) -> tuple[Fraction, Fraction]:
    """(when the first frame is stamped, how long the stream lasts or 0 when the header does not say),
    exactly, in seconds."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        time_base = stream.time_base or Fraction(1, 1)
        return Fraction(stream.start_time or 0) * time_base, Fraction(stream.duration or 0) * time_base


def split_jpeg_stream(stream: IO[bytes], chunk_size: int = 1 << 20) -> Iterator[bytes]:
    """Split concatenated baseline JPEGs (ffmpeg's image2pipe) into one ``bytes`` per image."""
    buffer = bytearray()
    start = 0
    while True:
        chunk = stream.read(chunk_size)
        if not chunk:
            break
        buffer += chunk
        while True:
            end = _jpeg_end(buffer, start)
            if end < 0:
                break
            yield bytes(buffer[start:end])
            start = end
        del buffer[:start]  # compact once per chunk, not once per image
        start = 0
    if buffer:
        raise WtoursError(f"ffmpeg's JPEG stream ended inside an image ({len(buffer)} stray bytes)")


def _jpeg_end(buffer: bytearray, start: int) -> int:
    """Index just past the JPEG starting at ``start``, or -1 when it is not all in ``buffer`` yet."""
    if len(buffer) - start < 4:
        return -1
    if buffer[start : start + 2] != b"\xff\xd8":
        raise WtoursError("ffmpeg's JPEG stream is out of step (no start-of-image marker)")
    position = start + 2
    # Walk the header segments to the scan: inside entropy-coded data every 0xFF byte is followed by
    # 0x00 or a restart marker, so the first FF D9 after the scan header is the end of this image.
    while position + 4 <= len(buffer):
        if buffer[position] != 0xFF:
            raise WtoursError("ffmpeg's JPEG stream is malformed (expected a marker)")
        marker = buffer[position + 1]
        length = int.from_bytes(buffer[position + 2 : position + 4], "big")
        if marker == 0xDA:
            end = buffer.find(b"\xff\xd9", position + 2 + length)
            return -1 if end < 0 else end + 2
        position += 2 + length
    return -1


def _shard_path(directory: Path, index: int) -> Path:
    return directory / f"shard-{index:05d}.jpg.bin"


def _offsets_path(directory: Path, index: int) -> Path:
    return directory / f"shard-{index:05d}.offsets.npy"


def _remove_shards(directory: Path) -> None:
    for path in directory.glob("shard-*"):
        path.unlink()


def _check_shard(directory: Path, index: int, frames: int, expected_bytes: int | None) -> str | None:
    """Why shard ``index`` is unusable, or None when it is fine."""
    shard, offsets_file = _shard_path(directory, index), _offsets_path(directory, index)
    problem = None
    if not shard.is_file() or not offsets_file.is_file():
        problem = f"shard {index} missing"
    else:
        try:
            offsets = np.load(offsets_file)
        except (OSError, ValueError):
            offsets = None
        size = shard.stat().st_size
        if offsets is None or len(offsets) != frames + 1:
            problem = f"shard {index} has a damaged frame table"
        elif size != offsets[-1] or (expected_bytes is not None and size != expected_bytes):
            problem = f"shard {index} is {size} bytes, expected {int(offsets[-1])} (truncated or overwritten)"
        else:
            with open(shard, "rb") as handle:
                for frame in {0, frames - 1}:
                    handle.seek(int(offsets[frame]))
                    if decode_jpeg(handle.read(int(offsets[frame + 1] - offsets[frame]))) is None:
                        problem = f"frame {frame} of shard {index} does not decode"
    return problem


def decode_jpeg(data: bytes, *, gray_reduced: int = 1) -> np.ndarray | None:
    """RGB uint8 (H, W, 3) of one JPEG, or a grayscale (H/n, W/n) when ``gray_reduced`` is 2, 4 or 8.

    Reduced grayscale lets libjpeg skip most of the inverse DCT: cheap thumbnails for motion scores.
    Returns None when the bytes do not decode.
    """
    import cv2

    flags = {1: cv2.IMREAD_COLOR_RGB, 2: cv2.IMREAD_REDUCED_GRAYSCALE_2, 4: cv2.IMREAD_REDUCED_GRAYSCALE_4,
             8: cv2.IMREAD_REDUCED_GRAYSCALE_8}[gray_reduced]  # fmt: skip
    return cv2.imdecode(np.frombuffer(data, dtype=np.uint8), flags)


class ProxyReader:
    """Random access to a proxy's frames. Opens shard files lazily, reads with ``os.pread``.

    ``pread`` carries no file position, so a reader is safe to share across forked DataLoader workers;
    each process still opens its own descriptors on first use (none are opened in ``__init__``).
    """

    def __init__(self, directory: str | os.PathLike[str], *, rebuild_hint: str = "wtours curate") -> None:
        self.directory = Path(directory)
        sidecar = read_json(self.directory / SIDECAR_NAME)
        if sidecar is None or sidecar.get("format") != PROXY_FORMAT:
            raise WtoursError(f"no finished proxy in {self.directory}; run `{rebuild_hint}`")
        self.sidecar = sidecar
        self.rebuild_hint = rebuild_hint
        self.width, self.height = int(sidecar["width"]), int(sidecar["height"])
        self.frame_count = int(sidecar["frame_count"])
        self.frames_per_shard = int(sidecar["settings"]["frames_per_shard"])
        self._offsets: dict[int, np.ndarray] = {}
        self._files: dict[int, int] = {}
        self._pid = os.getpid()

    @property
    def source_frame_count(self) -> int:
        """Frames of the source video (equal to ``frame_count`` unless the proxy was resampled)."""
        return int(self.sidecar.get("source_frame_count", self.frame_count))

    def frames_shown(self, source_times: np.ndarray, until: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(which source frame each proxy frame shows, when it is shown) for the proxy frames before ``until``.

        ``source_times`` are the source frames' presentation times in seconds from the first frame (an
        analysis's ``frames.time``) and ``until`` when the last of them ends (None: one proxy frame after it
        starts). Proxy frame ``i`` is source frame ``i``, or for a resampled proxy the source frame on screen
        at ``i / fps``: the last one shown at or before that time, as ffmpeg's ``fps`` filter (``round=up``)
        picks it. Everything that numbers source frames (cuts, blank frames) reaches the proxy this way.
        """
        source_times = np.asarray(source_times, dtype=np.float64)
        if self.sidecar.get("frame_mapping") != "resampled":
            count = min(len(source_times), self.frame_count)
            return np.arange(count, dtype=np.int64), source_times[:count]
        rate = Fraction(self.sidecar["resampled_fps"])
        if until is None:
            until = float(source_times[-1]) + 1 / float(rate) if len(source_times) else 0.0
        # Times are floats from integer timestamps: a thousandth of a proxy frame absorbs their rounding.
        count = min(self.frame_count, max(0, math.ceil(until * rate - 1e-3)))
        proxy_times = np.arange(count, dtype=np.float64) / float(rate)
        tolerance = 1e-3 / float(rate)
        shown = np.searchsorted(source_times, proxy_times + tolerance, side="right") - 1
        return shown.astype(np.int64), proxy_times

    def read_bytes(self, frame: int) -> bytes:
        if not 0 <= frame < self.frame_count:
            raise IndexError(f"frame {frame} outside the proxy's {self.frame_count} frames")
        if self._pid != os.getpid():  # a forked worker: open its own descriptors
            self._files, self._pid = {}, os.getpid()
        shard, local = divmod(frame, self.frames_per_shard)
        offsets = self._offsets.get(shard)
        if offsets is None:
            offsets = self._offsets[shard] = np.load(_offsets_path(self.directory, shard))
        descriptor = self._files.get(shard)
        if descriptor is None:
            descriptor = self._files[shard] = os.open(_shard_path(self.directory, shard), os.O_RDONLY)
        start, end = int(offsets[local]), int(offsets[local + 1])
        data = os.pread(descriptor, end - start, start)
        if len(data) != end - start:
            raise self._corrupt(frame, "shard truncated")
        return data

    def read(self, frames: np.ndarray | list[int], *, channels_first: bool = False,
             out: np.ndarray | None = None) -> np.ndarray:  # fmt: skip
        """RGB uint8 array (len(frames), H, W, 3), or (len(frames), 3, H, W) with ``channels_first``; decoded
        into ``out`` when given (a slot of a batch: no copy afterwards).

        ``channels_first`` lays out each image's three planes as it decodes (OpenCV's SIMD split, about a
        tenth of the decode): what a model wants, without a per-element transposing copy later (a
        ``permute(...).contiguous()`` or a DataLoader's stacking of permuted views costs more than the decode).
        """
        shape = (len(frames), 3, self.height, self.width) if channels_first else (len(frames), self.height,
                                                                                   self.width, 3)  # fmt: skip
        if out is None:
            out = np.empty(shape, dtype=np.uint8)
        elif out.shape != shape or out.dtype != np.uint8:
            raise ValueError(f"out is {out.dtype} {out.shape}, frames need uint8 {shape}")
        for slot, frame in enumerate(frames):
            image = decode_jpeg(self.read_bytes(int(frame)))
            if image is None or image.shape != (self.height, self.width, 3):
                raise self._corrupt(int(frame), "does not decode")
            if channels_first:
                import cv2

                planes = cv2.split(image, list(out[slot]))  # written into the three planes of out[slot]
                if not np.may_share_memory(planes[0], out[slot]):  # an OpenCV that allocated them anew
                    out[slot] = image.transpose(2, 0, 1)
            else:
                out[slot] = image
        return out

    def thumbnail(self, frame: int, reduce: int = 8) -> np.ndarray:
        image = decode_jpeg(self.read_bytes(frame), gray_reduced=reduce)
        if image is None:
            raise self._corrupt(frame, "does not decode")
        return image

    def close(self) -> None:
        for descriptor in self._files.values():
            os.close(descriptor)
        self._files = {}

    def _corrupt(self, frame: int, what: str) -> WtoursError:
        return WtoursError(f"proxy {self.directory}: frame {frame} {what} (corrupt proxy); "
                           f"run `{self.rebuild_hint}` to detect and rebuild it")  # fmt: skip


def exact_frame_rate(path: Path) -> Fraction:
    """The stream's frame rate as an exact fraction (59.94 is 60000/1001; a rounded float drifts)."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate
    if not rate:
        raise WtoursError(f"{path.name}: the video stream does not state its frame rate")
    return Fraction(rate)
