"""``wtours compare``: gather finished (or unfinished) runs and draw the paper's comparisons.

A run is the folder ``pretrain`` writes, plus whatever ``wtours eval`` put in its ``eval/`` folder::

    runs/<name>/config.yaml            method, backbone, data (video_ids / data_dir: the pretraining videos)
    runs/<name>/metrics.jsonl          one line per logged step: step, epoch, loss, lr, ...; with run.knn_every,
                                       also step, knn_top1: {k: percent} (the k-NN curve, step 0 = the floor)
    runs/<name>/summary.json           steps_done, total_steps (absent while the run is unfinished)
    runs/<name>/encoder.safetensors    the exported encoder (for the attention maps)
    runs/<name>/eval/knn.json          wtours eval knn RUN       top1: {k: percent}
    runs/<name>/eval/knn_untrained.json  wtours eval knn RUN --untrained: the same, untrained (the baseline)
    runs/<name>/eval/linear.json       wtours eval linear RUN    top1 / best_top1: fraction
    runs/<name>/eval/linear_untrained.json  wtours eval linear RUN --untrained: the same probe, untrained
    runs/<name>/eval/davis/summary.json wtours eval davis RUN    JF_mean, J_mean, F_mean: fractions

Runs whose settings differ only in their seed (and in where and how they ran: ``run.name``, ``run.output_dir``,
``run.device``, logging and checkpointing) are one **condition**, measured once per seed. The figures draw a
condition once: its mean as the bar, each seed as a dot, its runs' curves in one colour. ``summary.*`` gives each
condition's mean ± sample standard deviation over its seeds, and the 95 % interval of its mean gain over the
untrained floor (Student's t); ``results.*`` keeps one row per run.

`compare_runs` writes, into one folder: ``loss_curves``, ``eval_by_method``, ``eval_by_videos``, (when a run
logged one) ``knn_curves`` and (given images) ``attention`` as PNG and PDF; ``results.md``, ``results.csv``,
``results.tex`` (per run); ``summary.md``, ``summary.csv``, ``summary.tex`` (per condition); and ``runs.json``
with everything gathered. A missing measurement is "—" in the tables, empty in the CSV and "n/a" in the figures.
All accuracies are percent; the linear probe reports its best epoch, as DINO's script does.

Inside: ``runs`` reads a run folder, ``conditions`` groups runs by their settings and takes the statistics over
seeds, ``tables`` and ``figures`` draw them; this module builds a `Comparison` and writes it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from wtours.trainers.evaluation.compare.conditions import Condition, SeedStats, group_conditions, seed_stats
from wtours.trainers.evaluation.compare.figures import (
    Panel,
    draw_attention_rows,
    draw_evaluation_bars,
    draw_knn_curves,
    draw_loss_curves,
    evaluation_panels,
)
from wtours.trainers.evaluation.compare.runs import RunRecord, gather_runs, load_run, same_protocol
from wtours.trainers.evaluation.compare.tables import (
    results_csv,
    results_latex,
    results_markdown,
    summary_csv,
    summary_latex,
    summary_markdown,
    table_rows,
)

__all__ = [
    "Comparison", "Condition", "Panel", "RunRecord", "SeedStats", "build_comparison", "compare_runs",
    "evaluation_panels", "gather_runs", "group_conditions", "load_run", "seed_stats", "write_comparison",
]  # fmt: skip


@dataclass
class Comparison:
    """The runs, their conditions, and what the figures and tables leave out or cannot compare, and why."""

    records: list[RunRecord]
    conditions: list[Condition]
    notes: list[str]


def build_comparison(run_dirs: Sequence[Path]) -> Comparison:
    """Gather the runs, group them into conditions and check that their k-NN scores compare: each run's floor on
    its own set (`load_run`), the seeds of a condition on one set, and all runs on one set (else a note)."""
    records = gather_runs(run_dirs)
    conditions = group_conditions(records)
    notes = [note for record in records for note in record.notes]
    for condition in conditions:
        if not condition.knn_comparable:
            sets = ", ".join(f"{record.label} on {record.knn_set}" for record in condition.runs if record.knn_top1)
            notes.append(f"{condition.label}: its seeds' k-NN were scored on different sets ({sets}); no mean is taken")
    kinds: list[list[RunRecord]] = []  # the scored runs, one list per way of scoring
    for record in (record for record in records if record.knn_top1):
        kind = next((kind for kind in kinds if same_protocol(kind[0].knn_protocol, record.knn_protocol)), None)
        if kind is None:
            kinds.append([record])
        else:
            kind.append(record)
    if len(kinds) > 1:
        by_set = "; ".join(f"{kind[0].knn_set}: {', '.join(record.label for record in kind)}" for kind in kinds)
        notes.append(f"k-NN was scored on {len(kinds)} different sets ({by_set}): its numbers compare only within one")
    return Comparison(records, conditions, notes)


def compare_runs(run_dirs: Sequence[Path], out_dir: Path, **options: Any) -> dict[str, Path]:
    """Gather ``run_dirs`` and write the figures and tables into ``out_dir`` (``options``: `write_comparison`'s).
    Returns file name -> path."""
    return write_comparison(build_comparison(run_dirs), out_dir, **options)


def write_comparison(
    comparison: Comparison,
    out_dir: Path,
    *,
    attention_images: Sequence[Path] | None = None,
    attention_size: int = 224,
    attention_mass: float | None = None,
    device: str = "auto",
) -> dict[str, Path]:
    """Write the figures and tables of ``comparison`` into ``out_dir``. Returns file name -> path."""
    from wtours.store import atomic_write_json, atomic_write_text

    records, conditions = comparison.records, comparison.conditions
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = draw_loss_curves(conditions, out_dir / "loss_curves")
    written += draw_knn_curves(conditions, out_dir / "knn_curves")
    written += draw_evaluation_bars(conditions, out_dir / "eval_by_method", "method")
    written += draw_evaluation_bars(conditions, out_dir / "eval_by_videos", "videos")
    if attention_images:  # one run per condition: its first seed
        written += draw_attention_rows(
            [condition.runs[0] for condition in conditions], attention_images, out_dir / "attention",
            image_size=attention_size, mass=attention_mass, device=device,
        )  # fmt: skip
    rows = table_rows(records)
    tables = {
        "results.md": results_markdown(rows, comparison.notes),
        "results.csv": results_csv(rows),
        "results.tex": results_latex(rows),
        "summary.md": summary_markdown(conditions, comparison.notes),
        "summary.csv": summary_csv(conditions),
        "summary.tex": summary_latex(conditions),
    }
    for name, text in tables.items():
        atomic_write_text(out_dir / name, text)
        written.append(out_dir / name)
    condition_of = {record.label: condition.label for condition in conditions for record in condition.runs}
    gathered = [
        {
            **asdict(record),
            "path": str(record.path),
            "first_loss": record.first_loss,
            "final_loss": record.final_loss,
            "missing": record.missing,
            "condition": condition_of[record.label],
        }
        for record in records
    ]
    atomic_write_json(out_dir / "runs.json", gathered)
    written.append(out_dir / "runs.json")
    return {path.name: path for path in written}
