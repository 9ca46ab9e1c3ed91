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
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from wtours.errors import WtoursError

MISSING = "—"
FIGURE_FORMATS = ("png", "pdf")


@dataclass
class RunRecord:
    """Everything `compare_runs` shows about one run; None means "not measured"."""

    label: str
    path: Path
    method: str
    arch: str
    videos: str  # the pretraining video set, e.g. "Venice+Kyoto" or "all in demo/data"
    config: dict[str, Any]
    steps_done: int | None = None
    total_steps: int | None = None
    steps_per_epoch: float | None = None
    loss_steps: list[int] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    knn_curve: list[tuple[int, dict[int, float]]] = field(default_factory=list)  # (step, k -> percent) while training
    knn_top1: dict[int, float] = field(default_factory=dict)  # k -> percent
    knn_untrained_top1: dict[int, float] = field(default_factory=dict)  # the architecture untrained, k -> percent
    linear_top1: float | None = None  # percent
    linear_untrained_top1: float | None = None  # the same probe of the network at step 0, percent
    davis: dict[str, float] = field(default_factory=dict)  # "JF", "J", "F" -> percent
    has_encoder: bool = False
    seed: int | None = None  # run.seed
    precision: str | None = None  # as trained (summary.json): a bf16 preset trains in fp32 on some CPUs
    knn_set: str | None = None  # the labelled set k-NN scored on, for people: "study_set (1000 / 400, 64 px)"
    knn_protocol: dict[str, Any] = field(default_factory=dict)  # what makes two k-NN scores comparable
    notes: list[str] = field(default_factory=list)  # what was left out, and why

    @property
    def first_loss(self) -> float | None:
        """The first logged loss (the mean of the first logging interval): beside the final one, whether it fell."""
        return self.losses[0] if self.losses else None

    @property
    def final_loss(self) -> float | None:
        return self.losses[-1] if self.losses else None

    @property
    def best_knn(self) -> tuple[int, float] | None:
        """(k, top-1) of the best k, the smaller k on a tie."""
        if not self.knn_top1:
            return None
        return max(sorted(self.knn_top1.items()), key=lambda item: item[1])

    @property
    def knn_untrained(self) -> float | None:
        """The untrained baseline's top-1 at the trained encoder's best k (else at the baseline's best k)."""
        best = self.best_knn
        if best is not None and best[0] in self.knn_untrained_top1:
            return self.knn_untrained_top1[best[0]]
        return max(self.knn_untrained_top1.values()) if self.knn_untrained_top1 else None

    @property
    def missing(self) -> list[str]:
        absent = {"metrics": not self.losses, "k-NN": not self.knn_top1, "linear": self.linear_top1 is None}
        absent["DAVIS"] = not self.davis
        return [name for name, is_absent in absent.items() if is_absent]


# ------------------------------------------------------------------------------------------------ gathering


def _videos_label(data: dict[str, Any]) -> str:
    if data.get("video_ids"):
        return "+".join(str(video_id) for video_id in data["video_ids"])
    data_dir = Path(str(data.get("data_dir", "data")))
    return f"all in {'/'.join(data_dir.parts[-2:])}"


def _arch_label(backbone: dict[str, Any]) -> str:
    label = f"{backbone.get('arch', '?')}/{backbone.get('patch_size', '?')}"
    if backbone.get("embed_dim") or backbone.get("depth"):  # a shrunk test model: say how small
        label += f" (d{backbone.get('embed_dim') or '?'}x{backbone.get('depth') or '?'})"
    return label


def _read_metrics(path: Path) -> tuple[list[int], list[float], list[tuple[int, dict[int, float]]]]:
    """The logged (step, loss) lines, and the k-NN curve of `run.knn_every` (step, k -> percent)."""
    steps, losses, knn_curve = [], [], []
    if not path.is_file():
        return steps, losses, knn_curve
    for line in path.read_text(encoding="utf-8").splitlines():
        try:  # a run killed mid-write leaves a partial last line
            record = json.loads(line)
            if "knn_top1" in record:
                knn_curve.append((int(record["step"]), {int(k): float(v) for k, v in record["knn_top1"].items()}))
                continue
            step, loss = int(record["step"]), float(record["loss"])
        except (ValueError, KeyError, TypeError, AttributeError):
            continue
        steps.append(step)
        losses.append(loss)
    return steps, losses, knn_curve


def _linear_top1(report: dict[str, Any]) -> float | None:
    """The best epoch's top-1 in percent (what DINO prints), else the last one's; None without a report."""
    top1 = report.get("best_top1", report.get("top1"))
    return None if top1 is None else 100 * float(top1)


# What makes two linear probes comparable: the set (its size and classes), the features and the probe's recipe.
LINEAR_PROTOCOL_KEYS = ("protocol", "classes", "train_images", "val_images", "n_last_blocks", "avgpool_patches",
                        "resize", "crop", "config")  # fmt: skip


def linear_protocol(report: dict[str, Any]) -> dict[str, Any]:
    return {key: report[key] for key in LINEAR_PROTOCOL_KEYS if report.get(key) is not None}


def _linear_differences(first: dict[str, Any], second: dict[str, Any]) -> str:
    a, b = linear_protocol(first), linear_protocol(second)
    return ", ".join(f"{key} {a[key]} vs {b[key]}" for key in sorted(a.keys() & b.keys()) if a[key] != b[key])


# What a k-NN report says of how it scored: two scores compare only if every one of these both reports hold is
# equal. The set is known by its classes and sizes, not its path (a folder may be named relatively or moved).
KNN_PROTOCOL_KEYS = ("classes", "n_train", "n_val", "image_size", "temperature")


def knn_protocol(report: dict[str, Any]) -> dict[str, Any]:
    return {key: report[key] for key in KNN_PROTOCOL_KEYS if report.get(key) is not None}


def same_protocol(first: dict[str, Any], second: dict[str, Any]) -> bool:
    return all(first[key] == second[key] for key in first.keys() & second.keys())


def knn_set_label(report: dict[str, Any]) -> str:
    name = Path(str(report.get("labelled_set") or "?")).name
    sizes = f"{report.get('n_train', '?')} / {report.get('n_val', '?')}"
    return f"{name} ({sizes}, {report.get('image_size', '?')} px)"


def load_run(run_dir: Path) -> RunRecord:
    """Read one run folder; only ``config.yaml`` is required."""
    import yaml

    from wtours.store import RunDir, read_json

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise WtoursError(f"{run_dir}: no such run folder")
    files = RunDir(run_dir)
    config_path = files.config_path
    if not config_path.is_file():
        raise WtoursError(f"{run_dir}: not a run folder (no config.yaml)")
    try:
        config = yaml.safe_load(config_path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise WtoursError(f"{config_path}: not valid YAML ({err.__class__.__name__})") from None
    if not isinstance(config, dict):
        raise WtoursError(f"{config_path}: expected a mapping of sections")
    record = RunRecord(
        label=str((config.get("run") or {}).get("name") or run_dir.name),
        path=run_dir,
        method=str(config.get("method", "dino")),
        arch=_arch_label(config.get("backbone") or {}),
        videos=_videos_label(config.get("data") or {}),
        config=config,
        has_encoder=files.encoder_path.is_file(),
    )
    record.loss_steps, record.losses, record.knn_curve = _read_metrics(files.metrics_path)
    summary = files.summary() or {}
    record.steps_done = summary.get("steps_done", record.loss_steps[-1] if record.loss_steps else None)
    record.total_steps = summary.get("total_steps")
    run_section = config.get("run") or {}
    seed = run_section.get("seed")
    record.seed = seed if isinstance(seed, int) and not isinstance(seed, bool) else None
    record.precision = summary.get("precision") or run_section.get("precision")
    epochs = (config.get("optim") or {}).get("epochs")
    if record.total_steps and epochs:  # total_steps = epochs x steps per epoch, exactly
        record.steps_per_epoch = record.total_steps / epochs

    knn = read_json(files.knn_path()) or {}
    record.knn_top1 = {int(k): float(value) for k, value in (knn.get("top1") or {}).items()}
    untrained = read_json(files.knn_path(untrained=True)) or {}
    record.knn_untrained_top1 = {int(k): float(value) for k, value in (untrained.get("top1") or {}).items()}
    record.knn_protocol, record.knn_set = knn_protocol(knn), knn_set_label(knn)
    if record.knn_top1 and record.knn_untrained_top1 and not same_protocol(knn_protocol(untrained), knn_protocol(knn)):
        record.notes.append(
            f"{record.label}: its untrained floor was scored on {knn_set_label(untrained)}, the run on "
            f"{record.knn_set}; the floor is left out (score both on one set: eval knn RUN --data SET [--untrained])"
        )
        record.knn_untrained_top1 = {}
    linear, linear_floor = read_json(files.linear_path()) or {}, read_json(files.linear_path(untrained=True)) or {}
    record.linear_top1, record.linear_untrained_top1 = _linear_top1(linear), _linear_top1(linear_floor)
    both = record.linear_top1 is not None and record.linear_untrained_top1 is not None
    if both and not same_protocol(linear_protocol(linear_floor), linear_protocol(linear)):
        record.notes.append(
            f"{record.label}: its untrained linear probe ran another protocol or set than the run's "
            f"({_linear_differences(linear_floor, linear)}); that floor is left out"
        )
        record.linear_untrained_top1 = None
    davis = read_json(files.davis_summary_path) or {}
    record.davis = {name: 100 * float(davis[f"{name}_mean"]) for name in ("JF", "J", "F") if f"{name}_mean" in davis}
    return record


def gather_runs(run_dirs: Sequence[Path]) -> list[RunRecord]:
    """Load every run; runs sharing a name are told apart by their parent folder."""
    if not run_dirs:
        raise WtoursError("give at least one run folder (runs/<name>)")
    records = [load_run(Path(path)) for path in run_dirs]
    labels = [record.label for record in records]
    for record in records:
        if labels.count(record.label) > 1:
            record.label = f"{record.path.resolve().parent.name}/{record.label}"
    return records


# ---------------------------------------------------------------------------------------------- conditions


@dataclass
class SeedStats:
    """One measurement over the runs of a condition: their mean, sample standard deviation and the half-width of
    the 95 % interval of the mean (Student's t with n - 1 degrees of freedom); the last two need two runs."""

    values: list[float]

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values)

    @property
    def sd(self) -> float | None:
        return statistics.stdev(self.values) if self.n > 1 else None

    @property
    def half95(self) -> float | None:
        if self.n < 2:
            return None
        from scipy.stats import t

        return float(t.ppf(0.975, self.n - 1)) * self.sd / math.sqrt(self.n)

    def text(self, digits: int = 1, sign: str = "") -> str:
        """``69.9 ± 0.3`` (mean ± sd), or the value alone for one run."""
        mean = f"{self.mean:{sign}.{digits}f}"
        return mean if self.sd is None else f"{mean} ± {self.sd:.{digits}f}"

    def interval_text(self, digits: int = 1) -> str:
        """``+13.2 (+9.4 to +17.0)``: the mean and its 95 % interval, signed; the mean alone for one run."""
        mean = f"{self.mean:+.{digits}f}"
        if self.half95 is None:
            return mean
        return f"{mean} ({self.mean - self.half95:+.{digits}f} to {self.mean + self.half95:+.{digits}f})"


def seed_stats(values: Sequence[float | None]) -> SeedStats | None:
    """The stats of the measured values (None: a run without the measurement), or None when no run has it."""
    measured = [float(value) for value in values if value is not None and not math.isnan(value)]
    return SeedStats(measured) if measured else None


@dataclass
class Condition:
    """Runs trained with the same settings but their seed: one setting, measured once per seed."""

    label: str
    runs: list[RunRecord]

    @property
    def method(self) -> str:
        return self.runs[0].method

    @property
    def arch(self) -> str:
        return self.runs[0].arch

    @property
    def videos(self) -> str:
        return self.runs[0].videos

    @property
    def seeds(self) -> list[int | None]:
        return [record.seed for record in self.runs]

    @property
    def knn_k(self) -> int | None:
        """The k with the best mean top-1 among the ks every scored run measured (the smaller on a tie); one run's
        own best k."""
        scored = [record.knn_top1 for record in self.runs if record.knn_top1]
        if not scored or not self.knn_comparable:
            return None
        ks = sorted(set.intersection(*(set(top1) for top1 in scored)))
        if not ks:
            return None
        return max(ks, key=lambda k: statistics.fmean(top1[k] for top1 in scored))

    @property
    def knn_comparable(self) -> bool:
        """Whether every scored run's k-NN was measured on the same set, the same way (else no mean is taken)."""
        protocols = [record.knn_protocol for record in self.runs if record.knn_top1]
        return all(same_protocol(protocols[0], other) for other in protocols[1:])

    def knn(self, untrained: bool = False) -> SeedStats | None:
        k = self.knn_k
        if k is None:
            return None
        return seed_stats([(r.knn_untrained_top1 if untrained else r.knn_top1).get(k) for r in self.runs])

    def knn_gain(self) -> SeedStats | None:
        """Each run's k-NN top-1 above its own untrained floor, at the condition's k."""
        k = self.knn_k
        pairs = [(r.knn_top1.get(k), r.knn_untrained_top1.get(k)) for r in self.runs] if k is not None else []
        return seed_stats([trained - floor for trained, floor in pairs if trained is not None and floor is not None])

    def loss_change(self) -> SeedStats | None:
        """Each run's change from its first to its final logged loss, in percent of the first."""
        return seed_stats([
            100 * (r.final_loss - r.first_loss) / abs(r.first_loss) for r in self.runs if r.losses and r.first_loss
        ])  # fmt: skip


# What the runs of one condition may differ in besides their seed: where they ran, were written and read their
# data from, how they were watched (resume.FREE_KEYS), the kernels, and the precision asked for (the precision
# they trained in is compared instead). The pretraining videos are compared by their label.
NOT_CONDITION_KEYS = ("run.seed", "run.device", "run.compile", "run.precision")
_SEED_IN_NAME = re.compile(r"[-_.]?seed[-_]?\d+", re.IGNORECASE)


def _condition_key(record: RunRecord) -> str:
    from wtours.trainers.training.resume import FREE_KEYS, flatten, with_defaults

    ignored = FREE_KEYS | set(NOT_CONDITION_KEYS)
    settings = {key: value for key, value in flatten(with_defaults(record.config)).items() if key not in ignored}
    return json.dumps([record.videos, record.precision, settings], sort_keys=True, default=str)


def _condition_label(runs: Sequence[RunRecord]) -> str:
    """The runs' common name: without its seed ("dino-seed0" -> "dino"), else their common prefix."""
    if len(runs) == 1:
        return runs[0].label
    stripped = {_SEED_IN_NAME.sub("", record.label) for record in runs}
    if len(stripped) == 1 and "" not in stripped:
        return stripped.pop()
    return os.path.commonprefix([record.label for record in runs]).rstrip("-_. ") or runs[0].label


def group_conditions(records: Sequence[RunRecord]) -> list[Condition]:
    """Group runs that differ only in their seed, in the order of their first run; each condition's runs by
    seed. Labels are made unique with a number."""
    groups: dict[str, list[RunRecord]] = {}
    for record in records:
        groups.setdefault(_condition_key(record), []).append(record)
    conditions = []
    for runs in groups.values():
        runs = sorted(runs, key=lambda record: (record.seed is None, record.seed or 0))
        conditions.append(Condition(_condition_label(runs), runs))
    taken: set[str] = set()
    for condition in conditions:
        label, number = condition.label, 2
        while label in taken:
            label, number = f"{condition.label} ({number})", number + 1
        condition.label = label
        taken.add(label)
    return conditions


# -------------------------------------------------------------------------------------------------- tables

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


def _summary_cells(condition: Condition) -> list[str]:
    stats = summary_measurements(condition)

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
    cell_rows = [_summary_cells(condition) for condition in conditions]
    return _markdown_table(SUMMARY_HEADERS, cell_rows, SUMMARY_NOTE, notes)


def summary_latex(conditions: Sequence[Condition]) -> str:
    """The best mean of k-NN, linear and J&F in bold."""
    means = {name: [summary_measurements(c)[name] for c in conditions] for name in ("knn_top1", "linear_top1",
                                                                                     "davis_jf")}  # fmt: skip
    columns = {name: SUMMARY_HEADERS.index(title) for name, title in
               (("knn_top1", "k-NN top-1"), ("linear_top1", "linear top-1"), ("davis_jf", "J&F"))}  # fmt: skip
    bold = _best_cells({columns[name]: [stat.mean if stat else None for stat in stats]
                        for name, stats in means.items()})  # fmt: skip
    numeric = [index >= 5 for index in range(len(SUMMARY_HEADERS))]
    return _latex_table(SUMMARY_HEADERS, [_summary_cells(condition) for condition in conditions], numeric, bold)


# ------------------------------------------------------------------------------------------------- figures


def smooth(values: Sequence[float]) -> list[float]:
    """Bias-corrected exponential moving average spanning about a tenth of the curve."""
    span = max(1, len(values) // 10)
    weight = 1 - 2 / (span + 1)
    average, smoothed = 0.0, []
    for index, value in enumerate(values, start=1):
        average = weight * average + (1 - weight) * value
        smoothed.append(average / (1 - weight**index) if weight > 0 else average)
    return smoothed


def _save_figure(figure, out_stem: Path) -> list[Path]:
    from wtours.store import atomic_path

    written = []
    for suffix in FIGURE_FORMATS:
        path = out_stem.with_name(f"{out_stem.name}.{suffix}")
        with atomic_path(path) as tmp:
            figure.savefig(tmp, format=suffix, dpi=200, bbox_inches="tight")
        written.append(path)
    return written


def _colors(keys: Sequence[str]) -> dict[str, Any]:
    """A tab10 colour per key, in order (cycling after ten)."""
    from matplotlib import colormaps

    palette = colormaps["tab10"].colors
    return {key: palette[index % len(palette)] for index, key in enumerate(keys)}


def _condition_colors(conditions: Sequence[Condition]) -> dict[str, Any]:
    """A colour per condition (its runs share it), keyed by run label."""
    colors = _colors([condition.label for condition in conditions])
    return {record.label: colors[condition.label] for condition in conditions for record in condition.runs}


def _legend_label(condition: Condition) -> str:
    return condition.label if len(condition.runs) == 1 else f"{condition.label} ({len(condition.runs)} seeds)"


def draw_loss_curves(conditions: Sequence[Condition], out_stem: Path) -> list[Path]:
    """One panel per method (their losses are not on one scale), one line per run, a colour per condition: raw
    faint, smoothed solid."""
    from matplotlib.figure import Figure

    records = [record for condition in conditions for record in condition.runs]
    methods = list(dict.fromkeys(record.method for record in records))
    by_epoch = all(record.steps_per_epoch for record in records if record.losses)
    figure = Figure(figsize=(4.2 * len(methods), 3.2), layout="constrained")
    colors = _condition_colors(conditions)
    for panel, method in zip(figure.subplots(1, len(methods), squeeze=False)[0], methods, strict=True):
        for condition in (condition for condition in conditions if condition.method == method):
            for index, record in enumerate(condition.runs):
                color, label = colors[record.label], _legend_label(condition) if index == 0 else None
                if not record.losses:
                    panel.plot([], [], ls="none", marker="x", color=color, label=f"{record.label} (no metrics)")
                    continue
                scale = record.steps_per_epoch if by_epoch else 1.0
                x = [step / scale for step in record.loss_steps]
                panel.plot(x, record.losses, color=color, alpha=0.25, linewidth=0.8)
                panel.plot(x, smooth(record.losses), color=color, linewidth=1.6, label=label)
        panel.set(title=method, xlabel="epoch" if by_epoch else "step", ylabel="training loss")
        panel.grid(alpha=0.3)
        panel.legend(fontsize=7)
    return _save_figure(figure, out_stem)


def draw_knn_curves(conditions: Sequence[Condition], out_stem: Path) -> list[Path]:
    """The k-NN top-1 of each run's encoder while it trained (`run.knn_every`; k = 20 where logged), one line per
    run in its condition's colour, its step-0 value (the untrained floor) dashed. Nothing is drawn when no run
    logged it."""
    from matplotlib.figure import Figure

    traced = [(condition, record) for condition in conditions for record in condition.runs if record.knn_curve]
    if not traced:
        return []
    by_epoch = all(record.steps_per_epoch for _, record in traced)
    figure = Figure(figsize=(5.2, 3.4), layout="constrained")
    panel = figure.subplots()
    colors = _condition_colors(conditions)
    ks, labelled = set(), set()
    for condition, record in traced:
        k = 20 if all(20 in top1 for _, top1 in record.knn_curve) else min(record.knn_curve[0][1])
        ks.add(k)
        scale = record.steps_per_epoch if by_epoch else 1.0
        x = [step / scale for step, _ in record.knn_curve]
        y = [top1[k] for _, top1 in record.knn_curve]
        color = colors[record.label]
        label = None if condition.label in labelled else _legend_label(condition)
        labelled.add(condition.label)
        panel.plot(x, y, color=color, marker="o", markersize=3, linewidth=1.4, label=label)
        if record.knn_curve[0][0] == 0:
            panel.axhline(y[0], color=color, linestyle="--", linewidth=0.9, alpha=0.7)
    k_label = ", ".join(str(k) for k in sorted(ks))
    panel.set(title=f"k-NN top-1 while training (k={k_label}; dashed: step 0)", xlabel="epoch" if by_epoch else
              "step", ylabel="%")  # fmt: skip
    panel.grid(alpha=0.3)
    panel.legend(fontsize=7)
    return _save_figure(figure, out_stem)


@dataclass
class Panel:
    """One panel of the evaluation bars: per condition, the value of each of its runs that has it, in percent,
    and for k-NN and the linear probe each run's untrained floor (k-NN: at the same k). An empty list: not
    measured."""

    title: str
    values: list[list[float]]
    floors: list[list[float]]


def evaluation_panels(conditions: Sequence[Condition]) -> list[Panel]:
    """The panels for every measurement at least one run has: k-NN at each k, the linear probe, DAVIS J&F. A
    floor is drawn only where every run with the value has one; k-NN scores from different sets (a condition
    whose seeds were scored on several) are not drawn."""

    def panel(title: str, pairs_per_condition: list[list[tuple[float | None, float | None]]]) -> Panel:
        values, floors = [], []
        for pairs in pairs_per_condition:
            scored = [(value, floor) for value, floor in pairs if value is not None]
            values.append([float(value) for value, _ in scored])
            floored = all(floor is not None for _, floor in scored)
            floors.append([float(floor) for _, floor in scored] if floored else [])
        return Panel(title, values, floors)

    ks = sorted({k for condition in conditions for record in condition.runs for k in record.knn_top1})
    panels = [
        panel(f"k-NN top-1, k={k}", [
            [(r.knn_top1.get(k), r.knn_untrained_top1.get(k)) for r in c.runs] if c.knn_comparable else []
            for c in conditions
        ])
        for k in ks
    ]  # fmt: skip
    panels.append(panel("linear top-1", [[(r.linear_top1, r.linear_untrained_top1) for r in c.runs]
                                         for c in conditions]))  # fmt: skip
    panels.append(panel("DAVIS J&F", [[(r.davis.get("JF"), None) for r in c.runs] for c in conditions]))
    return panels


def draw_evaluation_bars(conditions: Sequence[Condition], out_stem: Path, group_by: str) -> list[Path]:
    """One panel per measurement, one bar per condition at the mean of its runs, each run a dot on it when there
    are several; conditions grouped (and coloured) by ``group_by`` ("method" or "videos"). A condition without
    the measurement gets an "n/a" marker instead of a bar. A k-NN or linear bar is crossed by a dashed line at the
    same networks' untrained score (the floor, their mean), where `eval knn` / `eval linear --untrained` measured
    it."""
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    groups = list(dict.fromkeys(getattr(condition, group_by) for condition in conditions))
    order = sorted(range(len(conditions)), key=lambda index: groups.index(getattr(conditions[index], group_by)))
    positions, x, previous = [], 0.0, None
    for index in order:  # a gap between groups
        group = getattr(conditions[index], group_by)
        x += 1.0 if previous in (None, group) else 1.6
        positions.append(x)
        previous = group
    group_colors = _colors(groups)
    panels = evaluation_panels(conditions)
    figure = Figure(figsize=(max(3.0, 0.5 * len(conditions) + 1.5) * len(panels), 3.6), layout="constrained")
    for ax, panel in zip(figure.subplots(1, len(panels), squeeze=False)[0], panels, strict=True):
        for position, index in zip(positions, order, strict=True):
            values, floors = panel.values[index], panel.floors[index]
            floor = statistics.fmean(floors) if floors else None
            if floor is not None:
                ax.hlines(floor, position - 0.45, position + 0.45, colors="black", linestyles="--", linewidth=1.2,
                          zorder=3)  # fmt: skip
            if not values:
                ax.plot(position, 1.5, marker="x", color="0.5")
                ax.text(position, 4, "n/a", rotation=90, ha="center", va="bottom", fontsize=7, color="0.4")
                continue
            mean = statistics.fmean(values)
            ax.bar(position, mean, width=0.8, color=group_colors[getattr(conditions[index], group_by)])
            if len(values) > 1:
                spread = [position + 0.5 * (i / (len(values) - 1) - 0.5) * 0.5 for i in range(len(values))]
                ax.plot(spread, values, ls="none", marker="o", markersize=3, color="black", zorder=4)
            top = max([mean, *values] if floor is None else [mean, floor, *values])  # the label clears the rest
            ax.text(position, top + 1, f"{mean:.1f}", ha="center", va="bottom", fontsize=7)
        ax.set_xticks(positions, [_legend_label(conditions[index]) for index in order], rotation=35, ha="right",
                      fontsize=7)  # fmt: skip
        ax.set(title=panel.title, ylabel="%", ylim=(0, 105), xlim=(positions[0] - 0.8, positions[-1] + 0.8))
        ax.grid(axis="y", alpha=0.3)
    handles: list[Any] = [Patch(color=group_colors[group]) for group in groups]
    labels = list(groups)
    if any(len(values) > 1 for panel in panels for values in panel.values):
        handles.append(Line2D([], [], ls="none", marker="o", markersize=3, color="black"))
        labels.append("each seed (bar: mean)")
    if any(floors for panel in panels for floors in panel.floors):
        handles.append(Line2D([], [], color="black", linestyle="--", linewidth=1.2))
        labels.append("untrained (step 0)")
    figure.legend(handles, labels, loc="outside upper center", ncols=min(4, len(labels)), fontsize=8,
                  title="pretraining videos" if group_by == "videos" else "method", title_fontsize=8)  # fmt: skip
    return _save_figure(figure, out_stem)


def draw_attention_rows(
    records: Sequence[RunRecord],
    image_paths: Sequence[Path],
    out_stem: Path,
    *,
    image_size: int = 224,
    mass: float | None = None,
    device: str = "auto",
) -> list[Path]:
    """For each run, its encoder's per-head [CLS] attention on the same images (see
    `wtours.trainers.evaluation.attention_maps`): one row per run and image, one column per head."""
    import numpy as np
    import torch
    from matplotlib.figure import Figure

    from wtours.trainers.evaluation.attention_maps import cls_attention_maps, load_square_image, render_attention_grid
    from wtours.trainers.evaluation.features import load_encoder, patch_size_of, pick_device

    torch_device = pick_device(device)
    grids: list[np.ndarray | None] = []
    without_cls: set[str] = set()
    for record in records:
        if not record.has_encoder:
            grids.append(None)
            continue
        model = load_encoder(None, record.path).to(torch_device)
        patch_size = patch_size_of(model)
        if image_size % patch_size:
            raise WtoursError(f"attention image size {image_size} is not a multiple of {record.label}'s patch size")
        pixels, maps = [], []
        for path in image_paths:
            tensor, rgb = load_square_image(Path(path), image_size)
            with torch.inference_mode():
                maps.append(cls_attention_maps(model, tensor[None].to(torch_device)).cpu())
            pixels.append(rgb)
        grids.append(render_attention_grid(np.stack(pixels), torch.cat(maps), patch_size, mass))
        if model.num_prefix_tokens == 0:  # e.g. VideoMAE: the maps are the first patch's attention
            without_cls.add(record.label)
    widest = max((grid.shape[1] for grid in grids if grid is not None), default=image_size)
    row_height = len(image_paths) * image_size
    tile_inches = 1.4  # each image and head tile, whatever the pixel size, so tiny and 480 px grids both read
    figure = Figure(
        figsize=(tile_inches * widest / image_size + 0.6, tile_inches * len(image_paths) * len(records) + 0.4),
        layout="constrained",
    )
    for ax, record, grid in zip(figure.subplots(len(records), 1, squeeze=False)[:, 0], records, grids, strict=True):
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():  # the grids are pictures, not plots
            spine.set_visible(False)
        note = "\nno [CLS]: first patch's" if record.label in without_cls else ""
        ax.set_ylabel(f"{record.label}\n({record.method}){note}", fontsize=8)
        if grid is None:
            ax.set(xlim=(0, widest), ylim=(row_height, 0))
            ax.text(widest / 2, row_height / 2, "n/a: no exported encoder", ha="center", va="center", color="0.4")
        else:
            ax.imshow(grid, extent=(0, grid.shape[1], grid.shape[0], 0))
            ax.set(xlim=(0, widest), ylim=(row_height, 0))
    figure.suptitle("image, then last-block [CLS] attention per head", fontsize=9)
    return _save_figure(figure, out_stem)


# ----------------------------------------------------------------------------------------------- the entry


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
    kinds: list[tuple[dict[str, Any], list[str]]] = []  # one entry per way of scoring, with the runs scored so
    for record in (record for record in records if record.knn_top1):
        for protocol, labels in kinds:
            if same_protocol(protocol, record.knn_protocol):
                labels.append(record.label)
                break
        else:
            kinds.append((record.knn_protocol, [record.label]))
    if len(kinds) > 1:
        by_set = "; ".join(
            f"{next(r.knn_set for r in records if r.label == labels[0])}: {', '.join(labels)}" for _, labels in kinds
        )
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
        "summary.csv": _csv(summary_rows(conditions), SUMMARY_FIELDS),
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
