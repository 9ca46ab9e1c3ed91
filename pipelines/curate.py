"""`wtours curate`: for each analysed video, a training proxy and a clip index.

    videos/<id>.mp4 + analysis/<id>/{frames,shots}.parquet
        -> proxies/<id>/short<S>/   every frame at training resolution (pipelines/proxy.py)
        -> clips/<id>.parquet       valid clips of T frames at stride s, with scores (pipelines/clip_index.py)

The proxy is built first because the motion score is read from it (cheap JPEG thumbnails) rather than
from the 4K original. Re-running is cheap: an intact, current proxy is kept; the index is rewritten.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pandas as pd

from wtours.errors import WtoursError, prefixed
from wtours.pipelines.clip_index import ClipSpec, build_clip_index, clip_motion, on_proxy_frames
from wtours.pipelines.proxy import ProxyReader, ProxySettings, ensure_proxy
from wtours.store import Store, atomic_path


@dataclass(frozen=True)
class CurateOptions:
    clips: ClipSpec = field(default_factory=ClipSpec)
    proxy: ProxySettings = field(default_factory=ProxySettings)


@dataclass
class CurateResult:
    video_id: str
    clips: int = 0
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def curate_video(store: Store, video_id: str, options: CurateOptions = CurateOptions(), *,
                 show_progress: bool = True) -> pd.DataFrame:  # fmt: skip
    """Build (or keep) the proxy of ``video_id`` and write its clip index; return the index."""
    from wtours.progress import console

    frames, shots = _analysis_tables(store, video_id)
    directory = ensure_proxy(store, video_id, options.proxy, show_progress=show_progress)
    reader = ProxyReader(directory, rebuild_hint=f"wtours curate --only {video_id}")
    if len(frames) > reader.source_frame_count:
        raise WtoursError(
            f"{video_id}: the analysis covers {len(frames)} frames but the video has {reader.source_frame_count}; "
            f"re-run `wtours analyze --only {video_id}`"
        )
    # Clips are counted in proxy frames; a variable-rate video's proxy is resampled, so map by time.
    until = float(shots["end_time"].max()) if "end_time" in shots.columns else None  # where the analysis ends
    shown, times = reader.frames_shown(frames.sort_values("frame")["time"].to_numpy(), until=until)
    frames, shots = on_proxy_frames(frames, shots, shown, times)
    if len(frames) < reader.frame_count:  # e.g. `wtours analyze --duration`: only measured frames are curated
        console.print(f"[yellow]{video_id}[/]: the analysis covers the first {len(frames)} of "
                      f"{reader.frame_count} frames; clips come from those only", highlight=False)  # fmt: skip
    try:
        index = build_clip_index(
            video_id, frames, shots, options.clips,
            motion=lambda starts: clip_motion(reader.thumbnail, starts, options.clips),
        )  # fmt: skip
    finally:
        reader.close()
    index["proxy_short_side"] = options.proxy.short_side
    with atomic_path(store.clips_path(video_id)) as tmp:
        index.to_parquet(tmp, index=False)
    return index


def curate_videos(store: Store, video_ids: Sequence[str], options: CurateOptions = CurateOptions(), *,
                  show_progress: bool = True) -> list[CurateResult]:  # fmt: skip
    """Curate each video in turn; a failure is reported (one line) and the next video still runs. An OSError
    (the data directory read-only or full) stops the command: every other video would fail alike."""
    from rich.markup import escape

    from wtours.progress import console

    results = []
    for video_id in video_ids:
        try:
            index = curate_video(store, video_id, options, show_progress=show_progress)
        except WtoursError as err:
            message = prefixed(video_id, str(err))
            console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
            results.append(CurateResult(video_id, error=message))
            continue
        console.print(f"[green]{video_id}[/]: {len(index)} clips of {options.clips.frames_per_clip} frames at "
                      f"stride {options.clips.stride} -> {store.clips_path(video_id)}", highlight=False)  # fmt: skip
        results.append(CurateResult(video_id, clips=len(index)))
    return results


def _analysis_tables(store: Store, video_id: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """frames and shots tables; an anonymized copy without its own analysis uses its original's
    (same frames, same cuts: only faces were blurred)."""
    folder = store.analysis_dir(video_id)
    derived_from = (store.sidecar(video_id) or {}).get("derived_from")
    if derived_from and not (folder / "frames.parquet").is_file():
        folder = store.analysis_dir(derived_from)
    paths = folder / "frames.parquet", folder / "shots.parquet"
    missing = [path.name for path in paths if not path.is_file()]
    if missing:
        raise WtoursError(f"{video_id}: no {' or '.join(missing)} in {folder}; run `wtours analyze --only {video_id}`")
    return pd.read_parquet(paths[0]), pd.read_parquet(paths[1])
