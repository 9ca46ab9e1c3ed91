"""Which videos a command works on: one rule for every command that picks videos (``--only``, ``--group``).

    select_videos(manifest)                                    # fetch, status: the manifest's videos
    select_videos(manifest, ["venice-anon"], store=store)      # analyze: any video of the store, too
    select_videos(manifest, group="walking_tours", store=store, fetched_only=True)  # curate, anonymize

- ``only``: these ids, in the order given, each once. Each must be a manifest id or, when a ``store`` is given
  (the command works on fetched videos), a video in the store that the manifest does not list, such as an
  anonymized copy ``<id>-anon``.
- ``group``: only the videos of this group (an id of another group given with ``only`` is left out).
- ``fetched_only``: when no ids are given, only the videos already in the store: a command with nothing to
  do for the others (curate, anonymize) skips them, and says so when none is there. Ids given explicitly are
  kept, fetched or not, so that the command says what is missing for each.

An unknown id or group is one error that names what is known. The result is manifest entries; a video only
the store knows comes as an entry whose one source is its own file in the store (fetching it is a no-op).
"""

from __future__ import annotations

from collections.abc import Sequence

from wtours.errors import WtoursError
from wtours.manifest import FileSource, Manifest, VideoEntry
from wtours.store import Store


def select_videos(
    manifest: Manifest,
    only: Sequence[str] | None = None,
    group: str | None = None,
    *,
    store: Store | None = None,
    fetched_only: bool = False,
) -> list[VideoEntry]:
    """The videos a command works on, by the rule of this module's docstring; raises WtoursError."""
    by_id = {video.id: video for video in manifest.videos}
    if only:
        found = {video_id: by_id.get(video_id) or _stored_entry(store, video_id) for video_id in dict.fromkeys(only)}
        unknown = [video_id for video_id, video in found.items() if video is None]
        if unknown:
            where = "the manifest" if store is None else f"the manifest nor in {store.videos_dir}"
            raise WtoursError(f"not in {where}: {', '.join(unknown)} (known: {', '.join(by_id)})")
        chosen = [video for video in found.values() if video is not None]
    else:
        chosen = list(manifest.videos)
    if group is not None:
        groups = {video.group for video in manifest.videos}
        if group not in groups:
            raise WtoursError(f"no group {group!r} in the manifest (groups: {', '.join(sorted(groups))})")
        chosen = [video for video in chosen if video.group == group]
    if fetched_only and not only:
        if store is None:
            raise ValueError("fetched_only needs the store the videos are fetched into")
        chosen = [video for video in chosen if store.video_path(video.id).is_file()]
        if not chosen:
            which = "the manifest's videos" if group is None else f"the videos of group {group!r}"
            raise WtoursError(f"none of {which} is in {store.videos_dir}; run `wtours fetch` first")
    return chosen


def _stored_entry(store: Store | None, video_id: str) -> VideoEntry | None:
    """A video in the store the manifest does not list (e.g. an anonymized copy), as a manifest entry."""
    if store is None or not _safe_id(video_id):
        return None
    path = store.video_path(video_id)
    if not path.is_file():
        return None
    sidecar = store.sidecar(video_id) or {}
    return VideoEntry(id=video_id, group=sidecar.get("group") or "default", duration=None,
                      sources=[FileSource(path=path)])  # fmt: skip


def _safe_id(video_id: str) -> bool:
    """Only a name that could be a manifest id is looked up on disk (never ``../x``)."""
    try:
        VideoEntry(id=video_id, sources=[FileSource(path=".")])
    except ValueError:
        return False
    return True
