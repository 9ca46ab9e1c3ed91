"""`wtours.video`: probing measures what the file really holds and rejects what is not a whole video."""

from __future__ import annotations

import re
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from wtours.errors import WtoursError
from wtours.video import probe_video, verify_video


def test_probe_counts_every_frame_and_measures_the_stream(make_video):
    probe = probe_video(make_video("clip.mp4", frames=45, width=96, height=64, fps=30))
    assert (probe.codec, probe.width, probe.height, probe.pix_fmt) == ("h264", 96, 64, "yuv420p")
    assert probe.frame_count == 45
    assert probe.fps == 30.0
    assert probe.duration == pytest.approx(1.5, abs=1e-3)
    assert probe.bit_rate > 0 and probe.has_audio is False


def test_frames_are_counted_from_packets_not_the_header(make_video):
    # Matroska stores no frame count in its header: the count must come from the packets.
    path = make_video("clip.mkv", frames=37)
    with av.open(str(path)) as container:
        assert container.streams.video[0].frames == 0
    probe = probe_video(path)
    assert probe.frame_count == 37
    assert probe.duration == pytest.approx(37 / 30, abs=0.002)


def test_full_decode_and_audio(make_video):
    probe = probe_video(make_video("talk.mp4", frames=30, audio=True), full_decode=True)
    assert probe.frame_count == 30 and probe.has_audio is True


def _audio_only(path: Path) -> Path:
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("aac", rate=48000, layout="mono")
        for index in range(20):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 48000, index * 1024
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def test_rejects_files_that_are_not_whole_videos(make_video, tmp_path):
    clip = make_video("clip.mp4", frames=30).read_bytes()  # moov written last
    faststart = make_video("fast.mp4", frames=30, faststart=True).read_bytes()  # moov first
    cases = {
        "empty.mp4": (b"", "empty file (0 bytes)"),
        "text.mp4": (b"<html>not found</html>\n", "not a readable video"),
        "no_moov.mp4": (clip[: len(clip) // 2], "not a readable video"),
        "cut_mdat.mp4": (faststart[: len(faststart) * 2 // 3], "truncated: the container lists 30 frames"),
    }
    for name, (content, message) in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(WtoursError, match=re.escape(message)) as raised:
            probe_video(path)
        assert "\n" not in str(raised.value) and name in str(raised.value)
    with pytest.raises(WtoursError, match="no video stream"):
        probe_video(_audio_only(tmp_path / "audio.mp4"))
    with pytest.raises(WtoursError, match="cannot read"):
        probe_video(tmp_path / "missing.mp4")


def test_verify_rejects_a_video_much_shorter_than_expected(make_video):
    path = make_video("clip.mp4", frames=30)  # 1.0 s
    assert verify_video(path, expected_duration=1.05).frame_count == 30  # within 90 %
    with pytest.raises(WtoursError, match=r"too short: 1\.0 s but the manifest expects 2:00"):
        verify_video(path, expected_duration=120)
    with pytest.raises(WtoursError, match="too short"):
        verify_video(path, expected_duration=2.0, min_duration_ratio=0.6)


def _with_timestamps(path: Path, ticks: list[int], time_base: Fraction) -> Path:
    """A video whose frame ``i`` is stamped ``ticks[i]`` (in ``time_base``), as a phone's encoder writes it."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.time_base = stream.codec_context.time_base = time_base
        stream.options = {"preset": "ultrafast"}
        for number, tick in enumerate(ticks):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), number * 3 % 256, np.uint8), format="rgb24")
            frame.pts, frame.time_base = tick, time_base
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def test_a_variable_frame_rate_is_measured_not_mistaken_for_truncation(make_video, tmp_path):
    # 30 fps with two frames in every seven dropped, their timestamps kept.
    kept = [index for index in range(90) if index % 7 not in (3, 4)]
    probe = probe_video(_with_timestamps(tmp_path / "dropped.mp4", [512 * i for i in kept], Fraction(1, 15360)),
                        full_decode=True)  # fmt: skip
    assert probe.frame_count == len(kept) and probe.variable_frame_rate
    assert probe.duration == pytest.approx(3.0) and probe.fps == pytest.approx(len(kept) / 3.0, abs=1e-3)
    constant = [probe_video(make_video(name, frames=40)) for name in ("cfr.mp4", "cfr.mkv")]  # mkv keeps ms
    assert [probe.variable_frame_rate for probe in constant] == [False, False]
