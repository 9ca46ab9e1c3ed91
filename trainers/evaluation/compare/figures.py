"""The comparison's figures (PNG and PDF): loss curves, k-NN curves while training, evaluation bars beside their
untrained floors, attention maps."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wtours.errors import WtoursError
from wtours.trainers.evaluation.compare.conditions import Condition
from wtours.trainers.evaluation.compare.runs import RunRecord

FIGURE_FORMATS = ("png", "pdf")


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
