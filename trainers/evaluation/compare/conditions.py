"""Conditions: runs trained with the same settings but their seed, and the statistics of a measurement over them
(mean, sample standard deviation, the 95 % interval of the mean)."""

from __future__ import annotations

import json
import math
import os
import re
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from wtours.trainers.evaluation.compare.runs import RunRecord, same_protocol


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


def _condition_keys(records: Sequence[RunRecord]) -> list[str]:
    """Each run's settings but those of NOT_CONDITION_KEYS and FREE_KEYS, with its videos and precision as
    trained. Where runs of one method hold different keys (written by different wtours versions, or by hand), they
    are compared with every default filled in, which imports the method modules; runs alike in their keys are
    compared as saved."""
    from wtours.trainers.training.resume import FREE_KEYS, flatten, with_defaults

    ignored = FREE_KEYS | set(NOT_CONDITION_KEYS)
    flat = [flatten(record.config) for record in records]
    for method in {record.method for record in records}:
        of_method = [index for index, record in enumerate(records) if record.method == method]
        if len({frozenset(flat[index]) for index in of_method}) > 1:
            for index in of_method:
                flat[index] = flatten(with_defaults(records[index].config))
    return [
        json.dumps([record.videos, record.precision, {key: value for key, value in settings.items()
                                                      if key not in ignored}], sort_keys=True, default=str)
        for record, settings in zip(records, flat, strict=True)
    ]  # fmt: skip


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
    for record, key in zip(records, _condition_keys(records), strict=True):
        groups.setdefault(key, []).append(record)
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
