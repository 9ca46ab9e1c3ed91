"""``wtours sample``: the embedded sample (a walking-tour-like take, a movie-like cut sequence) with its truth."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from pydantic import Field

from wtours.workflows.requests import Request, argument


class SampleRequest(Request):
    out_dir: Annotated[Path, argument()] = Field(
        Path("sample"), description="Folder to write the sample videos, truth and manifest to."
    )
    seconds: float = Field(8.0, ge=1.0, description="Length of each sample video.")
    width: int = Field(640, ge=64, description="Frame width (height follows 16:9).")
    fps: int = Field(30, ge=1, description="Frames per second.")
    seed: int = Field(0, description="Random seed of object paths and the camera jitter.")


@dataclass
class SampleResult:
    written: list[Path]
    exit_code: int = 0

    def report(self) -> None:
        for path in self.written:
            print(path)


def render_sample(request: SampleRequest) -> SampleResult:
    """Render walk.mp4 and movie.mp4, their truth JSON and a manifest listing them into ``out_dir``."""
    from wtours.sample import write_sample_set

    return SampleResult(
        write_sample_set(request.out_dir, seconds=request.seconds, width=request.width, fps=request.fps,
                         seed=request.seed)  # fmt: skip
    )
