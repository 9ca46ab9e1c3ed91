"""One progress helper for every long-running stage, and the console everything prints to."""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

# Progress and messages go to stderr so that stdout stays clean for data a user may pipe.
console = Console(stderr=True)


def make_progress(*, transfer: bool = False) -> Progress:
    """A rich progress display: bytes and speed for downloads (`transfer=True`), counts otherwise."""
    columns = [TextColumn("[bold]{task.description}"), BarColumn(), TaskProgressColumn()]
    if transfer:
        columns += [DownloadColumn(), TransferSpeedColumn()]
    else:
        columns += [MofNCompleteColumn()]
    columns += [TimeElapsedColumn(), TimeRemainingColumn()]
    return Progress(*columns, console=console, transient=False)
