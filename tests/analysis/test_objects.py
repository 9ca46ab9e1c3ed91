"""Objects: a real COCO detector (YOLOv3-tiny, offline) counts the people of a real photo turned video."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from wtours.analysis.objects import ObjectAnalyzer
from wtours.analysis.run import analyze_videos
from wtours.analysis.settings import AnalysisSettings
from wtours.analysis.window import VideoInput
from wtours.errors import WtoursError
from wtours.frames import FrameSize
from wtours.sample import photo_paths
from wtours.sample.encode import h264_writer
from wtours.sample.photos import PHOTOS
from wtours.store import Store


def _iou(a, b) -> float:
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = width * height
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


@pytest.fixture(scope="module")
def bus_video(tmp_path_factory) -> Path:
    """Two seconds (4 frames at 2 fps) of the bus photo: 810x1080, people at known boxes."""
    photo = np.asarray(Image.open(photo_paths()["bus"]).convert("RGB"))
    path = tmp_path_factory.mktemp("bus") / "bus.mp4"
    with h264_writer(path, width=810, height=1080, fps=2, gop=2) as write:
        for _ in range(4):
            write(photo)
    return path


def test_people_in_a_real_photo_are_counted_in_video_pixels(bus_video, darknet_yolov3_tiny, tmp_path):
    # The detector sees 416-pixel-wide frames; boxes must come back in the video's 810x1080 pixels.
    settings = AnalysisSettings(detector=str(darknet_yolov3_tiny["cfg"]), detector_width=416, detector_fps=1.0)
    [result] = analyze_videos([VideoInput("bus", bus_video)], Store.at(tmp_path), settings, show_progress=False)
    assert result.ok, result.error
    folder = tmp_path / "analysis" / "bus"
    detections = pd.read_parquet(folder / "objects.parquet")
    sampled = pd.read_parquet(folder / "detector_frames.parquet")
    assert sampled["frame"].tolist() == [0, 2]  # 1 frame per second of a 2 fps video
    people = detections[(detections["frame"] == 0) & (detections["class_name"] == "person")]
    truth = [box[1:] for box in PHOTOS["bus"].objects if box[0] == "person"]
    assert 3 <= len(people) <= len(truth)
    for box in people[["x0", "y0", "x1", "y1"]].to_numpy():
        assert max(_iou(box, t) for t in truth) > 0.5, box
    summary = result.summary["objects"]
    assert summary["class_frequency"]["person"] == 2 * len(people)  # the same picture at frames 0 and 2
    assert summary["mean_per_frame"] == pytest.approx(sampled["objects"].mean())
    assert list(detections.columns[:9]) == [
        "frame", "time", "class_id", "class_name", "confidence", "x0", "y0", "x1", "y1"
    ]


def test_ultralytics_backend_runs_batched_offline():
    # yolo11n.yaml builds offline with random weights: the real code path, meaningless boxes.
    analyzer = ObjectAnalyzer(FrameSize(64, 48, every_n=1), detector="yolo11n.yaml", video_size=(640, 480),
                              image_size=64, batch_size=2, confidence=0.01)
    frames = np.random.default_rng(0).integers(0, 255, size=(3, 48, 64, 3), dtype=np.uint8)
    for index, frame in enumerate(frames):
        analyzer.process_frame(index, index / 30, frame)
    tables = analyzer.tables()
    assert tables["detector_frames"]["frame"].tolist() == [0, 1, 2]
    detections = tables["objects"]
    assert set(detections["frame"]) <= {0, 1, 2}
    assert (detections[["x1", "y1"]].to_numpy() <= [640 + 1, 480 + 1]).all()


def test_the_detector_takes_one_frame_per_call_on_the_cpu_and_16_on_a_gpu(bus_video, darknet_yolov3_tiny, tmp_path):
    # One frame per call on the CPU, so that the last frames of a window are not detected after decoding has ended.
    def analyzer(**options):
        return ObjectAnalyzer(FrameSize(64, 48), detector="yolo11n.yaml", video_size=(64, 48), **options)

    assert analyzer(device="cpu")._batch_size() == 1
    assert analyzer(device="cuda:0")._batch_size() == 16
    assert analyzer(device="cpu", batch_size=4)._batch_size() == 4
    darknet = ObjectAnalyzer(FrameSize(64, 48), detector=str(darknet_yolov3_tiny["cfg"]), video_size=(64, 48))
    assert darknet._batch_size() == 1  # OpenCV DNN on the CPU
    # Batches change when frames are detected, never what is found: the tables are identical.
    tables = []
    for batch in (None, 16):
        settings = AnalysisSettings(detector=str(darknet_yolov3_tiny["cfg"]), detector_width=416, detector_fps=2.0,
                                    detector_batch=batch)  # fmt: skip
        store = Store.at(tmp_path / f"batch{batch}")
        [result] = analyze_videos([VideoInput("bus", bus_video)], store, settings, show_progress=False)
        assert result.ok, result.error
        tables.append([pd.read_parquet(store.analysis_dir("bus") / name)
                       for name in ("objects.parquet", "detector_frames.parquet")])  # fmt: skip
    assert len(tables[0][0]) > 0
    for one, sixteen in zip(*tables, strict=True):
        pd.testing.assert_frame_equal(one, sixteen)


def test_missing_weights_are_a_one_line_error(tmp_path):
    frame = np.zeros((48, 64, 3), np.uint8)
    for weights, message in ((tmp_path / "no.pt", "detector weights not found"), (tmp_path / "no.cfg", "missing")):
        analyzer = ObjectAnalyzer(FrameSize(64, 48), detector=str(weights), video_size=(64, 48))
        analyzer.process_frame(0, 0.0, frame)
        with pytest.raises(WtoursError, match=message):
            analyzer.tables()
