"""``wtours compare``: several runs side by side, as the paper's figures and tables."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

from pydantic import Field

from wtours.workflows.requests import Request, argument, flag


class CompareRequest(Request):
    runs: Annotated[list[Path], argument()] = Field(
        ...,
        description="Run folders (runs/<name>) to compare; their eval/knn.json, eval/linear.json and eval/davis/ are "
        "read where `wtours eval` wrote them. Runs missing some are shown as n/a, not dropped. Give every seed's "
        "run: runs that differ only in their seed are one condition (its mean and spread).",
    )
    out: Annotated[Path, flag("--out", "-o")] = Field(Path("compare"), description="Folder for the figures and tables.")
    images: Annotated[list[Path] | None, flag("--image", exists=True, dir_okay=False)] = Field(
        None,
        description="Also draw every run's per-head attention on this image, one row per run (repeat for several).",
    )
    image_size: int = Field(
        224, ge=16, description="Square size of the attention images; a multiple of every patch size."
    )
    threshold: float | None = Field(
        None,
        ge=0.01,
        le=1.0,
        description="Show the image inside the patches holding this share of each head's attention (DINO: 0.6) "
        "instead of raw maps.",
    )
    device: str = Field("auto", description="Where the attention maps are computed: auto, cuda or cpu.")


@dataclass
class CompareResult:
    written: dict[str, Path]
    notes: list[str] = field(default_factory=list)  # what the figures and tables left out, and why
    exit_code: int = 0

    def report(self) -> None:
        for path in self.written.values():
            print(path)
        for note in self.notes:
            print(f"note: {note}", file=sys.stderr)


def compare(request: CompareRequest) -> CompareResult:
    """Loss curves, k-NN / linear / J&F per method and per pretraining videos, and results tables. Runs that
    differ only in their seed are drawn once, at their mean with each seed a dot; summary.md gives mean ± sd."""
    from wtours.trainers.evaluation.compare import build_comparison, write_comparison

    comparison = build_comparison(request.runs)
    written = write_comparison(
        comparison, request.out, attention_images=request.images, attention_size=request.image_size,
        attention_mass=request.threshold, device=request.device,
    )  # fmt: skip
    return CompareResult(written, comparison.notes)
