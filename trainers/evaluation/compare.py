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
    runs/<name>/eval/davis/summary.json wtours eval davis RUN    JF_mean, J_mean, F_mean: fractions

`compare_runs` writes, into one folder: ``loss_curves``, ``eval_by_method``, ``eval_by_videos``, (when a run
logged one) ``knn_curves`` and (given images) ``attention`` as PNG and PDF; ``results.md``, ``results.csv``,
``results.tex``; and ``runs.json`` with everything gathered. A missing measurement is "—" in the tables, empty in
the CSV and "n/a" in the figures. All accuracies are percent; the linear probe reports its best epoch, as DINO's
script does.
"""

from __future__ import annotations

import csv
import io
import json
import math
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
    davis: dict[str, float] = field(default_factory=dict)  # "JF", "J", "F" -> percent
    has_encoder: bool = False

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
    epochs = (config.get("optim") or {}).get("epochs")
    if record.total_steps and epochs:  # total_steps = epochs x steps per epoch, exactly
        record.steps_per_epoch = record.total_steps / epochs

    knn = read_json(files.knn_path()) or {}
    record.knn_top1 = {int(k): float(value) for k, value in (knn.get("top1") or {}).items()}
    untrained = read_json(files.knn_path(untrained=True)) or {}
    record.knn_untrained_top1 = {int(k): float(value) for k, value in (untrained.get("top1") or {}).items()}
    linear = read_json(files.linear_path) or {}
    linear_top1 = linear.get("best_top1", linear.get("top1"))
    record.linear_top1 = None if linear_top1 is None else 100 * float(linear_top1)
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


# -------------------------------------------------------------------------------------------------- tables

# (CSV header, table header, how a table cell shows the value)
COLUMNS = (
    ("run", "run", str),
    ("method", "method", str),
    ("arch", "backbone", str),
    ("pretraining_videos", "pretraining videos", str),
    ("steps", "steps", str),
    ("total_steps", "total steps", str),
    ("first_loss", "first loss", "{:.3f}".format),
    ("final_loss", "final loss", "{:.3f}".format),
    ("knn_top1", "k-NN top-1", "{:.1f}".format),
    ("knn_k", "k", str),
    ("knn_untrained_top1", "k-NN untrained", "{:.1f}".format),
    ("linear_top1", "linear top-1", "{:.1f}".format),
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
                "method": record.method,
                "arch": record.arch,
                "pretraining_videos": record.videos,
                "steps": record.steps_done,
                "total_steps": record.total_steps,
                "first_loss": record.first_loss,
                "final_loss": record.final_loss,
                "knn_top1": best_knn[1] if best_knn else None,
                "knn_k": best_knn[0] if best_knn else None,
                "knn_untrained_top1": record.knn_untrained,
                "linear_top1": record.linear_top1,
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


def results_csv(rows: Sequence[dict[str, Any]]) -> str:
    """Full-precision numbers, empty cells where not measured."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=[*(key for key, _, _ in COLUMNS), "missing"], lineterminator="\n")
    writer.writeheader()
    writer.writerows({key: "" if value is None else value for key, value in row.items()} for row in rows)
    return buffer.getvalue()


def results_markdown(rows: Sequence[dict[str, Any]]) -> str:
    headers = [*(title for _, title, _ in COLUMNS), "not measured"]
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    for row in rows:
        cells = [_cell(row, key, show).replace("|", "\\|") for key, _, show in COLUMNS]
        lines.append("| " + " | ".join([*cells, row["missing"] or MISSING]) + " |")
    note = (
        "Accuracies in percent (k-NN at its best k; linear probe at its best epoch); J&F, J, F in percent. "
        "k-NN untrained: the same network before training (the run's encoder at step 0), at the same k (the floor). "
        "First and final loss: the mean of the first and of the last logging interval."
    )
    return "\n".join(lines) + f"\n\n{note}\n"


_LATEX_SPECIALS = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
    "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", MISSING: "---",
}  # fmt: skip


def latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIALS.get(char, char) for char in text)


def results_latex(rows: Sequence[dict[str, Any]]) -> str:
    """A booktabs table (needs ``\\usepackage{booktabs}``); the best value of each accuracy column in bold."""
    best = {}
    for key in HIGHER_IS_BETTER:
        values = [row[key] for row in rows if row[key] is not None and not math.isnan(row[key])]
        best[key] = max(values) if values else None
    numeric = {key for key, _, show in COLUMNS if show is not str} | {"steps", "total_steps", "knn_k"}
    spec = "".join("r" if key in numeric else "l" for key, _, _ in COLUMNS)
    lines = [
        r"\begin{tabular}{" + spec + "}",
        r"\toprule",
        " & ".join(latex_escape(title) for _, title, _ in COLUMNS) + r" \\",
        r"\midrule",
    ]
    for row in rows:
        cells = []
        for key, _, show in COLUMNS:
            cell = latex_escape(_cell(row, key, show))
            if key in best and row[key] is not None and row[key] == best[key]:
                cell = r"\textbf{" + cell + "}"
            cells.append(cell)
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


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


def draw_loss_curves(records: Sequence[RunRecord], out_stem: Path) -> list[Path]:
    """One panel per method (their losses are not on one scale), one line per run: raw faint, smoothed solid."""
    from matplotlib.figure import Figure

    methods = list(dict.fromkeys(record.method for record in records))
    by_epoch = all(record.steps_per_epoch for record in records if record.losses)
    figure = Figure(figsize=(4.2 * len(methods), 3.2), layout="constrained")
    colors = _colors([record.label for record in records])
    for panel, method in zip(figure.subplots(1, len(methods), squeeze=False)[0], methods, strict=True):
        for record in (record for record in records if record.method == method):
            color = colors[record.label]
            if not record.losses:
                panel.plot([], [], ls="none", marker="x", color=color, label=f"{record.label} (no metrics)")
                continue
            scale = record.steps_per_epoch if by_epoch else 1.0
            x = [step / scale for step in record.loss_steps]
            panel.plot(x, record.losses, color=color, alpha=0.25, linewidth=0.8)
            panel.plot(x, smooth(record.losses), color=color, linewidth=1.6, label=record.label)
        panel.set(title=method, xlabel="epoch" if by_epoch else "step", ylabel="training loss")
        panel.grid(alpha=0.3)
        panel.legend(fontsize=7)
    return _save_figure(figure, out_stem)


def draw_knn_curves(records: Sequence[RunRecord], out_stem: Path) -> list[Path]:
    """The k-NN top-1 of each run's encoder while it trained (`run.knn_every`; k = 20 where logged), one line per
    run, its step-0 value (the untrained floor) dashed in the same colour. Nothing is drawn when no run logged it."""
    from matplotlib.figure import Figure

    traced = [record for record in records if record.knn_curve]
    if not traced:
        return []
    by_epoch = all(record.steps_per_epoch for record in traced)
    figure = Figure(figsize=(5.2, 3.4), layout="constrained")
    panel = figure.subplots()
    colors = _colors([record.label for record in records])
    ks = set()
    for record in traced:
        k = 20 if all(20 in top1 for _, top1 in record.knn_curve) else min(record.knn_curve[0][1])
        ks.add(k)
        scale = record.steps_per_epoch if by_epoch else 1.0
        x = [step / scale for step, _ in record.knn_curve]
        y = [top1[k] for _, top1 in record.knn_curve]
        color = colors[record.label]
        panel.plot(x, y, color=color, marker="o", markersize=3, linewidth=1.4, label=record.label)
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
    """One panel of the evaluation bars: a value per run in percent (None: not measured) and, for k-NN, the
    run's untrained floor at the same k (None: not measured), drawn across its bar."""

    title: str
    values: list[float | None]
    floors: list[float | None]


def evaluation_panels(records: Sequence[RunRecord]) -> list[Panel]:
    """The panels for every measurement at least one run has: k-NN at each k, the linear probe, DAVIS J&F."""
    ks = sorted({k for record in records for k in record.knn_top1})
    panels = [
        Panel(f"k-NN top-1, k={k}", [record.knn_top1.get(k) for record in records],
              [record.knn_untrained_top1.get(k) for record in records])
        for k in ks
    ]  # fmt: skip
    nothing: list[float | None] = [None] * len(records)
    panels.append(Panel("linear top-1", [record.linear_top1 for record in records], nothing))
    panels.append(Panel("DAVIS J&F", [record.davis.get("JF") for record in records], nothing))
    return panels


def draw_evaluation_bars(records: Sequence[RunRecord], out_stem: Path, group_by: str) -> list[Path]:
    """One panel per measurement, one bar per run, runs grouped (and coloured) by ``group_by`` ("method" or
    "videos"); a run without the measurement gets an "n/a" marker instead of a bar. A k-NN bar is crossed by a
    dashed line at the same network's untrained score (the floor), where `eval knn --untrained` measured it."""
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    groups = list(dict.fromkeys(getattr(record, group_by) for record in records))
    order = sorted(range(len(records)), key=lambda index: groups.index(getattr(records[index], group_by)))
    positions, x, previous = [], 0.0, None
    for index in order:  # a gap between groups
        group = getattr(records[index], group_by)
        x += 1.0 if previous in (None, group) else 1.6
        positions.append(x)
        previous = group
    group_colors = _colors(groups)
    panels = evaluation_panels(records)
    figure = Figure(figsize=(max(3.0, 0.5 * len(records) + 1.5) * len(panels), 3.6), layout="constrained")
    for ax, panel in zip(figure.subplots(1, len(panels), squeeze=False)[0], panels, strict=True):
        for position, index in zip(positions, order, strict=True):
            value, floor = panel.values[index], panel.floors[index]
            if floor is not None:
                ax.hlines(floor, position - 0.45, position + 0.45, colors="black", linestyles="--", linewidth=1.2,
                          zorder=3)  # fmt: skip
            color = group_colors[getattr(records[index], group_by)]
            if value is None:
                ax.plot(position, 1.5, marker="x", color="0.5")
                ax.text(position, 4, "n/a", rotation=90, ha="center", va="bottom", fontsize=7, color="0.4")
            else:
                ax.bar(position, value, width=0.8, color=color)
                top = value if floor is None else max(value, floor)  # the label clears the floor line
                ax.text(position, top + 1, f"{value:.1f}", ha="center", va="bottom", fontsize=7)
        ax.set_xticks(positions, [records[index].label for index in order], rotation=35, ha="right", fontsize=7)
        ax.set(title=panel.title, ylabel="%", ylim=(0, 105), xlim=(positions[0] - 0.8, positions[-1] + 0.8))
        ax.grid(axis="y", alpha=0.3)
    handles: list[Any] = [Patch(color=group_colors[group]) for group in groups]
    labels = list(groups)
    if any(floor is not None for panel in panels for floor in panel.floors):
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


def compare_runs(
    run_dirs: Sequence[Path],
    out_dir: Path,
    *,
    attention_images: Sequence[Path] | None = None,
    attention_size: int = 224,
    attention_mass: float | None = None,
    device: str = "auto",
) -> dict[str, Path]:
    """Gather ``run_dirs`` and write the figures and tables into ``out_dir``. Returns file name -> path."""
    from wtours.store import atomic_write_json, atomic_write_text

    records = gather_runs(run_dirs)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = draw_loss_curves(records, out_dir / "loss_curves")
    written += draw_knn_curves(records, out_dir / "knn_curves")
    written += draw_evaluation_bars(records, out_dir / "eval_by_method", "method")
    written += draw_evaluation_bars(records, out_dir / "eval_by_videos", "videos")
    if attention_images:
        written += draw_attention_rows(
            records, attention_images, out_dir / "attention", image_size=attention_size, mass=attention_mass,
            device=device,
        )  # fmt: skip
    rows = table_rows(records)
    tables = {
        "results.md": results_markdown(rows),
        "results.csv": results_csv(rows),
        "results.tex": results_latex(rows),
    }
    for name, text in tables.items():
        atomic_write_text(out_dir / name, text)
        written.append(out_dir / name)
    gathered = [
        {**asdict(record), "path": str(record.path), "first_loss": record.first_loss, "final_loss": record.final_loss,
         "missing": record.missing}
        for record in records
    ]
    atomic_write_json(out_dir / "runs.json", gathered)
    written.append(out_dir / "runs.json")
    return {path.name: path for path in written}
