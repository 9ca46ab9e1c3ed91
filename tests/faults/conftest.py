"""The fault suite's fixture: the real CLI entry point run in this process (helpers: faultkit.py)."""

from __future__ import annotations

import sys

import pytest
from faultkit import Outcome


@pytest.fixture
def cli(capsys, monkeypatch):
    """Run the console entry point in this process: ``cli("fetch", ...) -> Outcome``."""
    from wtours.cli import main

    def run(*args: object) -> Outcome:
        capsys.readouterr()
        monkeypatch.setattr(sys, "argv", ["wtours", *map(str, args)])
        try:
            main()
            code = 0
        except SystemExit as done:
            code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
        out, err = capsys.readouterr()
        return Outcome(code, out, err)

    return run
