"""Clip-loading throughput: the released DoRA loader's approach vs. wtours' training proxies, and the JPEG-decode
limit of the proxy measured in the same run.

One synthetic 4K60 H.264 source (detailed, noisy, a keyframe every 2 s like a YouTube download), clips of
T=8 frames at stride 60 starting anywhere (DoRA's sampling), read through a torch DataLoader with 1 and 2
workers in batches of 16 clips (DoRA's per-GPU batch). For every configuration: clips/s and the peak memory
(PSS, main process + workers).

  baseline-4k    open the 4K file in every sample, seek and decode each frame (as decord does in DoRA)
  h264-gop60     320-px H.264 proxy, keyframe every 60 frames, decoder opened once per worker
  h264-intra     320-px H.264 proxy, every frame a keyframe, decoder opened once per worker
  jpeg-shards    wtours' proxy (pipelines/proxy.py) through ClipDataset + collate_clips: every frame a JPEG,
                 read by offset, a batch decoded into one shared buffer handed over without a copy
  decode limit   the same shards' JPEGs of the same kind of clips, held in memory, decoded by as many processes
                 as workers with nothing else: no I/O, no batching, no hand-over (OpenCV's and torchvision's
                 libjpeg-turbo; the faster counts)
  nvJPEG         (a CUDA GPU only) ClipDataset(output="jpeg") + decode_clips on the GPU, and its decode limit

    .venv/bin/python benchmarks/bench_loader.py                 # ~4 min on 2 cores
    .venv/bin/python benchmarks/bench_loader.py --seconds 6 --baseline-clips 4 --proxy-seconds 5

Prints a Markdown table (and writes it with the raw numbers to --out as JSON).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset, RandomSampler

from wtours.pipelines.clip_index import ClipSpec
from wtours.pipelines.clipdata import ClipDataset, collate_clips, decode_clips
from wtours.pipelines.curate import CurateOptions, curate_video
from wtours.pipelines.proxy import ProxySettings, proxy_size
from wtours.store import Store

T, STRIDE, SHORT_SIDE = 8, 60, 320


def make_4k_source(path: Path, seconds: float) -> None:
    """Detailed, moving, noisy 3840x2160 at 60 fps: test pattern + per-frame grain, GOP 120 (2 s).

    About 35 Mbit/s, in the range of YouTube's 4K60 H.264 streams the Walking Tours are fetched from."""
    import imageio_ffmpeg

    subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-nostdin", "-loglevel", "error",
         "-f", "lavfi", "-i", f"testsrc2=size=3840x2160:rate=60:duration={seconds}",
         "-vf", "noise=alls=6:allf=t", "-c:v", "libx264", "-preset", "veryfast", "-crf", "23",
         "-g", "120", "-pix_fmt", "yuv420p", str(path)],
        check=True,
    )  # fmt: skip


def make_h264_proxy(source: Path, target: Path, width: int, height: int, gop: int) -> None:
    import imageio_ffmpeg

    subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-nostdin", "-loglevel", "error", "-i", str(source),
         "-vf", f"scale={width}:{height}:flags=area", "-c:v", "libx264", "-preset", "veryfast", "-crf", "20",
         "-g", str(gop), "-keyint_min", str(gop), "-sc_threshold", "0", "-pix_fmt", "yuv420p", str(target)],
        check=True,
    )  # fmt: skip


class H264Clips(Dataset):
    """Clips from an H.264 file by frame number, decoding from the keyframe before each frame unless the
    decoder is already in that GOP (decord's strategy). ``reopen_per_sample`` mimics the DoRA release."""

    def __init__(self, path: Path, starts: np.ndarray, gop: int, *, reopen_per_sample: bool) -> None:
        self.path, self.starts, self.gop, self.reopen = path, starts, gop, reopen_per_sample
        self._container = None

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, i: int) -> dict[str, Any]:
        import av

        if self._container is None or self.reopen:
            if self._container is not None:
                self._container.close()
            self._container = av.open(str(self.path))
            self._container.streams.video[0].thread_type = "AUTO"
            self._position = -1
            self._frames = None
        stream = self._container.streams.video[0]
        rate, time_base = Fraction(stream.average_rate), stream.time_base
        images = []
        for target in int(self.starts[i]) + STRIDE * np.arange(T):
            keyframe = target // self.gop * self.gop
            if not keyframe <= self._position < target:
                self._container.seek(int(keyframe / rate / time_base), stream=stream, backward=True)
                self._frames = self._container.decode(stream)
            for frame in self._frames:
                self._position = round(frame.pts * time_base * rate)
                if self._position >= target:
                    images.append(frame.to_ndarray(format="rgb24"))
                    break
        return {"frames": torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2), "start_frame": int(self.starts[i])}


class PeakMemory:
    """Samples the proportional set size of this process and its children once a second; keeps the peak.

    Reading a process's PSS walks its page tables: 10-20 ms for a torch worker here (psutil's
    ``memory_full_info``; ``/proc/<pid>/smaps_rollup`` costs the same). Sampling three
    processes every 50 ms took a third of a core from the loader being measured; once a second costs a few %
    (the batch buffers are all allocated by the first seconds, so the peak is still seen).
    """

    def __init__(self) -> None:
        import psutil

        self.process, self.peak, self._stop = psutil.Process(), 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _total(self) -> int:
        import psutil

        total = 0
        for process in [self.process, *self.process.children(recursive=True)]:
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):  # a worker just exited
                total += process.memory_full_info().pss
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._total())
            self._stop.wait(1.0)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def measure(dataset: Dataset, workers: int, *, clips: int | None, seconds: float | None, batch_size: int,
            collate_fn: Any = None, device: str | None = None) -> dict[str, float]:  # fmt: skip
    """clips/s after a warm-up batch per worker, reading random clips until ``clips`` or ``seconds``; with
    ``device``, the batch's JPEGs are decoded there (decode_clips) as a trainer would."""
    sampler = RandomSampler(dataset, replacement=True, num_samples=10**6, generator=torch.Generator().manual_seed(0))
    loader = DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers, prefetch_factor=2,
                        collate_fn=collate_fn)  # fmt: skip
    with PeakMemory() as memory:
        iterator = iter(loader)
        for _ in range(workers):  # warm-up: workers started, decoders opened
            next(iterator)
        done, start = 0, time.perf_counter()
        while (clips is None or done < clips) and (seconds is None or time.perf_counter() - start < seconds):
            batch = next(iterator)
            frames = decode_clips(batch["jpeg"], device) if device else batch["frames"]
            assert frames.shape[1] == T
            done += frames.shape[0]
        if device:
            torch.cuda.synchronize()
        elapsed = time.perf_counter() - start
        del iterator
    return {"clips": done, "seconds": round(elapsed, 2), "clips_per_s": round(done / elapsed, 2),
            "peak_pss_mb": round(memory.peak / 2**20)}  # fmt: skip


def _decode_only(jpegs: list[bytes], decoder: str, seconds: float, queue) -> None:
    """One decoding process of the decode limit: the JPEGs in memory, decoded one clip (T images) at a time."""
    import cv2

    torch.set_num_threads(1)
    if decoder == "torchvision":
        from torchvision.io import decode_jpeg

        tensors = [torch.frombuffer(bytearray(data), dtype=torch.uint8) for data in jpegs]
    images, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for first in range(0, len(jpegs) - T + 1, T):
            if decoder == "torchvision":
                decode_jpeg(tensors[first : first + T])  # batched
            else:
                for data in jpegs[first : first + T]:
                    cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR_RGB)
            images += T
    queue.put((images, time.perf_counter() - start))


def decode_limit(dataset: ClipDataset, processes: int, decoder: str, seconds: float) -> float:
    """clips/s when ``processes`` processes do nothing but decode the JPEGs of random clips of ``dataset``."""
    import multiprocessing

    rng = np.random.default_rng(1)
    reader = dataset._reader(0)
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    workers = []
    for _ in range(processes):
        starts = [dataset.locate(int(i))[1] for i in rng.integers(0, len(dataset), 64)]
        jpegs = [reader.read_bytes(int(s + STRIDE * t)) for s in starts for t in range(T)]
        workers.append(context.Process(target=_decode_only, args=(jpegs, decoder, seconds, queue)))
    for worker in workers:
        worker.start()
    results = [queue.get() for _ in workers]
    for worker in workers:
        worker.join()
    return sum(images / elapsed for images, elapsed in results) / T


def nvjpeg_limit(dataset: ClipDataset, batch_size: int, seconds: float) -> float:
    """clips/s of nvJPEG decoding batches of the same clips' JPEGs already in memory."""
    rng = np.random.default_rng(1)
    batches = [collate_clips([dataset[int(i)] for i in rng.integers(0, len(dataset), batch_size)])["jpeg"]
               for _ in range(4)]  # fmt: skip
    decode_clips(batches[0], "cuda")
    torch.cuda.synchronize()
    clips, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for jpeg in batches:
            decode_clips(jpeg, "cuda")
            clips += len(jpeg)
    torch.cuda.synchronize()
    return clips / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0, help="Length of the synthetic 4K60 source.")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--batch-size", type=int, default=16, help="Clips per batch (DoRA: 16 per GPU).")
    parser.add_argument("--baseline-clips", type=int, default=4, help="Clips read per baseline configuration.")
    parser.add_argument("--proxy-seconds", type=float, default=8.0, help="Seconds of reading per proxy config.")
    parser.add_argument("--workdir", type=Path, default=None, help="Keep the source and proxies here.")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/bench_loader.json"))
    args = parser.parse_args()

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="wtours-bench-loader-"))
    store = Store.at(workdir / "data")
    store.videos_dir.mkdir(parents=True, exist_ok=True)
    source = store.video_path("bench4k")
    if not source.is_file():
        started = time.perf_counter()
        make_4k_source(source, args.seconds)
        print(f"4K60 source: {time.perf_counter() - started:.0f} s to encode", file=sys.stderr)
    n_frames = round(args.seconds * 60)
    folder = store.analysis_dir("bench4k")
    folder.mkdir(parents=True, exist_ok=True)
    frames = np.arange(n_frames)
    pd.DataFrame({"frame": frames, "time": frames / 60, "lightness": 50.0, "luma": 0.5, "blank": False,
                  "frozen": False}).to_parquet(folder / "frames.parquet")  # fmt: skip
    pd.DataFrame({"shot": [0], "start_frame": [0], "end_frame": [n_frames]}).to_parquet(folder / "shots.parquet")

    # build_s is None when a proxy from an earlier run (same --workdir) was reused.
    build: dict[str, dict[str, float | None]] = {}
    jpeg_dir = store.proxy_dir("bench4k", SHORT_SIDE)
    existed, started = jpeg_dir.exists(), time.perf_counter()
    curate_video(store, "bench4k", CurateOptions(ClipSpec(T, STRIDE), ProxySettings(short_side=SHORT_SIDE)),
                 show_progress=False)  # fmt: skip
    build["jpeg-shards"] = {"build_s": None if existed else time.perf_counter() - started,
                            "bytes": sum(p.stat().st_size for p in jpeg_dir.glob("shard-*.jpg.bin"))}  # fmt: skip
    width, height = proxy_size(3840, 2160, SHORT_SIDE)
    for name, gop in (("h264-gop60", 60), ("h264-intra", 1)):
        target = workdir / f"{name}.mp4"
        existed, started = target.is_file(), time.perf_counter()
        if not existed:
            make_h264_proxy(source, target, width, height, gop)
        build[name] = {"build_s": None if existed else time.perf_counter() - started, "bytes": target.stat().st_size}

    jpeg = ClipDataset(store.root, ["bench4k"], frames_per_clip=T, stride=STRIDE, mode="any_start")
    starts = np.array([jpeg.locate(i)[1] for i in range(len(jpeg))])
    candidates: dict[str, tuple[Dataset, dict[str, Any]]] = {
        "baseline-4k": (H264Clips(source, starts, 120, reopen_per_sample=True), {"clips": args.baseline_clips}),
        "h264-gop60": (H264Clips(workdir / "h264-gop60.mp4", starts, 60, reopen_per_sample=False), {}),
        "h264-intra": (H264Clips(workdir / "h264-intra.mp4", starts, 1, reopen_per_sample=False), {}),
        "jpeg-shards": (jpeg, {"collate_fn": collate_clips}),
    }
    gpu = torch.cuda.is_available()
    if gpu:
        as_jpeg = ClipDataset(store.root, ["bench4k"], frames_per_clip=T, stride=STRIDE, mode="any_start",
                              output="jpeg")  # fmt: skip
        candidates["jpeg-shards, nvJPEG"] = (as_jpeg, {"collate_fn": collate_clips, "device": "cuda"})
    results = []
    for name, (dataset, options) in candidates.items():
        for workers in args.workers:
            limit = options.get("clips")
            batch_size = 1 if limit else args.batch_size  # the baseline reads a few clips, one at a time
            row = {"loader": name, "workers": workers, "batch_size": batch_size,
                   **measure(dataset, workers, clips=limit, seconds=None if limit else args.proxy_seconds,
                             batch_size=batch_size, collate_fn=options.get("collate_fn"),
                             device=options.get("device"))}  # fmt: skip
            results.append(row)
            print(json.dumps(row), file=sys.stderr)
    limits = {}
    for workers in args.workers:
        rates = {decoder: decode_limit(jpeg, workers, decoder, args.proxy_seconds / 2)
                 for decoder in ("opencv", "torchvision")}  # fmt: skip
        limits[workers] = max(rates.values())
        print(json.dumps({"decode_limit_workers": workers, **rates}), file=sys.stderr)
    nvjpeg = nvjpeg_limit(as_jpeg, args.batch_size, args.proxy_seconds) if gpu else None

    baseline = {row["workers"]: row["clips_per_s"] for row in results if row["loader"] == "baseline-4k"}
    lines = [f"Clips of T={T} at stride {STRIDE} from a {args.seconds:g} s 3840x2160 60 fps H.264 source, batches of "
             f"{args.batch_size}; proxies {width}x{height}; {platform.processor() or platform.machine()}, "
             f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the end.", "",
             "| loader | workers | clips/s | x baseline | % of decode limit | peak memory (PSS, MB) | "
             "proxy size per frame |", "|---|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for row in results:
        size = build.get(row["loader"].split(",")[0], {}).get("bytes")
        per_frame = f"{size / n_frames / 1024:.0f} KiB" if size else "(4K source)"
        speedup = row["clips_per_s"] / baseline[row["workers"]]
        share = f"{row['clips_per_s'] / limits[row['workers']]:.0%}" if row["loader"] == "jpeg-shards" else ""
        lines.append(f"| {row['loader']} | {row['workers']} | {row['clips_per_s']:.2f} | {speedup:.0f}x | {share} | "
                     f"{row['peak_pss_mb']} | {per_frame} |")  # fmt: skip
    for workers, limit in limits.items():
        lines.append(f"| JPEG decode limit ({workers} process{'es' if workers > 1 else ''}, no I/O, no hand-over) | "
                     f"{workers} | {limit:.2f} | {limit / baseline[workers]:.0f}x | 100% | | |")  # fmt: skip
    if nvjpeg is not None:
        lines.append(f"| nvJPEG decode limit (GPU, batches of {args.batch_size}) | | {nvjpeg:.2f} | | | | |")
    build_costs = [f"{name} " + (f"{values['build_s'] / args.seconds:.1f} s" if values["build_s"] else "(reused)")
                   for name, values in build.items()]  # fmt: skip
    lines += ["", "Proxy build time per second of 4K60 source: " + ", ".join(build_costs)]
    table = "\n".join(lines)
    print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"results": results, "build": build, "decode_limit": limits, "nvjpeg_limit": nvjpeg,
                                    "table": table}, indent=2) + "\n")


if __name__ == "__main__":
    main()
