"""Optional export of curated clips as WebDataset tar shards, for clusters that stream from object stores.

Each sample is one clip of the index: ``<key>.f00.jpg`` .. ``<key>.f<T-1>.jpg`` (the proxy's JPEG bytes,
copied, never re-encoded) and ``<key>.json`` (video id, clip, start frame, stride, scores). Shards are
``<out>/<id>-000000.tar``, ... and each appears atomically, so an interrupted export resumes at the first
missing shard. Readable with ``webdataset.WebDataset(urls).decode("torchrgb")`` or any tar reader.
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pandas as pd

from wtours.errors import WtoursError
from wtours.pipelines.proxy import ProxyReader
from wtours.store import Store, atomic_path


def export_webdataset(store: Store, video_id: str, out_dir: Path, *, clips_per_shard: int = 1000) -> list[Path]:
    """Write the clips of ``clips/<id>.parquet`` as tar shards under ``out_dir``; return the shard paths."""
    index_path = store.clips_path(video_id)
    if not index_path.is_file():
        raise WtoursError(f"{video_id}: no clip index at {index_path}; run `wtours curate --only {video_id}`")
    index = pd.read_parquet(index_path)
    if index.empty:
        return []
    reader = ProxyReader(store.proxy_dir(video_id, int(index["proxy_short_side"].iloc[0])),
                         rebuild_hint=f"wtours curate --only {video_id}")  # fmt: skip
    shards = []
    try:
        for number, first in enumerate(range(0, len(index), clips_per_shard)):
            path = out_dir / f"{video_id}-{number:06d}.tar"
            shards.append(path)
            if not path.is_file():
                _write_shard(path, reader, index.iloc[first : first + clips_per_shard])
    finally:
        reader.close()
    return shards


def _write_shard(path: Path, reader: ProxyReader, clips: pd.DataFrame) -> None:
    with atomic_path(path) as tmp, tarfile.open(tmp, "w") as tar:
        for clip in clips.itertuples(index=False):
            key = f"{clip.video_id}-c{clip.clip:08d}"
            frames = clip.start_frame + clip.stride * pd.RangeIndex(clip.frames_per_clip)
            for t, frame in enumerate(frames):
                _add(tar, f"{key}.f{t:02d}.jpg", reader.read_bytes(int(frame)))
            meta = {"video_id": clip.video_id, "clip": int(clip.clip), "start_frame": int(clip.start_frame),
                    "frames_per_clip": int(clip.frames_per_clip), "stride": int(clip.stride),
                    "darkness": float(clip.darkness), "motion": float(clip.motion)}  # fmt: skip
            _add(tar, f"{key}.json", json.dumps(meta).encode())


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))
