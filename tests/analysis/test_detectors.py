"""Detector weights: a pickle that is not ultralytics' own never runs unless trusted, and every detector
is loaded and checked before the first frame is decoded."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from wtours import frames
from wtours.analysis.detectors import RELEASED_WEIGHTS, load_detector, vetted_weights
from wtours.analysis.run import analyze_videos
from wtours.analysis.settings import AnalysisSettings
from wtours.analysis.window import VideoInput
from wtours.errors import WtoursError
from wtours.store import Store, file_sha256


class _Payload:
    """Unpickling this calls ``open(marker, "w")``: a file appears if, and only if, the pickle ran."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def _malicious_pt(path: Path, marker: Path) -> Path:
    import torch

    torch.save({"model": _Payload(marker)}, path)
    return path


def test_a_malicious_pt_is_refused_before_it_is_unpickled(make_video, tmp_path):
    marker = tmp_path / "pwned"
    evil = _malicious_pt(tmp_path / "evil.pt", marker)
    video = make_video("clip.mp4", frames=10)
    done = subprocess.run([sys.executable, "-m", "wtours", "analyze", str(video), "--detector", str(evil),
                           "--data-dir", str(tmp_path / "data")], capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().count("\n") == 0 and "--trust-detector-weights" in done.stderr, done.stderr
    assert "pickle" in done.stderr and not marker.exists()


def test_a_released_name_is_checked_by_its_digest(tmp_path, monkeypatch):
    marker = tmp_path / "pwned"
    monkeypatch.chdir(tmp_path)
    _malicious_pt(tmp_path / "yolo11n.pt", marker)  # where YOLO("yolo11n.pt") would look first
    with pytest.raises(WtoursError, match="not the released file of that name"):
        vetted_weights("yolo11n.pt")
    with pytest.raises(WtoursError, match="not one of ultralytics' released detectors"):
        vetted_weights("yolo99z.pt")  # unknown: refused before any download
    assert not marker.exists()
    # Trusted, it is ultralytics' to load, and the pickle runs: the check above is all that stood between.
    with pytest.raises(WtoursError, match="cannot load detector"):
        load_detector("yolo11n.pt", 0.25, 64, trusted=True)
    assert marker.exists()


def test_weights_with_a_released_digest_load_and_detect(tmp_path, monkeypatch):
    from ultralytics import YOLO

    weights = tmp_path / "mine.pt"
    YOLO("yolo11n.yaml").save(weights)  # a real ultralytics checkpoint, made offline (random weights)
    with pytest.raises(WtoursError, match="is not one of ultralytics' released detectors"):
        vetted_weights(str(weights))
    monkeypatch.setitem(RELEASED_WEIGHTS, "mine.pt", (file_sha256(weights),))
    assert vetted_weights(str(weights)) == str(weights)
    detector = load_detector(str(weights), 0.25, 64)
    assert len(detector.class_names) == 80
    assert vetted_weights("yolo11n.yaml") == "yolo11n.yaml"  # an architecture, no pickle: always allowed


@pytest.fixture
def broken_detectors(tmp_path, darknet_yolov3_tiny) -> list[tuple[dict, str]]:
    """Detector settings that cannot work, with what their error says."""
    garbage = tmp_path / "garbage"
    garbage.mkdir()
    (garbage / "bad.cfg").write_text("[net]\nthis is not a darknet layer\n")
    (garbage / "bad.weights").write_bytes(b"\0" * 1000)
    (garbage / "coco.names").write_text("person\n")
    (garbage / "noise.pt").write_bytes(b"not a checkpoint" * 100)
    truncated = garbage / "tiny.cfg"  # a real network, its weights cut short
    truncated.write_text(darknet_yolov3_tiny["cfg"].read_text())
    (garbage / "tiny.weights").write_bytes(darknet_yolov3_tiny["weights"].read_bytes()[:4096])
    return [
        ({"detector": str(garbage / "bad.cfg")}, "OpenCV cannot read it"),
        ({"detector": str(garbage / "tiny.cfg")}, "Darknet detector"),
        ({"detector": str(tmp_path / "absent.cfg")}, "missing"),
        ({"detector": str(garbage / "noise.pt"), "trust_detector_weights": True}, "cannot load detector"),
        ({"detector": str(garbage / "noise.pt")}, "pickle"),
    ]


def test_a_broken_detector_fails_before_any_frame_is_decoded(make_video, broken_detectors, tmp_path, monkeypatch):
    video = make_video("long.mp4", frames=900)  # 30 s: today's code decoded all of it before saying no
    decoded = []
    decode = frames._Decoder.frames

    def counting(self):
        for frame in decode(self):
            decoded.append(frame.pts)
            yield frame

    monkeypatch.setattr(frames._Decoder, "frames", counting)
    for settings, message in broken_detectors:
        with pytest.raises(WtoursError, match=message) as raised:
            analyze_videos([VideoInput("long", video)], Store.at(tmp_path / "data"),
                           AnalysisSettings(**settings), show_progress=False)  # fmt: skip
        error = str(raised.value)
        assert "\n" not in error and not error.lower().startswith("error"), error
        assert decoded == [], f"{len(decoded)} frames decoded before: {error}"


def test_the_cli_says_it_once(make_video, tmp_path):
    (tmp_path / "bad.cfg").write_text("[net]\nthis is not a darknet layer\n")
    (tmp_path / "bad.weights").write_bytes(b"\0" * 1000)
    (tmp_path / "coco.names").write_text("person\n")
    done = subprocess.run([sys.executable, "-m", "wtours", "analyze", str(make_video("clip.mp4", frames=10)),
                           "--detector", str(tmp_path / "bad.cfg"), "--data-dir", str(tmp_path / "data")],
                          capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.startswith("error: Darknet detector") and done.stderr.count("error") == 1, done.stderr
    assert done.stderr.strip().count("\n") == 0
