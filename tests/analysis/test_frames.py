"""The one frame iterator: exact frame indices after seeking, per-size sampling, sizes done by FFmpeg."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest

from wtours.errors import WtoursError
from wtours.frames import DecoderChoice, FrameSize, choose_decoder, iter_frames, scaled_size, stream_info
from wtours.sample import read_frame_number, render_numbered


@pytest.fixture(scope="module")
def numbered(tmp_path_factory):
    path = tmp_path_factory.mktemp("numbered") / "numbered.mp4"
    render_numbered(path, n_frames=90, width=160, height=96, fps=30, gop=20)
    return path


def test_every_frame_has_its_own_index_and_requested_sizes(numbered):
    frames = list(iter_frames(numbered, {"small": (64, 38), "full": (160, 96)}))
    assert [f.index for f in frames] == list(range(90))
    assert all(read_frame_number(f.images["full"]) == f.index for f in frames)
    assert frames[0].images["small"].shape == (38, 64, 3)
    assert frames[30].time == pytest.approx(1.0)


def test_a_window_mid_video_starts_exactly_at_its_first_frame(numbered):
    # 33 is between keyframes (every 20): the iterator seeks back and decodes forward.
    frames = list(iter_frames(numbered, {"full": (160, 96)}, start_frame=33, end_frame=47))
    assert [f.index for f in frames] == list(range(33, 47))
    assert [read_frame_number(f.images["full"]) for f in frames] == list(range(33, 47))


def test_sampling_counts_absolute_frame_indices_per_size(numbered):
    sizes = {"every": FrameSize(32, 20), "detector": FrameSize(160, 96, every_n=25)}
    frames = list(iter_frames(numbered, sizes, start_frame=10))
    assert [f.index for f in frames if "detector" in f.images] == [25, 50, 75]
    assert [read_frame_number(f.images["detector"]) for f in frames if "detector" in f.images] == [25, 50, 75]
    assert len(frames) == 80


def test_stream_info_and_scaled_size(numbered):
    info = stream_info(numbered)
    assert (info.fps, info.width, info.height, info.frame_count) == (30.0, 160, 96, 90)
    assert scaled_size(3840, 2160, 256) == (256, 144)
    assert scaled_size(640, 272, 256) == (256, 108)
    assert scaled_size(200, 100, 256) == (200, 100)


def test_unreadable_file_is_a_one_line_error(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video at all" * 100)
    with pytest.raises(WtoursError, match="cannot open video"):
        list(iter_frames(bad, {"small": (32, 20)}))
    with pytest.raises(WtoursError, match="not found"):
        stream_info(tmp_path / "missing.mp4")


def _frames_as_tuples(frames):
    return [(f.index, f.time, f.end_time, {name: image.tobytes() for name, image in f.images.items()}) for f in frames]


def test_a_decoder_named_by_the_caller_gives_the_default_decoders_frames(numbered):
    # The path NVDEC takes (a decoder opened by name, fed the demuxed packets), run here with FFmpeg's own
    # H.264 decoder: the same frames, times and pixels, from the start and after a seek.
    for start, end in ((0, None), (33, 61)):
        default = list(iter_frames(numbered, {"full": (160, 96)}, start_frame=start, end_frame=end, preroll=1))
        named = list(iter_frames(numbered, {"full": (160, 96)}, start_frame=start, end_frame=end, preroll=1,
                                 decoder="h264"))  # fmt: skip
        assert _frames_as_tuples(named) == _frames_as_tuples(default)


def test_read_ahead_gives_the_same_frames_and_stops_when_the_consumer_stops(numbered):
    import threading

    sizes = {"small": (64, 38), "detector": FrameSize(160, 96, every_n=25)}
    assert _frames_as_tuples(iter_frames(numbered, sizes, start_frame=10, read_ahead=4)) == _frames_as_tuples(
        iter_frames(numbered, sizes, start_frame=10)
    )
    before = threading.active_count()
    frames = iter_frames(numbered, sizes, read_ahead=2)
    assert next(frames).index == 0
    frames.close()  # a consumer that stops early: the producer thread ends, the file is closed
    assert threading.active_count() == before


def test_read_ahead_raises_the_decoders_error_in_the_consumer(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video at all" * 100)
    with pytest.raises(WtoursError, match="cannot open video"):
        list(iter_frames(bad, {"small": (32, 20)}, read_ahead=4))


def test_stream_info_from_the_header_equals_the_full_probe(numbered, tmp_path):
    import imageio_ffmpeg

    from wtours.frames import _header_stream_info

    raw = tmp_path / "numbered.h264"  # no container: the header says nothing, the full probe is used
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-loglevel", "error", "-i", str(numbered), "-c", "copy",
                    "-bsf:v", "h264_mp4toannexb", "-f", "h264", str(raw)], check=True)  # fmt: skip
    for path in (numbered, raw):
        assert stream_info(path) == _header_stream_info(path, header_only=False)


def test_cpu_decoding_is_chosen_without_a_gpu_and_asking_for_one_says_why_in_one_line(numbered, monkeypatch):
    from wtours import frames as frames_module

    monkeypatch.setattr(frames_module, "cuda_device_count", lambda: 0)
    assert choose_decoder(numbered, "cpu") == DecoderChoice(None)
    assert choose_decoder(numbered, "auto") == DecoderChoice(None)  # a CPU machine: nothing to say
    asked = choose_decoder(numbered, "gpu")
    assert asked.name is None and "h264_cuvid" in asked.notice and "\n" not in asked.notice
    assert asked.notice.endswith("decoding on the CPU")
    with pytest.raises(WtoursError, match="auto, cpu or gpu"):
        choose_decoder(numbered, "fast")


def test_a_gpu_that_cannot_decode_falls_back_to_the_cpu_with_a_notice(numbered, monkeypatch):
    # A CUDA device is reported but NVDEC does not open (here: no CUDA driver at all, so the decoder fails as
    # it would on a GPU without that codec's engine): CPU decoding, and a line saying so.
    from wtours import frames as frames_module

    if frames_module.cuda_device_count():
        pytest.skip("a CUDA device is present: the GPU test covers this machine")
    monkeypatch.setattr(frames_module, "cuda_device_count", lambda: 1)
    choice = choose_decoder(numbered, "auto")
    assert choice.name is None and "h264_cuvid" in choice.notice and "decoding on the CPU" in choice.notice


@pytest.mark.gpu
def test_nvdec_frames_equal_the_cpu_decoders_within_rounding(numbered, tmp_path):
    from wtours.sample import render_walking_tour

    walk = tmp_path / "walk.mp4"
    render_walking_tour(walk, width=640, height=360, fps=30, seconds=3.0, seed=4)
    for path in (numbered, walk):
        nvdec = choose_decoder(path, "gpu")
        if nvdec.name is None:
            pytest.skip(f"no NVDEC here: {nvdec.notice}")
        sizes = {"small": (128, 72), "full": (160, 96)}
        cpu = list(iter_frames(path, sizes, start_frame=20, preroll=1))
        gpu = list(iter_frames(path, sizes, start_frame=20, preroll=1, decoder=nvdec.name, read_ahead=8))
        assert [(f.index, f.time) for f in gpu] == [(f.index, f.time) for f in cpu]
        for ours, theirs in zip(gpu, cpu, strict=True):
            for name in sizes:
                difference = np.abs(ours.images[name].astype(np.int16) - theirs.images[name].astype(np.int16))
                assert difference.mean() < 0.5 and difference.max() <= 8, (path.name, ours.index, name)
