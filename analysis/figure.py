"""The paper's Figure 2 and Table 1, drawn from ``analysis/<id>/`` for any set of videos and groups.

Figure 2: (a) lightness over time, (b) unique classes per frame, (c) objects per frame and class
frequency, (d) shots per video. With ``duration``, every video is cut to its first seconds so that
equal lengths of footage are compared, as in the paper.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from wtours.analysis.run import VideoResult
from wtours.store import atomic_path, atomic_write_text

TOP_CLASSES = 10


@dataclass
class VideoStats:
    """One video's analysis, cut to the compared duration."""

    id: str
    group: str
    summary: dict
    frames: pd.DataFrame  # time, lightness
    sampled: pd.DataFrame  # objects, unique_classes per detector frame
    detections: pd.DataFrame
    shots: int
    seconds: float


def load_stats(result: VideoResult, duration: float | None = None) -> VideoStats:
    folder = result.analysis_dir
    summary = result.summary or {}
    frames = pd.read_parquet(folder / "frames.parquet", columns=["time", "lightness"])
    sampled = pd.read_parquet(folder / "detector_frames.parquet")
    detections = pd.read_parquet(folder / "objects.parquet", columns=["time", "class_name"])
    shots = pd.read_parquet(folder / "shots.parquet")
    if duration is not None:
        frames = frames[frames["time"] < duration]
        sampled = sampled[sampled["time"] < duration]
        detections = detections[detections["time"] < duration]
        shots = shots[shots["start_time"] < duration]
    seconds = len(frames) / summary["probe"]["fps"] if summary else float(frames["time"].max())
    return VideoStats(result.video.id, result.video.group, summary, frames, sampled, detections, len(shots), seconds)


def draw_figure2(results: Sequence[VideoResult], out_dir: Path, *, duration: float | None = None) -> list[Path]:
    """Write ``figure2.png`` and ``figure2.pdf`` (vector) to ``out_dir``; return their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stats = [load_stats(result, duration) for result in results]
    groups = list(dict.fromkeys(s.group for s in stats))
    palette = plt.get_cmap("tab10")
    group_color = {group: palette(i % 10) for i, group in enumerate(groups)}

    figure = plt.figure(figsize=(15, 8.5), layout="constrained")
    grid = figure.add_gridspec(2, 3)
    ax_light = figure.add_subplot(grid[0, :2])
    ax_shots = figure.add_subplot(grid[0, 2])
    ax_classes = figure.add_subplot(grid[1, 0])
    ax_objects = figure.add_subplot(grid[1, 1])
    ax_frequency = figure.add_subplot(grid[1, 2])
    compared = f"first {_clock(duration)} of each video" if duration else "whole videos"
    figure.suptitle(f"Dataset statistics (Walking Tours, Figure 2) — {compared}")

    styles = ["-", "--", ":", "-."]
    seen_in_group: dict[str, int] = {}
    longest = max(s.seconds for s in stats)
    # About 1500 points per curve whatever the length: hours of 60 fps become one mean per few seconds.
    bin_seconds = max(longest / 1500, 1e-9)
    unit, per_unit = ("minutes", 60.0) if longest > 180 else ("seconds", 1.0)
    for s in stats:
        order = seen_in_group.get(s.group, 0)
        seen_in_group[s.group] = order + 1
        bins = np.floor(s.frames["time"].to_numpy() / bin_seconds).astype(np.int64)
        binned = s.frames.groupby(bins)["lightness"].mean()
        ax_light.plot(binned.index.to_numpy() * bin_seconds / per_unit, binned.to_numpy(),
                      styles[order % len(styles)], color=group_color[s.group], label=f"{s.id} ({s.group})",
                      linewidth=1.2)
    ax_light.set(title="(a) lightness over time", xlabel=f"time ({unit})", ylabel="mean CIE L*", ylim=(0, 100))
    ax_light.legend(fontsize=8, ncol=2)

    labels = [s.id for s in stats]
    colors = [group_color[s.group] for s in stats]
    _boxes(ax_classes, [s.sampled["unique_classes"].to_numpy() for s in stats], labels, colors)
    ax_classes.set(title="(b) unique classes per frame", ylabel="classes")
    _boxes(ax_objects, [s.sampled["objects"].to_numpy() for s in stats], labels, colors)
    ax_objects.set(title="(c) objects per frame", ylabel="objects")

    _class_frequency(ax_frequency, stats, groups, group_color)

    positions = np.arange(len(stats))
    ax_shots.bar(positions, [s.shots for s in stats], color=colors)
    for x, s in zip(positions, stats, strict=True):
        ax_shots.annotate(str(s.shots), (x, s.shots), ha="center", va="bottom", fontsize=8)
    ax_shots.set_xticks(positions, labels, rotation=30, ha="right", fontsize=8)
    if max(s.shots for s in stats) > 50 * max(1, min(s.shots for s in stats)):
        ax_shots.set_yscale("log")
    ax_shots.set(title="(d) shots per video", ylabel="shots")
    handles = [plt.Rectangle((0, 0), 1, 1, color=group_color[g]) for g in groups]
    ax_shots.legend(handles, groups, fontsize=8)

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for suffix in ("png", "pdf"):
        path = out_dir / f"figure2.{suffix}"
        with atomic_path(path) as tmp:
            figure.savefig(tmp, format=suffix, dpi=150)
        written.append(path)
    plt.close(figure)
    return written


def _boxes(ax, values: list[np.ndarray], labels: list[str], colors: list) -> None:
    if not any(len(v) for v in values):
        ax.text(0.5, 0.5, "no detector run\n(wtours analyze --detector ...)", ha="center", va="center",
                transform=ax.transAxes)
        ax.set_yticks([])
    shown = [v if len(v) else np.array([np.nan]) for v in values]
    parts = ax.boxplot(shown, patch_artist=True, showmeans=True, widths=0.6)
    for patch, color in zip(parts["boxes"], colors, strict=True):
        patch.set_facecolor(color)
        patch.set_alpha(0.6)
    ax.set_xticks(np.arange(1, len(labels) + 1), labels, rotation=30, ha="right", fontsize=8)


def _class_frequency(ax, stats: list[VideoStats], groups: list[str], group_color: dict) -> None:
    """Share of detections per class, per group, for the most frequent classes overall."""
    counts = {
        group: pd.concat([s.detections["class_name"] for s in stats if s.group == group]).value_counts()
        for group in groups
    }
    total = pd.concat(counts.values()).groupby(level=0).sum().sort_values(ascending=False)
    classes = list(total.index[:TOP_CLASSES])
    width = 0.8 / max(1, len(groups))
    for i, group in enumerate(groups):
        share = counts[group] / max(1, counts[group].sum())
        ax.barh(np.arange(len(classes)) + i * width, [share.get(c, 0.0) for c in classes], height=width,
                color=group_color[group], label=group)
    ax.set_yticks(np.arange(len(classes)) + width * (len(groups) - 1) / 2, classes, fontsize=8)
    ax.invert_yaxis()
    ax.set(title="(c) class frequency (share of detections)", xlabel="share")
    if not classes:
        ax.text(0.5, 0.5, "no detections", ha="center", va="center", transform=ax.transAxes)
        ax.set_xticks([])


TABLE_COLUMNS = ("video", "group", "duration", "resolution", "fps", "frames", "shots",
                 "objects/frame", "classes/frame", "lightness range")


def table1(results: Sequence[VideoResult], *, duration: float | None = None) -> pd.DataFrame:
    """Table 1: one row per video, then one row per group (means over its videos)."""
    rows = []
    for s in (load_stats(result, duration) for result in results):
        probe = s.summary["probe"]
        rows.append(
            {
                "video": s.id,
                "group": s.group,
                "seconds": s.seconds,
                "resolution": probe["resolution"],
                "fps": probe["fps"],
                "frames": len(s.frames),
                "shots": s.shots,
                "objects/frame": s.sampled["objects"].mean() if len(s.sampled) else np.nan,
                "classes/frame": s.sampled["unique_classes"].mean() if len(s.sampled) else np.nan,
                "lightness min": s.frames["lightness"].min(),
                "lightness max": s.frames["lightness"].max(),
            }
        )
    table = pd.DataFrame(rows)
    group_rows = []
    for group, members in table.groupby("group", sort=False):
        group_rows.append(
            {
                "video": f"{group} (mean of {len(members)})",
                "group": group,
                "seconds": members["seconds"].mean(),
                "resolution": "/".join(dict.fromkeys(members["resolution"])),
                "fps": members["fps"].mean(),
                "frames": members["frames"].mean(),
                "shots": members["shots"].mean(),
                "objects/frame": members["objects/frame"].mean(),
                "classes/frame": members["classes/frame"].mean(),
                "lightness min": members["lightness min"].mean(),
                "lightness max": members["lightness max"].mean(),
            }
        )
    return pd.concat([table, pd.DataFrame(group_rows)], ignore_index=True)


def write_table1(results: Sequence[VideoResult], out_dir: Path, *, duration: float | None = None) -> list[Path]:
    """Write ``table1.csv``, ``table1.md`` and ``table1.tex``; return their paths."""
    table = table1(results, duration=duration)
    shown = [
        [
            row["video"],
            row["group"],
            _clock(row["seconds"]),
            row["resolution"],
            f"{row['fps']:.2f}".rstrip("0").rstrip("."),
            f"{row['frames']:,.0f}",
            f"{row['shots']:.0f}" if float(row["shots"]).is_integer() else f"{row['shots']:.1f}",
            _number(row["objects/frame"]),
            _number(row["classes/frame"]),
            f"{row['lightness min']:.1f}–{row['lightness max']:.1f}",
        ]
        for _, row in table.iterrows()
    ]
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path, md_path, tex_path = (out_dir / f"table1.{suffix}" for suffix in ("csv", "md", "tex"))
    with atomic_path(csv_path) as tmp:
        table.to_csv(tmp, index=False, float_format="%.4g")
    markdown = ["| " + " | ".join(TABLE_COLUMNS) + " |", "|" + "---|" * len(TABLE_COLUMNS)]
    markdown += ["| " + " | ".join(cells) + " |" for cells in shown]
    atomic_write_text(md_path, "\n".join(markdown) + "\n")
    latex = [
        r"\begin{tabular}{ll" + "r" * (len(TABLE_COLUMNS) - 2) + "}",
        r"\toprule",
        " & ".join(_tex(c) for c in TABLE_COLUMNS) + r" \\",
        r"\midrule",
        *(" & ".join(_tex(c) for c in cells) + r" \\" for cells in shown),
        r"\bottomrule",
        r"\end{tabular}",
    ]
    atomic_write_text(tex_path, "\n".join(latex) + "\n")
    return [csv_path, md_path, tex_path]


def _clock(seconds: float | None) -> str:
    seconds = float(seconds or 0)
    hours, rest = divmod(round(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _number(value: float) -> str:
    return "–" if pd.isna(value) else f"{value:.2f}"


def _tex(text: str) -> str:
    for char, escaped in (("\\", r"\textbackslash{}"), ("_", r"\_"), ("%", r"\%"), ("&", r"\&"), ("#", r"\#"),
                          ("–", "--")):
        text = text.replace(char, escaped)
    return text
