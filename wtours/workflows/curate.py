"""``wtours curate``: each video's training proxy and clip index (clips that cross no cut, no blank frame)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field

from wtours.workflows.requests import PerVideoOutcome, VideosRequest, flag


class CurateRequest(VideosRequest):
    """The videos to curate and the shape of their clips and proxies."""

    only: list[str] | None = Field(
        None,
        description="These video ids (repeat or separate by commas); any id in the data directory, e.g. an "
        "anonymized copy 'venice-anon'. Default: the manifest's videos that are fetched.",
    )
    frames_per_clip: Annotated[int, flag("--frames-per-clip", "-T")] = Field(
        8, ge=1, description="Frames per clip: 8 for DoRA, 16 for VideoMAE."
    )
    stride: Annotated[int, flag("--stride", "-s")] = Field(
        60, ge=1, description="Frames between sampled frames: 60 for DoRA at 60 fps (1 s), 2-4 for VideoMAE."
    )
    start_step: int | None = Field(
        None,
        ge=1,
        description="One index clip per this many frames (default: the stride). Lower it for more, overlapping "
        "clips; the any_start dataset mode draws every valid start regardless.",
    )
    proxy_short_side: int = Field(
        320,
        ge=16,
        description="Short side of the training proxy in pixels. 320 suits 224-px crops; use 448-480 to keep detail "
        "for small random-resized crops (DoRA's scale 0.2 of 300 px), 256 to save disk.",
    )
    jpeg_qscale: int = Field(
        3, ge=2, le=31, description="JPEG quantiser of the proxy: 2 best/biggest, 5 about half the size."
    )
    shard_frames: int = Field(
        3600, ge=1, description="Frames per proxy shard: the unit a build resumes from after a stop."
    )
    webdataset: Path | None = Field(
        None,
        description="Also export the clips as WebDataset tar shards into this folder (for clusters that stream "
        "training data from object storage).",
    )


@dataclass
class CurateResult(PerVideoOutcome):
    results: list[Any]  # wtours.pipelines.curate.CurateResult per video
    shards: list[Path] = field(default_factory=list)

    def report(self) -> None:
        for path in self.shards:
            print(path)


def curate(request: CurateRequest) -> CurateResult:
    """Build the proxies and clip indices of the selected fetched videos (and WebDataset shards if asked)."""
    from wtours.manifest import load_manifest
    from wtours.pipelines.clip_index import ClipSpec
    from wtours.pipelines.curate import CurateOptions, curate_videos
    from wtours.pipelines.proxy import ProxySettings
    from wtours.selection import select_videos
    from wtours.store import Store

    store = Store.at(request.data_dir)
    options = CurateOptions(
        clips=ClipSpec(request.frames_per_clip, request.stride, request.start_step),
        proxy=ProxySettings(short_side=request.proxy_short_side, jpeg_qscale=request.jpeg_qscale,
                            frames_per_shard=request.shard_frames),  # fmt: skip
    )
    selected = select_videos(load_manifest(request.manifest), request.only, request.group, store=store,
                             fetched_only=True)  # fmt: skip
    results = curate_videos(store, [entry.id for entry in selected], options)
    shards: list[Path] = []
    if request.webdataset is not None:
        from wtours.pipelines.webdataset_export import export_webdataset

        for result in results:
            if result.ok:
                shards += export_webdataset(store, result.video_id, request.webdataset)
    return CurateResult(results, shards)
