"""The comparison's tables: ``results.*`` (one row per run) and ``summary.*`` (one row per condition), as
Markdown, CSV and LaTeX (booktabs)."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from typing import Any

from wtours.trainers.evaluation.compare.conditions import Condition, SeedStats, seed_stats
from wtours.trainers.evaluation.compare.runs import RunRecord

MISSING = "—"

# (CSV header, table header, how a table cell shows the value)
COLUMNS = (
    ("run", "run", str),
    ("seed", "seed", str),
    ("method", "method", str),
    ("arch", "backbone", str),
    ("pretraining_videos", "pretraining videos", str),
    ("steps", "steps", str),
    ("total_steps", "total steps", str),
    ("first_loss", "first loss", "{:.3f}".format),
    ("final_loss", "final loss", "{:.3f}".format),
    ("knn_top1", "k-NN top-1", "{:.1f}".format),
    ("knn_k", "k", str),
    ("knn_set", "k-NN set", str),
    ("knn_untrained_top1", "k-NN untrained", "{:.1f}".format),
    ("linear_top1", "linear top-1", "{:.1f}".format),
    ("linear_untrained_top1", "linear untrained", "{:.1f}".format),
    ("davis_jf", "J&F", "{:.1f}".format),
    ("davis_j", "J", "{:.1f}".format),
    ("davis_f", "F", "{:.1f}".format),
)
HIGHER_IS_BETTER = ("knn_top1", "linear_top1", "davis_jf", "davis_j", "davis_f")


def table_rows(records: Sequence[RunRecord]) -> list[dict[str, Any]]:
    """One dict per run keyed by the CSV headers; None where not measured."""
    rows = []
    for record in records:
        best_knn = record.best_knn
        rows.append(
            {
                "run": record.label,
                "seed": record.seed,
                "method": record.method,
                "arch": record.arch,
                "pretraining_videos": record.videos,
                "steps": record.steps_done,
                "total_steps": record.total_steps,
                "first_loss": record.first_loss,
                "final_loss": record.final_loss,
                "knn_top1": best_knn[1] if best_knn else None,
                "knn_k": best_knn[0] if best_knn else None,
                "knn_set": record.knn_set if record.knn_top1 else None,
                "knn_untrained_top1": record.knn_untrained,
                "linear_top1": record.linear_top1,
                "linear_untrained_top1": record.linear_untrained_top1,
                "davis_jf": record.davis.get("JF"),
                "davis_j": record.davis.get("J"),
                "davis_f": record.davis.get("F"),
                "missing": ", ".join(record.missing),
            }
        )
    return rows


def _cell(row: dict[str, Any], key: str, show) -> str:
    value = row[key]
    return MISSING if value is None or (isinstance(value, float) and math.isnan(value)) else show(value)


def _csv(rows: Sequence[dict[str, Any]], fieldnames: Sequence[str]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(fieldnames), lineterminator="\n")
    writer.writeheader()
    writer.writerows({key: "" if row.get(key) is None else row[key] for key in fieldnames} for row in rows)
    return buffer.getvalue()


def _markdown_table(
    headers: Sequence[str], cell_rows: Sequence[Sequence[str]], note: str, notes: Sequence[str] = ()
) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |" for cells in cell_rows]
    left_out = "".join(f"\n- {line}" for line in notes)
    return "\n".join(lines) + f"\n\n{note}\n" + (f"\nLeft out or not comparable:\n{left_out}\n" if notes else "")


_LATEX_SPECIALS = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
    "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", MISSING: "---", "±": r"$\pm$",
}  # fmt: skip


def latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIALS.get(char, char) for char in text)


def _latex_table(
    headers: Sequence[str], cell_rows: Sequence[Sequence[str]], numeric: Sequence[bool], bold: set[tuple[int, int]]
) -> str:
    """A booktabs table (needs ``\\usepackage{booktabs}``); the (row, column) cells of ``bold`` in bold."""
    lines = [
        r"\begin{tabular}{" + "".join("r" if flag else "l" for flag in numeric) + "}",
        r"\toprule",
        " & ".join(latex_escape(title) for title in headers) + r" \\",
        r"\midrule",
    ]
    for row_index, cells in enumerate(cell_rows):
        shown = [latex_escape(cell) for cell in cells]
        shown = [r"\textbf{" + cell + "}" if (row_index, col) in bold else cell for col, cell in enumerate(shown)]
        lines.append(" & ".join(shown) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def _best_cells(values_by_column: dict[int, Sequence[float | None]]) -> set[tuple[int, int]]:
    """(row, column) of the highest value of each column (every row holding it)."""
    bold = set()
    for column, values in values_by_column.items():
        measured = [value for value in values if value is not None and not math.isnan(value)]
        bold |= {(row, column) for row, value in enumerate(values) if measured and value == max(measured)}
    return bold


def results_csv(rows: Sequence[dict[str, Any]]) -> str:
    """Full-precision numbers, empty cells where not measured."""
    return _csv(rows, [*(key for key, _, _ in COLUMNS), "missing"])


def results_markdown(rows: Sequence[dict[str, Any]], notes: Sequence[str] = ()) -> str:
    headers = [*(title for _, title, _ in COLUMNS), "not measured"]
    cell_rows = [[*(_cell(row, key, show) for key, _, show in COLUMNS), row["missing"] or MISSING] for row in rows]
    note = (
        "Accuracies in percent (k-NN at its best k; linear probe at its best epoch); J&F, J, F in percent. "
        "k-NN untrained: the same network before training (the run's encoder at step 0), at the same k (the floor). "
        "First and final loss: the mean of the first and of the last logging interval."
    )
    return _markdown_table(headers, cell_rows, note, notes)


def results_latex(rows: Sequence[dict[str, Any]]) -> str:
    """A booktabs table (needs ``\\usepackage{booktabs}``); the best value of each accuracy column in bold."""
    keys = [key for key, _, _ in COLUMNS]
    numeric = [show is not str or key in ("seed", "steps", "total_steps", "knn_k") for key, _, show in COLUMNS]
    bold = _best_cells({keys.index(key): [row[key] for row in rows] for key in HIGHER_IS_BETTER})
    cell_rows = [[_cell(row, key, show) for key, _, show in COLUMNS] for row in rows]
    return _latex_table([title for _, title, _ in COLUMNS], cell_rows, numeric, bold)


# One row per condition. CSV: full-precision numbers (sd and interval empty for one run); the Markdown and LaTeX
# tables show mean ± sd.
SUMMARY_FIELDS = (
    "condition", "method", "arch", "pretraining_videos", "runs", "seeds", "steps", "final_loss_mean",
    "final_loss_sd", "loss_change_pct_mean", "loss_change_pct_sd", "knn_k", "knn_set", "knn_top1_mean", "knn_top1_sd",
    "knn_untrained_mean", "knn_gain_mean", "knn_gain_sd", "knn_gain_ci95", "linear_top1_mean", "linear_top1_sd",
    "linear_untrained_mean",
    "davis_jf_mean", "davis_jf_sd",
)  # fmt: skip
SUMMARY_HEADERS = (
    "condition", "method", "backbone", "pretraining videos", "runs (seeds)", "steps", "final loss", "loss change",
    "k-NN top-1", "k", "k-NN set", "k-NN untrained", "gain over untrained (95 % interval)", "linear top-1",
    "linear untrained", "J&F",
)  # fmt: skip


def _steps_text(condition: Condition) -> str:
    steps = sorted({record.steps_done for record in condition.runs if record.steps_done is not None})
    return MISSING if not steps else str(steps[0]) if len(steps) == 1 else f"{steps[0]}-{steps[-1]}"


def _condition_knn_set(condition: Condition) -> str | None:
    if condition.knn_k is None:
        return None
    return next(record.knn_set for record in condition.runs if record.knn_top1)


def summary_measurements(condition: Condition) -> dict[str, SeedStats | None]:
    return {
        "final_loss": seed_stats([record.final_loss for record in condition.runs]),
        "loss_change_pct": condition.loss_change(),
        "knn_top1": condition.knn(),
        "knn_untrained": condition.knn(untrained=True),
        "knn_gain": condition.knn_gain(),
        "linear_top1": seed_stats([record.linear_top1 for record in condition.runs]),
        "linear_untrained": seed_stats([record.linear_untrained_top1 for record in condition.runs]),
        "davis_jf": seed_stats([record.davis.get("JF") for record in condition.runs]),
    }


def summary_rows(conditions: Sequence[Condition]) -> list[dict[str, Any]]:
    """One dict per condition keyed by SUMMARY_FIELDS; None where not measured."""
    rows = []
    for condition in conditions:
        stats = summary_measurements(condition)
        row: dict[str, Any] = {
            "condition": condition.label, "method": condition.method, "arch": condition.arch,
            "pretraining_videos": condition.videos, "runs": len(condition.runs),
            "seeds": " ".join("?" if seed is None else str(seed) for seed in condition.seeds),
            "steps": _steps_text(condition), "knn_k": condition.knn_k, "knn_set": _condition_knn_set(condition),
        }  # fmt: skip
        for name, stat in stats.items():
            row[f"{name}_mean"] = stat.mean if stat else None
            row[f"{name}_sd"] = stat.sd if stat else None
        row["knn_gain_ci95"] = stats["knn_gain"].half95 if stats["knn_gain"] else None
        rows.append({key: row.get(key) for key in SUMMARY_FIELDS})
    return rows


def _summary_cells(condition: Condition, stats: dict[str, SeedStats | None]) -> list[str]:
    def shown(name: str, digits: int = 1, sign: str = "") -> str:
        stat = stats[name]
        return MISSING if stat is None else stat.text(digits, sign)

    seeds = ", ".join("?" if seed is None else str(seed) for seed in condition.seeds)
    change = MISSING if stats["loss_change_pct"] is None else f"{shown('loss_change_pct', 0, '+')} %"
    gain = MISSING if stats["knn_gain"] is None else stats["knn_gain"].interval_text()
    return [
        condition.label, condition.method, condition.arch, condition.videos, f"{len(condition.runs)} ({seeds})",
        _steps_text(condition), shown("final_loss", 3), change, shown("knn_top1"),
        MISSING if condition.knn_k is None else str(condition.knn_k), _condition_knn_set(condition) or MISSING,
        shown("knn_untrained"), gain,
        shown("linear_top1"), shown("linear_untrained"), shown("davis_jf"),
    ]  # fmt: skip


SUMMARY_NOTE = (
    "One row per condition: runs whose settings differ only in their seed (and in where and how they ran). "
    "mean ± sample standard deviation over its runs (the value alone for one run). k-NN at the k with the best "
    "mean; untrained: the same networks at step 0 (the floor); gain: each run above its own floor, with the 95 % "
    "interval of the mean (Student's t, n - 1 degrees of freedom). Loss change: from the first to the final "
    "logged loss, in percent of the first."
)


def summary_markdown(conditions: Sequence[Condition], notes: Sequence[str] = ()) -> str:
    cell_rows = [_summary_cells(condition, summary_measurements(condition)) for condition in conditions]
    return _markdown_table(SUMMARY_HEADERS, cell_rows, SUMMARY_NOTE, notes)


def summary_latex(conditions: Sequence[Condition]) -> str:
    """The best mean of k-NN, linear and J&F in bold."""
    stats = [summary_measurements(condition) for condition in conditions]
    bolded = {"knn_top1": "k-NN top-1", "linear_top1": "linear top-1", "davis_jf": "J&F"}
    bold = _best_cells({SUMMARY_HEADERS.index(title): [row[name].mean if row[name] else None for row in stats]
                        for name, title in bolded.items()})  # fmt: skip
    numeric = [index >= 5 for index in range(len(SUMMARY_HEADERS))]
    cell_rows = [_summary_cells(condition, row) for condition, row in zip(conditions, stats, strict=True)]
    return _latex_table(SUMMARY_HEADERS, cell_rows, numeric, bold)


def summary_csv(conditions: Sequence[Condition]) -> str:
    """Full-precision numbers, empty cells where not measured (sd and interval: for one run)."""
    return _csv(summary_rows(conditions), SUMMARY_FIELDS)
