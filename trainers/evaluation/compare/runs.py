"""Reading one run folder (its config, metrics, summary and `wtours eval` reports) into a `RunRecord`, and what
makes two k-NN or linear scores comparable."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wtours.errors import WtoursError


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
    from wtours.store import RunDir, read_json, read_yaml_sections

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise WtoursError(f"{run_dir}: no such run folder")
    files = RunDir(run_dir)
    config_path = files.config_path
    if not config_path.is_file():
        raise WtoursError(f"{run_dir}: not a run folder (no config.yaml)")
    config = read_yaml_sections(config_path)
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
    both = record.knn_top1 and record.knn_untrained_top1
    if both and not same_protocol(knn_protocol(untrained), record.knn_protocol):
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
