"""Broken and unusual media through fetch, analyze and pretrain: each file is taken, or refused in one line
naming it; never a traceback, never a half-written file in videos/."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from faultkit import assert_error_lines, assert_one_line_error, write_manifest

pytestmark = pytest.mark.faults

# name: (codec, pixel format, frames); every one 64x48 at 30 fps, the pattern a moving gradient.
CODECS = {
    "hevc10.mp4": ("libx265", "yuv420p10le", 20),  # phones' HEVC, 10 bit
    "mpeg4.avi": ("mpeg4", "yuv420p", 20),
    "mjpeg.mov": ("mjpeg", "yuvj422p", 20),  # old cameras, full range
    "prores.mov": ("prores_ks", "yuv422p10le", 20),
    "ffv1.mkv": ("ffv1", "yuv420p", 20),  # lossless archive; Matroska has no frame count in its header
    "vp9.webm": ("libvpx-vp9", "yuv420p", 20),
    "av1.mp4": ("libsvtav1", "yuv420p", 20),
    "h264_444.mp4": ("libx264", "yuv444p", 20),
    "vfr.mp4": ("libx264", "yuv420p", 20),  # frames 20 and 50 ms apart, as phones record in low light
    "one_frame.mp4": ("libx264", "yuv420p", 1),
}
BROKEN = {
    "zero.mp4": "empty file (0 bytes)",
    "text.mp4": "not a readable video",
    "truncated.mp4": "truncated",
    "audio_only.mp4": "no video stream",
}


def encode(path: Path, codec: str, pix_fmt: str, frames: int) -> None:
    import av

    ramp = np.linspace(0, 255, 64, dtype=np.float32)
    variable = path.name.startswith("vfr")
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=30)
        stream.width, stream.height, stream.pix_fmt = 64, 48, pix_fmt
        if codec == "libx265":
            stream.options = {"x265-params": "log-level=error"}
        if variable:
            stream.codec_context.time_base = Fraction(1, 1000)
        for index in range(frames):
            row = ((ramp + index * 8) % 256).astype(np.uint8)
            rgb = np.repeat(np.repeat(row[None, :, None], 48, axis=0), 3, axis=2)
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format=pix_fmt)
            if variable:
                frame.pts, frame.time_base = sum((20, 50)[i % 2] for i in range(index)), Fraction(1, 1000)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import av

    from wtours.sample.encode import h264_writer

    folder = tmp_path_factory.mktemp("media")
    for name, (codec, pix_fmt, frames) in CODECS.items():
        encode(folder / name, codec, pix_fmt, frames)
    (folder / "zero.mp4").write_bytes(b"")
    (folder / "text.mp4").write_text("this is not a video\n")
    with h264_writer(folder / "whole.mp4", width=64, height=48, fps=30, gop=30) as write:
        for index in range(30):
            write(np.full((48, 64, 3), index * 8, np.uint8))
    whole = (folder / "whole.mp4").read_bytes()
    (folder / "truncated.mp4").write_bytes(whole[: len(whole) * 2 // 3])
    with av.open(str(folder / "audio_only.mp4"), "w") as container:
        stream = container.add_stream("aac", rate=48000, layout="mono")
        for index in range(20):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 48000, index * 1024
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return folder


def test_fetch_takes_every_codec_and_refuses_broken_files_in_one_line_each(cli, media: Path, tmp_path: Path) -> None:
    names = [*CODECS, *BROKEN]
    manifest = write_manifest(tmp_path / "m.yaml", [{"id": Path(name).stem, "sources": [str(media / name)]}
                                                    for name in names])  # fmt: skip
    data = tmp_path / "data"
    outcome = cli("fetch", "-m", manifest, "-d", data)
    assert outcome.code == 1
    errors = assert_error_lines(outcome, len(BROKEN))
    for name, reason in BROKEN.items():
        [line] = [line for line in errors if line.startswith(f"error: {Path(name).stem}: ")]
        assert reason in line, line
    published = {path.name for path in (data / "videos").iterdir() if not path.name.startswith(".")}
    assert published == {f"{Path(name).stem}.{suffix}" for name in CODECS for suffix in ("mp4", "json")}


def test_analyze_takes_every_codec_or_says_why_in_one_line(cli, media: Path, tmp_path: Path) -> None:
    """Every decodable file is analysed (the VFR one on its timestamps); a broken one is one line, the others
    still run."""
    names = [*CODECS, *BROKEN]
    outcome = cli("analyze", *[media / name for name in names], "-d", tmp_path / "data", "--detector", "none")
    assert outcome.code == 1
    errors = assert_error_lines(outcome, len(BROKEN))
    for name in BROKEN:
        assert sum(str(media / name) in line or f"error: {Path(name).stem}:" in line for line in errors) == 1, errors
    analysed = {path.parent.name for path in (tmp_path / "data" / "analysis").glob("*/summary.json")}
    assert analysed == {Path(name).stem for name in CODECS}


@pytest.mark.parametrize("name", [*BROKEN, "one_frame.mp4"])
def test_pretrain_on_a_broken_video_is_one_line(cli, media: Path, tmp_path: Path, name: str) -> None:
    outcome = cli("pretrain", "--preset", "dino_tiny_cpu", "--video", media / name, "-o", tmp_path / "runs",
                  "--set", "data.stride=1")  # fmt: skip
    expected = "fewer than one batch" if name == "one_frame.mp4" else str(media / name)
    assert_one_line_error(outcome, expected, code=2)
    assert not (tmp_path / "runs").exists()


def test_pretrain_decodes_every_codec_at_once(cli, media: Path, tmp_path: Path) -> None:
    """All codecs in one run (and of different sizes once scaled: VFR and one-frame aside, all 64x48)."""
    videos = [arg for name in CODECS if name != "one_frame.mp4" for arg in ("--video", media / name)]
    outcome = cli("pretrain", "--preset", "dino_tiny_cpu", *videos, "-o", tmp_path / "runs", "--set",
                  "data.stride=2", "--set", "data.proxy_short_side=48", "--epochs", "1", "--set",
                  "optim.steps_per_epoch=2", "--batch-size", "8")  # fmt: skip
    assert outcome.code == 0, outcome.err
    assert (tmp_path / "runs" / "dino-tiny" / "encoder.safetensors").is_file()

