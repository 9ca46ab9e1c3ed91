"""`wtours pretrain --resume`: what may change between the run that wrote a checkpoint and the one continuing it.

The checkpoint stores the config it was trained with. A resumed run compares it with its own, key by key:

- **free**: ``run.log_every``, ``run.checkpoint_every``, ``data.num_workers`` (how a run is watched and fed,
  not what it computes) and where the run and its data live (``run.name``, ``run.output_dir``,
  ``data.data_dir``: a run folder or a data directory may be moved; the clips must stay the same, and the
  steps per epoch are checked).
- **allowed, with a notice**: ``optim.epochs`` (the schedules are recomputed for the new total of steps:
  from the step the run resumes at, lr, weight decay, teacher momentum and DINO's teacher temperature
  follow the new cosine, so the result is not that of a run trained for that many epochs from the start),
  ``run.device`` and ``run.compile`` (same maths, other kernels: no longer bit-identical to an
  uninterrupted run).
- **refused**, with a one-line error naming each differing key: everything else (method, architecture,
  batch size, learning rate, crops, seed, precision, the clips ...). A different method is named alone.

A setting the checkpoint does not record (saved by an older wtours, before the key existed) counts as its
default, the value that wtours trained with: resuming with the default is silent, with another value refused
(``optim.momentum_teacher_end 1.0 -> 0.99``). Settings that no longer exist are noted, not refused.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wtours.errors import WtoursError

if TYPE_CHECKING:
    from wtours.trainers.training.config import TrainConfig

FREE_KEYS = frozenset(
    {"run.log_every", "run.checkpoint_every", "data.num_workers", "run.name", "run.output_dir", "data.data_dir",
     "run.knn_every", "run.knn_data", "run.knn_image_size"}
)
NOTICED_KEYS = {
    "optim.epochs": "the schedules (lr, weight decay, teacher momentum, DINO's teacher temperature) are recomputed "
    "for the new length: from step {step} on they follow the new cosine, so the result differs from a run "
    "trained for {epochs} epochs from the start",
    "run.device": "another device computes the same steps with other kernels: no longer bit-identical to an "
    "uninterrupted run",
    "run.compile": "compiled and eager kernels round differently: no longer bit-identical to an uninterrupted run",
}


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"optim": {"lr": 1}}`` -> ``{"optim.lr": 1}``; lists stay values."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{dotted}."))
        else:
            flat[dotted] = value
    return flat


# Besides FREE_KEYS, what does not change what a run learns: the kernels it ran on, and which videos it read
# (set by `pretrain --only`; --resume refuses that one, since its steps must see the same clips).
NOT_LEARNED_KEYS = FREE_KEYS | {"run.device", "run.compile", "data.video_ids"}


def trained_otherwise(config_path: str | Path, config: TrainConfig) -> bool:
    """Whether the run that saved ``config_path`` (its ``config.yaml``) learned with other settings than
    ``config``: any key but NOT_LEARNED_KEYS (the method, network, optimiser, method options, clip
    sampling, seed, precision ...). A key an older wtours did not write reads as its default; a config that
    cannot be read, or names keys this wtours no longer has, counts as other. `wtours demo` and the CPU study
    train such a run again instead of reporting it."""
    import yaml

    from wtours.trainers.training.config import config_to_tree

    try:
        saved = flatten(with_defaults(yaml.safe_load(Path(config_path).read_text()) or {}))
    except (OSError, yaml.YAMLError):
        return True
    now = flatten(config_to_tree(config))
    keys = (saved.keys() | now.keys()) - NOT_LEARNED_KEYS
    return any(key not in saved or key not in now or not _same(saved[key], now[key]) for key in keys)


def check_resume(
    saved_tree: dict[str, Any] | None,
    tree: dict[str, Any],
    *,
    checkpoint: Path,
    steps_done: int,
    total_steps: int,
    saved_steps_per_epoch: int | None,
    steps_per_epoch: int,
) -> list[str]:
    """Compare the checkpoint's config with this run's; return the notices to print, or raise WtoursError
    naming every key that may not change."""
    if saved_tree is None:
        return [f"{checkpoint} records no config (an older wtours): resuming without checking the settings"]
    saved, now = flatten(with_defaults(saved_tree)), flatten(tree)
    ignored: tuple[str, ...] = ()
    refused: list[str] = []
    if saved.get("method") != now.get("method"):
        refused.append(f"method {saved.get('method')} -> {now.get('method')}")
        ignored = (f"{saved.get('method')}.", f"{now.get('method')}.")  # each method's own section
    notices: list[str] = []
    for key in sorted(saved.keys() | now.keys()):
        if key == "method" or key.startswith(ignored) or key in FREE_KEYS:
            continue
        if key not in saved or key not in now:
            which = "the checkpoint does not record it" if key not in saved else "this wtours no longer has it"
            notices.append(f"{key}: {which}")
            continue
        if _same(saved[key], now[key]):
            continue
        change = f"{key} {_show(saved[key])} -> {_show(now[key])}"
        if key in NOTICED_KEYS:
            epochs = now.get("optim.epochs")
            notices.append(f"{change}: " + NOTICED_KEYS[key].format(step=steps_done, epochs=epochs))
        else:
            refused.append(change)
    if refused:
        allowed = ", ".join(sorted({*FREE_KEYS, *NOTICED_KEYS} - {"run.name", "run.output_dir"}))
        raise WtoursError(
            f"cannot resume {checkpoint.parent}: its checkpoint was trained with other settings: "
            f"{'; '.join(refused)}. Only {allowed} may change on --resume; start a new run (--name) instead"
        )
    if saved_steps_per_epoch != steps_per_epoch:
        raise WtoursError(
            f"{checkpoint}: saved with {saved_steps_per_epoch} steps per epoch, now {steps_per_epoch}: resume with "
            "the same data, batch size and number of processes"
        )
    if steps_done > total_steps:
        raise WtoursError(
            f"{checkpoint}: {steps_done} steps are done, more than the {total_steps} that "
            f"optim.epochs={now.get('optim.epochs')} makes; resume with at least as many epochs"
        )
    return notices


def with_defaults(saved_tree: dict[str, Any]) -> dict[str, Any]:
    """The saved config with the keys it lacks at their defaults; as saved where it no longer validates (keys
    this wtours removed: the comparison notes those)."""
    from wtours.trainers.training.config import saved_tree_with_defaults

    try:
        return saved_tree_with_defaults(saved_tree)
    except WtoursError:
        return saved_tree


def restore(state: dict[str, Any], modules: dict[str, Any], checkpoint: Path) -> None:
    """Load ``state[name]`` into each of ``modules`` (method, optimizer, scaler); a checkpoint that does not
    fit (written by other code) is one line, not a dump of every parameter name."""
    from torch import nn

    for name, module in modules.items():
        if name not in state:
            raise WtoursError(f"{checkpoint}: no {name} state in this checkpoint; it cannot be resumed")
        try:
            module.load_state_dict(state[name])
        except (RuntimeError, KeyError, ValueError, TypeError) as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            what = f"this {type(module).__name__}" if not isinstance(module, nn.Module) else "this model"
            raise WtoursError(f"{checkpoint}: its {name} state does not fit {what} ({first[:200]})") from None


def saved_config(state: dict[str, Any]) -> dict[str, Any] | None:
    """The config tree a checkpoint was written with (stored as JSON), or None."""
    text = state.get("config")
    if not isinstance(text, str):
        return None
    try:
        tree = json.loads(text)
    except ValueError:
        return None
    return tree if isinstance(tree, dict) else None


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return float(a) == float(b)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def _show(value: Any) -> str:
    return json.dumps(value) if not isinstance(value, str) else value
