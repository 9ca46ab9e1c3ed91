"""``wtours pretrain``: a method's preset, the options given, and the engine on curated clips (or videos)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import Field, field_validator

from wtours.workflows.requests import DATA_DIR_HELP, DataDir, Request, flag, split_ids

if TYPE_CHECKING:
    from wtours.trainers.training.config import TrainConfig


@dataclass(frozen=True)
class Sets:
    """The config key (dotted) a request field overrides when given."""

    key: str


class PretrainRequest(Request):
    """Which preset, what to change in it (each option names the config key it sets), and how to run."""

    method: str | None = Field(
        None,
        description="dino, dora or videomae. Optional when --preset names a preset (presets declare their method).",
    )
    preset: Annotated[str | None, flag("--preset", "-p")] = Field(
        None,
        description="Shipped preset name or a path to your own YAML. Default: the method as the Walking Tours paper "
        "ran it (dino_vits16_wt, dora_vits16, videomae_vits16). Also: dino_vits16_vanilla / dino_vits16_boost "
        "(DINO's own README commands), videomae_vitb16, *_tiny_cpu (seconds on a CPU), *_study_cpu (the CPU "
        "study). Each preset's header names the official command it reproduces.",
    )
    name: Annotated[str | None, Sets("run.name")] = Field(
        None, description="Run name: everything goes to <output-dir>/<name>/. Change it per experiment."
    )
    output_dir: Annotated[Path | None, flag("--output-dir", "-o"), Sets("run.output_dir")] = Field(
        None, description="Parent folder of runs (default ./runs)."
    )
    data_dir: Annotated[DataDir, Sets("data.data_dir")] = Field(None, description=DATA_DIR_HELP)
    only: Annotated[list[str] | None, Sets("data.video_ids")] = Field(
        None, description="Train on the curated clips of these video ids only (default: every clips/*.parquet)."
    )
    videos: Annotated[list[Path] | None, flag("--video", exists=True, dir_okay=False)] = Field(
        None,
        description="Skip curation: train on frames decoded from these video files into memory (every "
        "data.stride-th frame, at most 2048). For a quick look or a demo, not for hours of footage.",
    )
    epochs: Annotated[int | None, Sets("optim.epochs")] = Field(
        None, ge=1, description="Passes over the data (paper: 100). Schedules stretch to fit."
    )
    batch_size: Annotated[int | None, flag("--batch-size", "-b"), Sets("optim.batch_size")] = Field(
        None,
        ge=1,
        description="Samples per GPU/process per step; lower it when memory runs out (the lr follows the total).",
    )
    lr: Annotated[float | None, Sets("optim.lr")] = Field(
        None, description="Peak learning rate at a total batch of 256 (scaled linearly with the batch)."
    )
    arch: Annotated[str | None, Sets("backbone.arch")] = Field(
        None, description="vit_tiny, vit_small or vit_base: a bigger encoder needs more data and memory."
    )
    patch_size: Annotated[int | None, Sets("backbone.patch_size")] = Field(
        None, description="16, or 8 for finer attention maps at ~4x the compute."
    )
    device: Annotated[str | None, Sets("run.device")] = Field(
        None, description="auto (GPU if present), cuda or cpu. Under torchrun each process takes a GPU."
    )
    precision: Annotated[str | None, Sets("run.precision")] = Field(
        None, description="auto (bf16 on GPU, fp32 on CPU), bf16 (also on CPUs with AVX512-BF16 or AMX, 1.6x faster "
        "there; fp32 on other CPUs), fp16 (older GPUs without bf16; may NaN) or fp32."
    )
    compile_model: Annotated[bool | None, flag("--compile/--no-compile"), Sets("run.compile")] = Field(
        None,
        description="torch.compile the networks: faster steps after a minute of compiling; worth it for long runs.",
    )
    num_workers: Annotated[int | None, Sets("data.num_workers")] = Field(
        None, ge=0, description="Loader processes per GPU; raise it if the GPU waits for data."
    )
    settings: Annotated[list[str] | None, flag("--set")] = Field(
        None,
        description="Any other config key, dotted, e.g. --set optim.warmup_epochs=5 --set dino.out_dim=4096 "
        "(repeatable).",
    )
    resume: bool = Field(False, description="Continue the run in <output-dir>/<name>/ from its checkpoint (exactly).")
    stop_after: int | None = Field(
        None,
        ge=1,
        description="Stop (with a checkpoint) after this many steps in this invocation: time-limited cluster jobs "
        "chain invocations with --resume.",
    )
    show_config: bool = Field(False, description="Print the resolved config and exit.")

    @field_validator("only", mode="before")
    @classmethod
    def _split_ids(cls, values: Any) -> Any:
        return split_ids(values) if isinstance(values, (list, tuple)) else values

    def overrides(self) -> dict[str, Any]:
        """The dotted config keys the given options set (paths as text, as YAML holds them), then ``--set``."""
        from wtours.trainers.training.config import parse_override

        overrides: dict[str, Any] = {}
        for name, info in type(self).model_fields.items():
            key = next((item.key for item in info.metadata if isinstance(item, Sets)), None)
            value = getattr(self, name)
            if key is not None and value is not None:
                overrides[key] = str(value) if isinstance(value, Path) else value
        overrides.update(parse_override(text) for text in self.settings or [])
        return overrides


@dataclass
class PretrainResult:
    """The resolved config and, unless only shown, how the run went (``wtours.trainers.training.engine.RunResult``)."""

    config: TrainConfig
    run: Any = None
    exit_code: int = 0

    @property
    def run_dir(self) -> Path:
        return self.config.run_dir

    def report(self) -> None:
        if self.run is None:
            import yaml

            from wtours.trainers.training.config import config_to_tree

            print(yaml.safe_dump(config_to_tree(self.config), sort_keys=False), end="")
        elif self.run.is_main_process:  # under torchrun, one line of output, not one per process
            print(self.run.run_dir)


def pretrain(request: PretrainRequest, *, show_progress: bool = True) -> PretrainResult:
    """Resolve the config (preset + options), then train it to its end, to ``stop_after`` steps, or from its
    checkpoint with ``resume``; with ``show_config`` only resolve it."""
    from wtours.trainers.training.config import resolve_config

    config = resolve_config(request.method, request.preset, request.overrides())
    if request.show_config:
        return PretrainResult(config)
    from wtours.trainers.evaluation.monitor import KnnMonitor
    from wtours.trainers.training.data import training_data
    from wtours.trainers.training.engine import pretrain as train

    # run.knn_every: the k-NN curve, measured by the main process only (under torchrun, RANK 0); without
    # run.knn_data on the built-in study set, where `wtours eval knn` writes it too
    monitor = None
    if os.environ.get("RANK", "0") == "0":
        monitor = KnnMonitor.of(config, study_set=_study_set, announce=show_progress)
    result = train(
        config, training_data(config, request.videos), resume=request.resume, stop_after_steps=request.stop_after,
        show_progress=show_progress, monitor=monitor,
    )  # fmt: skip
    return PretrainResult(config, result)


def _study_set() -> Path:
    from wtours.sample.study import make_study_labelled_set
    from wtours.workflows.evaluate import LabelledSetRequest

    return make_study_labelled_set(LabelledSetRequest.model_fields["sample_dir"].default)
