"""The exceptions a user sees, and how each becomes the one line the CLI prints.

Exit codes of ``wtours``: 2 for input the user can fix (``WtoursError``: a bad manifest, option or file),
1 for a run that could not finish (a failed video, another run holding the lock: ``BusyError``, a data
directory that is read-only, full or not ours: any ``OSError``), 130 when interrupted.
"""

from __future__ import annotations

import errno
import os


class WtoursError(Exception):
    """An error caused by input the user can fix (a bad manifest, a broken video, a missing file)."""

    exit_code = 2


class BusyError(WtoursError):
    """Another wtours process is working on the same video; nothing was touched."""

    exit_code = 1


def prefixed(prefix: str, message: str) -> str:
    """``prefix: message``, unless the message already starts with that prefix (no ``venice: venice: ...``)."""
    return message if message.startswith(f"{prefix}:") else f"{prefix}: {message}"


def one_line(message: str) -> str:
    """A message on one line. An error re-raised from a DataLoader worker carries the worker's whole
    traceback in its text; only its last line, the original error, is kept."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    if any(line.startswith("Traceback (most recent call last)") or "Original Traceback" in line for line in lines):
        last = lines[-1]
        head, sep, rest = last.partition(": ")
        # "wtours.errors.WtoursError: text" -> "text"; "PermissionError: [Errno 13] ..." keeps its name.
        return rest if sep and head.endswith("WtoursError") else last
    return " ".join(lines)


def os_error_message(err: OSError) -> str:
    """``<path>: Read-only file system (EROFS)``: what failed, where, and the errno name to search for.

    A known errno is described by the C library's words, whoever raised it (pyarrow says "Error writing
    bytes to file. Detail: [errno 28] No space left on device"): the same failure reads the same everywhere.
    """
    paths = [str(path) for path in (err.filename, err.filename2) if path is not None]
    code = errno.errorcode.get(err.errno) if isinstance(err.errno, int) else None
    reason = (os.strerror(err.errno) if code else err.strerror) or one_line(str(err)) or type(err).__name__
    text = f"{' -> '.join(paths)}: {reason}" if paths else reason
    return f"{text} ({code})" if code else text
