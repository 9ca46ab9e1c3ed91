"""Benchmark of `wtours analyze` on 4K60 H.264, VP9 and AV1: how close the one-pass analysis gets to each codec's
decode floor.

    python benchmarks/bench_analyze.py                        # makes the three files in benchmarks/.cache once
    python benchmarks/bench_analyze.py --codecs av1 --repeat 1
    python benchmarks/bench_analyze.py --video my_4k60.webm   # any file(s) instead

The three files hold the same content: the embedded walking-tour sample (real photographs, moving people) rendered
at 720p, upscaled to 4K with film grain, encoded by the encoders imageio-ffmpeg's ffmpeg carries: libx264
(veryfast, 45 Mbit/s), libvpx-vp9 (good quality, cpu-used 4, 20 Mbit/s target) and SVT-AV1 (preset 8, 20 Mbit/s
target), 2-s keyframe interval, at about YouTube's 4K60 rates (YouTube serves 4K60 as VP9 or AV1 only). Flat test
patterns decode unrealistically fast. PyAV decodes AV1 with libdav1d, VP9 and H.264 with FFmpeg's own decoders.

Passes, each in a fresh process (peak memory is per pass), the fastest of ``--repeat`` rounds; one-off start-up
(imports, loading the detector) is done before the clock starts:

- decode floor: PyAV threaded decoding (FFmpeg's thread choice), frames thrown away (nothing converted);
- decode + 256 px: the frame iterator alone, each frame scaled to the analysis size (one thread);
- lightness + shots: ``analyze_videos`` without a detector (the real code path, merge included);
- full: the same with the detector at 1 fps (default ``yolo11n.yaml``: yolo11n's network with random
  weights — the compute of the real model, no download);
- on the first codec: lightness + shots on the first half (memory does not grow with the video) and
  PySceneDetect alone (``detect-content``, its own decode, OpenCV backend);
- with a CUDA GPU whose NVDEC decodes the stream: the floor and both analysis passes decoding on the GPU.

"cores busy" is CPU time over wall time: the floor leaves a machine's cores partly idle, and an analysis pass
that overlaps its work with decoding fills them (see the README, "Speed").
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CACHE = Path(__file__).resolve().parent / ".cache"

# Encoder options per codec: the same content at about YouTube's 4K60 rates, a keyframe every 2 s.
ENCODERS = {
    "h264": (".mp4", ["-c:v", "libx264", "-preset", "veryfast", "-b:v", "45M", "-maxrate", "45M", "-bufsize", "100M",
                      "-movflags", "+faststart"]),
    "vp9": (".webm", ["-c:v", "libvpx-vp9", "-deadline", "good", "-cpu-used", "4", "-row-mt", "1", "-b:v", "20M"]),
    "av1": (".mp4", ["-c:v", "libsvtav1", "-preset", "8", "-b:v", "20M", "-svtav1-params", "log-level=1",
                     "-movflags", "+faststart"]),
}  # fmt: skip
CODEC_TITLES = {"h264": "H.264", "vp9": "VP9", "av1": "AV1 (dav1d)"}


def make_videos(codecs: list[str], seconds: float, width: int, height: int, fps: int) -> dict[str, Path]:
    """The walking sample at 720p, upscaled to ``width`` x ``height`` with grain, in each codec (cached)."""
    import imageio_ffmpeg

    from wtours.sample import render_walking_tour

    CACHE.mkdir(parents=True, exist_ok=True)
    paths = {codec: CACHE / f"walk-{width}x{height}-{fps}fps-{seconds:g}s-{codec}{ENCODERS[codec][0]}"
             for codec in codecs}  # fmt: skip
    missing = [codec for codec, path in paths.items() if not path.is_file()]
    if missing:
        with tempfile.TemporaryDirectory() as tmp:
            source = Path(tmp) / "walk720.mp4"
            render_walking_tour(source, width=1280, height=720, fps=fps, seconds=seconds, seed=0)
            for codec in missing:
                print(f"making {paths[codec]} ...", file=sys.stderr)
                partial = paths[codec].with_name(".partial-" + paths[codec].name)
                command = [
                    imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostdin", "-y",
                    "-i", str(source),
                    "-vf", f"scale={width}:{height}:flags=lanczos,noise=alls=6:allf=t,unsharp=5:5:0.6",
                    *ENCODERS[codec][1], "-pix_fmt", "yuv420p", "-g", str(2 * fps), str(partial),
                ]  # fmt: skip
                subprocess.run(command, check=True)
                partial.replace(paths[codec])
    return paths


def decode_floor(video: str, decoder: str | None = None) -> int:
    """Every frame decoded, none converted: PyAV's threaded decoding, or a named decoder (NVDEC)."""
    import av

    from wtours.frames import open_decoder

    with av.open(video) as container:
        stream = container.streams.video[0]
        if decoder is None:
            stream.thread_type = "AUTO"
            return sum(1 for _ in container.decode(stream))
        context = open_decoder(decoder, stream, 0, video)
        return sum(len(context.decode(packet if packet.size else None)) for packet in container.demux(stream))


def scale_only(video: str) -> int:
    from wtours.frames import iter_frames, scaled_size, stream_info

    info = stream_info(video)
    size = scaled_size(info.width, info.height, 256)
    return sum(1 for _ in iter_frames(video, {"small": size}))


def analyze_pass(video: str, detector: str | None, duration: float | None = None, decode: str = "cpu") -> int:
    from wtours.analysis.run import analyze_videos
    from wtours.analysis.settings import AnalysisSettings
    from wtours.analysis.window import VideoInput
    from wtours.store import Store

    settings = AnalysisSettings(detector=detector, window_seconds=10_000, duration=duration, decode=decode)
    with tempfile.TemporaryDirectory() as tmp:
        [result] = analyze_videos([VideoInput("bench", Path(video))], Store.at(tmp), settings, show_progress=False)
        if not result.ok:
            raise SystemExit(f"analysis failed: {result.error}")
        return result.summary["analyzed"]["frames"]


def pyscenedetect_alone(video: str) -> int:
    from scenedetect import ContentDetector, SceneManager, open_video

    stream = open_video(video)
    manager = SceneManager()
    manager.add_detector(ContentDetector())
    return manager.detect_scenes(stream)


PASSES = {
    "decode floor": decode_floor,
    "decode + 256 px": scale_only,
    "lightness + shots": analyze_pass,
    "full, detector 1 fps": analyze_pass,
    "lightness + shots, first half": analyze_pass,
    "PySceneDetect detect-content": pyscenedetect_alone,
    "NVDEC decode floor": decode_floor,
    "NVDEC lightness + shots": analyze_pass,
    "NVDEC full, detector 1 fps": analyze_pass,
}


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)  # all threads of this process
    return usage.ru_utime + usage.ru_stime


def _start_up(name: str, args: tuple) -> None:
    """One-off costs kept out of the timing (they do not grow with hours of video): imports and the
    detector's model, which a worker loads once for all its windows."""
    import cv2  # noqa: F401
    import pyarrow.parquet  # noqa: F401  (pandas loads it on the first Parquet file)
    import scenedetect  # noqa: F401

    import wtours.analysis.run  # noqa: F401

    if "full" in name:
        import numpy as np

        from wtours.analysis.detectors import load_detector
        from wtours.analysis.settings import AnalysisSettings

        defaults = AnalysisSettings()
        detector = load_detector(
            args[1], defaults.detector_confidence, defaults.detector_width, None, defaults.detector_threads
        )
        detector.detect([np.zeros((360, 640, 3), np.uint8)])  # ultralytics sets up its predictor on first use


def _measure(name: str, args: tuple, queue) -> None:
    _start_up(name, args)
    began, cpu_began = time.perf_counter(), _cpu_seconds()
    frames = PASSES[name](*args)
    seconds, cpu = time.perf_counter() - began, _cpu_seconds() - cpu_began
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    queue.put((frames, seconds, cpu, peak_mib))


def run_once(name: str, args: tuple) -> dict:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_measure, args=(name, args, queue))
    process.start()
    frames, seconds, cpu, peak = queue.get()
    process.join()
    return {"pass": name, "frames": frames, "seconds": seconds, "fps": frames / seconds,
            "cpu_ms_per_frame": 1000 * cpu / frames, "cores_busy": cpu / seconds, "peak_mib": peak}  # fmt: skip


def passes_for(video: Path, first: bool, detector: str) -> list[tuple[str, tuple]]:
    from wtours.frames import choose_decoder, stream_info

    info = stream_info(video)
    passes = [
        ("decode floor", (str(video),)),
        ("decode + 256 px", (str(video),)),
        ("lightness + shots", (str(video), None)),
        ("full, detector 1 fps", (str(video), detector)),
    ]
    if first:
        passes += [
            ("lightness + shots, first half", (str(video), None, info.estimated_frames / info.fps / 2)),
            ("PySceneDetect detect-content", (str(video),)),
        ]
    nvdec = choose_decoder(video, "gpu")
    if nvdec.name:
        passes += [
            ("NVDEC decode floor", (str(video), nvdec.name)),
            ("NVDEC lightness + shots", (str(video), None, None, "gpu")),
            ("NVDEC full, detector 1 fps", (str(video), detector, None, "gpu")),
        ]
    else:
        print(f"{video.name}: {nvdec.notice} (no NVDEC passes)", file=sys.stderr)
    return passes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--codecs", nargs="+", choices=list(ENCODERS), default=list(ENCODERS),
                        help="codecs of the synthetic 4K60 files")  # fmt: skip
    parser.add_argument("--video", type=Path, nargs="+", help="existing videos instead of the synthetic ones")
    parser.add_argument("--seconds", type=float, default=4.0, help="length of the synthetic videos")
    parser.add_argument("--size", default="3840x2160", help="size of the synthetic videos")
    parser.add_argument("--fps", type=int, default=60)
    parser.add_argument("--detector", default="yolo11n.yaml", help="detector of the full pass")
    parser.add_argument("--repeat", type=int, default=5, help="runs per pass; the fastest counts")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    if args.video:
        videos = {path.name: path for path in args.video}
    else:
        width, height = (int(v) for v in args.size.split("x"))
        videos = make_videos(args.codecs, args.seconds, width, height, args.fps)
    plan = {label: passes_for(video, number == 0, args.detector)
            for number, (label, video) in enumerate(videos.items())}  # fmt: skip
    # Rounds go through every pass of every video in turn, so a burst of other work on the machine hits all
    # passes alike; each pass keeps its fastest run.
    best: dict[tuple[str, str], dict] = {}
    for round_index in range(args.repeat):
        for label, passes in plan.items():
            for name, pass_args in passes:
                result = run_once(name, pass_args)
                print(f"round {round_index + 1}: {label:6s} {name:30s} {result['fps']:6.1f} frames/s "
                      f"{result['cpu_ms_per_frame']:5.1f} CPU ms/frame  {result['cores_busy']:.2f} cores  "
                      f"peak {result['peak_mib']:.0f} MiB", file=sys.stderr)  # fmt: skip
                if (label, name) not in best or result["seconds"] < best[label, name]["seconds"]:
                    best[label, name] = result
    print_tables(videos, plan, best)
    if args.json:
        rows = [{"video": str(videos[label]), **result} for (label, _), result in best.items()]
        args.json.write_text(json.dumps({"cpu_count": os.cpu_count(), "results": rows}, indent=2) + "\n")


def print_tables(videos: dict[str, Path], plan: dict[str, list], best: dict[tuple[str, str], dict]) -> None:
    from wtours.frames import stream_info

    labels = list(videos)
    print(f"\n{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at the end; fastest of each pass\n")
    for label, video in videos.items():
        info = stream_info(video)
        megabits = video.stat().st_size * 8 / (info.estimated_frames / info.fps) / 1e6
        print(f"- {label}: {video.name}, {info.width}x{info.height} {info.fps:g} fps {info.codec}, "
              f"{info.estimated_frames} frames, {megabits:.0f} Mbit/s")  # fmt: skip
    names = list(dict.fromkeys(name for passes in plan.values() for name, _ in passes))
    titles = [CODEC_TITLES.get(label, label) for label in labels]
    print("\n| pass, × decode floor (wall clock) | " + " | ".join(titles) + " |")
    print("|---|" + "---:|" * len(labels))
    print("| decode floor, frames/s | " + " | ".join(f"{best[label, 'decode floor']['fps']:.1f}" for label in labels)
          + " |")  # fmt: skip
    for name in names[1:]:
        cells = []
        for label in labels:
            result, floor = best.get((label, name)), best[label, "decode floor"]
            cells.append("" if result is None else f"{result['fps'] / floor['fps']:.2f}")
        print(f"| {name} | " + " | ".join(cells) + " |")
    print("\n| pass: CPU ms/frame, cores busy, peak memory (MiB) | " + " | ".join(titles) + " |")
    print("|---|" + "---:|" * len(labels))
    for name in names:
        cells = []
        for label in labels:
            result = best.get((label, name))
            cells.append("" if result is None else f"{result['cpu_ms_per_frame']:.1f} ms, {result['cores_busy']:.2f}, "
                                                    f"{result['peak_mib']:.0f}")  # fmt: skip
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
