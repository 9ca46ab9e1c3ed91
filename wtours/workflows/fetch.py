"""``wtours fetch`` and ``wtours status``: the manifest's videos into the store, and where each stands."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import Field

from wtours.workflows.requests import (
    DATA_DIR_HELP,
    GROUP_HELP,
    MANIFEST_HELP,
    DataDir,
    Group,
    ManifestPath,
    PerVideoOutcome,
    Request,
    VideosRequest,
    flag,
)

if TYPE_CHECKING:
    from wtours.manifest import VideoEntry
    from wtours.store import Store


class FetchRequest(VideosRequest):
    """What ``wtours fetch`` downloads, and how."""

    max_height: int = Field(
        2160,
        ge=144,
        description="Best video at or below this height (2160 = 4K as in the paper). Lower it (e.g. 1080) to save "
        "disk and decode time when you only need training-resolution frames.",
    )
    cookies: Annotated[Path | None, flag("--cookies", exists=True, dir_okay=False)] = Field(
        None,
        description="Netscape cookies file passed to yt-dlp; use it when YouTube answers 'sign in to confirm "
        "you're not a bot' (common on cloud/datacenter machines).",
    )
    extractor_args: list[str] | None = Field(
        None, description="Passed to yt-dlp as --extractor-args, e.g. 'youtube:player_client=web_safari'. Repeatable."
    )
    proxy: str | None = Field(
        None, description="HTTP/SOCKS proxy URL for every request, e.g. socks5://127.0.0.1:1080."
    )
    ytdlp_args: Annotated[str | None, flag("--yt-dlp")] = Field(
        None,
        description="Any other yt-dlp command-line options, as one quoted string, e.g. "
        "'--limit-rate 20M --concurrent-fragments 4'.",
    )
    retries: int = Field(
        3,
        ge=1,
        description="Tries of a source in a row that get no further (with exponential back-off) before the next "
        "source; a try that adds to the download does not count. Raise it on a flaky connection.",
    )
    retry_wait: float = Field(
        2.0,
        ge=0.0,
        description="Seconds before the first retry of a source; doubles with each further attempt, up to 60 s. "
        "Raise it when a host rate-limits you.",
    )
    full_verify: bool = Field(
        False,
        description="Decode every frame while verifying (slow on hours of 4K). By default every packet is read to "
        "count frames and frames are decoded at the start, middle and end.",
    )
    dry_run: bool = Field(False, description="List the videos and sources; download nothing.")


@dataclass
class FetchResult(PerVideoOutcome):
    """The videos fetched (each with its outcome), or with ``dry_run`` the plan."""

    store: Store
    planned: list[VideoEntry] = field(default_factory=list)
    results: list[Any] = field(default_factory=list)  # wtours.pipelines.fetch.FetchResult per video
    dry_run: bool = False

    def report(self) -> None:
        """The plan's table (a dry run); a fetch printed its own table as it finished."""
        if self.dry_run:
            from wtours.pipelines.fetch import print_plan

            print_plan(self.planned, self.store)


def fetch(request: FetchRequest) -> FetchResult:
    """Fetch the selected videos (resumable, verified, atomic), or only plan it with ``dry_run``."""
    from wtours.manifest import load_manifest
    from wtours.pipelines.fetch import FetchOptions, fetch_videos
    from wtours.selection import select_videos
    from wtours.store import Store

    manifest = load_manifest(request.manifest)
    entries = select_videos(manifest, request.only, request.group)
    store = Store.at(request.data_dir)
    if request.dry_run:
        return FetchResult(store, entries, dry_run=True)
    options = FetchOptions(
        max_height=request.max_height,
        cookies=request.cookies,
        extractor_args=list(request.extractor_args or []),
        proxy=request.proxy,
        ytdlp_args=request.ytdlp_args,
        retries=request.retries,
        retry_wait=request.retry_wait,
        full_verify=request.full_verify,
    )
    return FetchResult(store, entries, fetch_videos(manifest, entries, store, options))


class StatusRequest(Request):
    """Which videos ``wtours status`` shows: every video of the manifest, or of one group."""

    manifest: ManifestPath = Field(None, description=MANIFEST_HELP)
    group: Group = Field(None, description=GROUP_HELP)
    data_dir: DataDir = Field(None, description=DATA_DIR_HELP)


@dataclass
class StatusResult:
    store: Store
    entries: list[VideoEntry]
    exit_code: int = 0

    def report(self) -> None:
        from wtours.pipelines.fetch import print_status

        print_status(self.entries, self.store)


def status(request: StatusRequest) -> StatusResult:
    """Where each video stands: verified, missing, partly downloaded, failed or present but unverified."""
    from wtours.manifest import load_manifest
    from wtours.selection import select_videos
    from wtours.store import Store

    return StatusResult(Store.at(request.data_dir), select_videos(load_manifest(request.manifest), None, request.group))
