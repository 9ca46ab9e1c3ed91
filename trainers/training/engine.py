"""The one training loop shared by every method (DINO, DoRA, VideoMAE); it names none of them.

Per step: seed from (seed, rank, step) -> views on the device -> loss under autocast -> backward
(gradients averaged across processes by DDP) -> per-parameter clipping -> the method's hook before the
optimizer (DINO: last-layer freeze) -> AdamW step with scheduled lr and weight decay -> the method's hook after
it (DINO, DoRA: teacher EMA). Schedules are arrays indexed by the global step, so a resumed run picks up exactly
where the killed one stopped.

`pretrain` reads as its steps: `TrainingRun.start` (device, data order, the method, optimizer, schedules; a
resumed run's checkpoint; the run folder), `TrainingRun.train_until` (epochs of steps, logging, checkpoints),
`TrainingRun.finish` (last checkpoint, exported encoder, summary). A `Monitor` (given by the caller: the engine
imports no evaluation) measures the encoder at step 0, every ``monitor.every`` steps and at the end, into the
same ``metrics.jsonl``; it runs between steps, each of which seeds itself, so it changes nothing the run learns.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from wtours.errors import WtoursError
from wtours.pipelines.clipdata import ClipSampler
from wtours.progress import console
from wtours.store import RunDir, atomic_write_json, atomic_write_text, remove_atomic_temps
from wtours.trainers.training import distributed
from wtours.trainers.training.backbones import export_encoder
from wtours.trainers.training.checkpoint import load_checkpoint, save_checkpoint
from wtours.trainers.training.config import TrainConfig, config_to_tree
from wtours.trainers.training.methods import Method, ScheduleShape, StepState, method_module
from wtours.trainers.training.schedules import cosine_schedule


class NonFiniteLossError(WtoursError):
    """Training diverged; the last checkpoint on disk predates the bad step."""


@dataclass
class RunResult:
    run_dir: Path
    steps_done: int
    last_loss: float
    encoder_path: Path | None
    replicas_agree: bool
    is_main_process: bool


class Monitor(Protocol):
    """A measurement of the encoder while it trains (`wtours.trainers.evaluation.monitor.KnnMonitor`): called on
    the main process with the method after ``step`` steps, it returns the fields of that step's metrics line."""

    every: int

    def __call__(self, step: int, method: Method) -> dict[str, Any]: ...


def resolve_device(choice: str) -> torch.device:
    if choice == "cuda" and not torch.cuda.is_available():
        raise WtoursError("run.device=cuda but no CUDA GPU is visible (use run.device=auto or cpu)")
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(choice)


PRECISION_NAMES = {torch.bfloat16: "bf16", torch.float16: "fp16", torch.float32: "fp32"}


def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bf16 in hardware (AVX512-BF16 or AMX), as oneDNN reports it."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_precision(choice: str, device: torch.device) -> torch.dtype:
    """bf16 autocast on GPUs by default (no loss scaling needed, no fp16 NaNs); fp32 on CPU.

    On a CPU, bf16 on request: where the CPU has bf16 instructions (AVX512-BF16, AMX) the study presets train
    1.6x faster with it (benchmarks/study_cpu.py); where it has none, bf16 is emulated and slower than fp32,
    so the run trains in fp32 and says so. fp16 needs a GPU."""
    if choice == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if device.type == "cpu" and choice == "fp16":
        raise WtoursError("run.precision=fp16 needs a GPU; on CPU use fp32, bf16 or auto")
    if device.type == "cpu" and choice == "bf16" and not cpu_has_native_bf16():
        console.print(
            "run.precision=bf16: this CPU has no bf16 instructions (AVX512-BF16 or AMX), where bf16 is slower "
            "than fp32; training in fp32",
            highlight=False,
        )
        return torch.float32
    return {name: dtype for dtype, name in PRECISION_NAMES.items()}[choice]


def use_explicit_attention(module: nn.Module) -> int:
    """Switch every timm attention layer in ``module`` from fused SDPA to its explicit product (softmax of
    q k^T, then v); returns how many. For bf16 on a CPU: PyTorch's CPU flash-attention backward in bf16 is
    about 4x slower than in fp32, the explicit product in bf16 about 2x faster (a ViT-tiny step: 0.35 s in
    fp32, 0.35 s in bf16 with SDPA, 0.19 s in bf16 explicit). The same numbers up to rounding."""
    switched = 0
    for layer in module.modules():
        if getattr(layer, "fused_attn", None) is True:
            layer.fused_attn = False
            switched += 1
    return switched


def step_seed(seed: int, rank: int, step: int) -> int:
    """Randomness of one step on one process, independent of what ran before (hence exact resume)."""
    return int(np.random.SeedSequence([seed, rank, step]).generate_state(1)[0])


def param_groups(model: nn.Module, no_decay: frozenset[str] = frozenset()) -> list[dict[str, Any]]:
    """AdamW groups as DINO's ``get_params_groups`` and VideoMAE's ``get_parameter_groups``: weight decay on
    weight matrices only, never on biases, 1-D parameters (norms) or the named ``no_decay`` parameters (e.g.
    VideoMAE's mask token)."""
    decayed, plain = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        exempt = name.endswith(".bias") or param.ndim <= 1 or name in no_decay
        (plain if exempt else decayed).append(param)
    return [{"params": decayed, "decay": True}, {"params": plain, "decay": False}]


def clip_per_parameter(model: nn.Module, max_norm: float) -> float:
    """DINO's clipping: each parameter's gradient norm is capped separately. Returns the total norm."""
    norms = []
    for param in model.parameters():
        if param.grad is None:
            continue
        norm = param.grad.detach().norm()
        norms.append(norm)
        if max_norm > 0:
            param.grad.mul_(torch.clamp(max_norm / (norm + 1e-6), max=1.0))
    return float(torch.stack(norms).norm()) if norms else 0.0


def _collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Clips of any size batch: cropped, centred, to the batch's common size (see ``collate_clips``)."""
    from wtours.trainers.training.data import collate_clips

    return collate_clips(items)


class MetricsLog:
    """``metrics.jsonl``: one JSON object per logged step, appended and flushed (main process only)."""

    def __init__(self, path: Path, keep_up_to_step: int, enabled: bool):
        self.path = path
        self.enabled = enabled
        if not enabled:
            return
        kept = []
        # A resumed run drops lines from steps that the checkpoint does not contain; one from step 0 (nothing
        # checkpointed yet) drops them all, the monitor's step-0 line included, which it writes again.
        if path.is_file() and keep_up_to_step > 0:
            for line in path.read_text(encoding="utf-8").splitlines():
                with contextlib.suppress(ValueError):
                    if json.loads(line)["step"] <= keep_up_to_step:
                        kept.append(line)
        atomic_write_text(path, "".join(f"{line}\n" for line in kept))

    def write(self, record: dict[str, Any]) -> None:
        if self.enabled:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")


def prepare_student(
    method: Method, *, compile_model: bool, process: distributed.ProcessInfo, device: torch.device
) -> nn.Module:
    """The student as the loop calls it: compiled in place if asked, wrapped in DDP across processes."""
    if compile_model:
        method.student.compile()
        if method.teacher is not None:
            method.teacher.compile()
    if not process.is_distributed:
        return method.student
    device_ids = [process.local_rank] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(method.student, device_ids=device_ids)


@dataclass
class Optimization:
    """One training step, independent of where batches come from (the loop and the benchmark share it)."""

    method: Method
    student: nn.Module  # method.student, possibly compiled / DDP-wrapped
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    device: torch.device
    amp_dtype: torch.dtype
    clip_grad: float

    def step(
        self, batch: dict[str, Any], state: StepState, generator: torch.Generator
    ) -> tuple[float, float, dict[str, float]]:
        """Views -> loss -> backward -> clip -> method hook -> AdamW -> method hook. Returns (loss, grad norm,
        extras); raises NonFiniteLossError before touching any weight if the loss is NaN or infinite."""
        views = self.method.views(batch, generator)
        with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype != torch.float32):
            loss, extra = self.method.training_step(views, state, self.student)
        loss_value = float(distributed.all_reduce_mean(loss.detach().float()))
        if not math.isfinite(loss_value):
            raise NonFiniteLossError(f"loss is {loss_value} at step {state.step + 1} (epoch {state.epoch})")
        for group in self.optimizer.param_groups:
            group["lr"] = state.lr
            group["weight_decay"] = state.weight_decay if group["decay"] else 0.0
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        grad_norm = clip_per_parameter(self.method.student, self.clip_grad)
        self.method.before_optimizer_step(state)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return loss_value, grad_norm, {**extra, **self.method.after_optimizer_step(state)}


def build_sampler(dataset_size: int, config: TrainConfig, process: distributed.ProcessInfo) -> ClipSampler:
    """The item order: a permutation per (seed, epoch), split across processes, resumable mid-epoch."""
    return ClipSampler(dataset_size, seed=config.run.seed, num_replicas=process.world_size, rank=process.rank)


def pretrain(
    config: TrainConfig,
    dataset: Dataset,
    *,
    resume: bool = False,
    stop_after_steps: int | None = None,
    show_progress: bool = True,
    monitor: Monitor | None = None,
) -> RunResult:
    """Train ``config.method`` on ``dataset`` and write ``runs/<name>/`` (config, metrics, checkpoint,
    exported encoder). ``stop_after_steps`` ends this invocation early with a checkpoint (time-sliced jobs);
    ``resume`` continues from ``checkpoint.pt``; ``monitor`` measures the encoder as it trains."""
    device = resolve_device(config.run.device)
    process = distributed.setup(device.type)
    try:
        run = TrainingRun.start(config, dataset, device, process, resume=resume)
        run.monitor = monitor
        end_step = run.total_steps
        if stop_after_steps is not None:
            end_step = min(end_step, run.start_step + stop_after_steps)
        step, last_loss = run.train_until(end_step, show_progress=show_progress)
        return run.finish(step, last_loss)
    finally:
        distributed.teardown()


@dataclass
class Schedules:
    """The engine's per-step values: lr (warm-up, cosine, linear scaling with the batch) and weight decay."""

    lr: np.ndarray
    weight_decay: np.ndarray
    steps_per_epoch: int

    @classmethod
    def of(cls, config: TrainConfig, method: Method, shape: ScheduleShape, samples_per_step: int) -> Schedules:
        optim = config.optim
        # The linear scaling rule: lr (and, for methods that scale it too, min_lr) is given at a batch of 256.
        batch_scale = method.lr_batch_size(samples_per_step, config.data.frames_per_clip) / 256
        lr = cosine_schedule(
            optim.lr * batch_scale,
            optim.min_lr * (batch_scale if method.scales_min_lr else 1.0),
            shape.total_steps,
            round(optim.warmup_epochs * shape.steps_per_epoch),
        )
        weight_decay = cosine_schedule(optim.weight_decay, optim.weight_decay_end, shape.total_steps)
        return cls(lr, weight_decay, shape.steps_per_epoch)

    def at(self, step: int) -> StepState:
        return StepState(step, step // self.steps_per_epoch, float(self.lr[step]), float(self.weight_decay[step]))


@dataclass
class TrainingRun:
    """Everything one invocation of `pretrain` holds, built by `start`; its steps are methods."""

    config: TrainConfig
    dataset: Dataset
    device: torch.device
    process: distributed.ProcessInfo
    files: RunDir
    sampler: ClipSampler
    shape: ScheduleShape
    method: Method
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    schedules: Schedules
    optimization: Optimization
    metrics: MetricsLog
    start_step: int
    monitor: Monitor | None = None

    @property
    def total_steps(self) -> int:
        return self.shape.total_steps

    @property
    def steps_per_epoch(self) -> int:
        return self.shape.steps_per_epoch

    @classmethod
    def start(
        cls, config: TrainConfig, dataset: Dataset, device: torch.device, process: distributed.ProcessInfo,
        *, resume: bool,
    ) -> TrainingRun:  # fmt: skip
        """Device, data order, method, optimizer and schedules; then the checkpoint of a resumed run (checked
        before anything is written) and the run folder (config.yaml, the encoder at step 0)."""
        device = _process_device(device, process)
        amp_dtype = resolve_precision(config.run.precision, device)
        files = RunDir(config.run_dir)
        if files.checkpoint_path.exists() and not resume:
            raise WtoursError(
                f"{files.root} already holds a run: add --resume to continue it, or pick another --name"
            )
        sampler = build_sampler(len(dataset), config, process)
        shape = ScheduleShape.of(config.optim, _steps_per_epoch(len(dataset), sampler, config, process))
        torch.manual_seed(config.run.seed)  # identical initial weights on every process
        method: Method = method_module(config.method).build(config.backbone, config.options, shape).to(device)
        if device.type == "cpu" and amp_dtype == torch.bfloat16:
            use_explicit_attention(method)
        optimizer = torch.optim.AdamW(
            param_groups(method.student, method.no_weight_decay()), lr=0.0, betas=config.optim.betas
        )
        scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
        schedules = Schedules.of(config, method, shape, config.optim.batch_size * process.world_size)
        start_step = _restore(files, config, shape, method, optimizer, scaler, process) if resume else 0
        if process.is_main:
            _prepare_run_folder(files, config, method, start_step)
        optimization = Optimization(
            method=method,
            student=prepare_student(method, compile_model=config.run.compile, process=process, device=device),
            optimizer=optimizer,
            scaler=scaler,
            device=device,
            amp_dtype=amp_dtype,
            clip_grad=config.optim.clip_grad,
        )
        metrics = MetricsLog(files.metrics_path, start_step, enabled=process.is_main)
        return cls(config, dataset, device, process, files, sampler, shape, method, optimizer, scaler, schedules,
                   optimization, metrics, start_step)  # fmt: skip

    def save(self, step_done: int) -> None:
        """Write the checkpoint after ``step_done`` steps (main process), then wait for every process."""
        if self.process.is_main:
            epoch, position = divmod(step_done, self.steps_per_epoch)
            save_checkpoint(
                self.files.checkpoint_path,
                {
                    "step": step_done,
                    "steps_per_epoch": self.steps_per_epoch,
                    "data": {"epoch": epoch, "position": position * self.config.optim.batch_size},
                    "method": self.method.state_dict(),
                    "optimizer": self.optimizer.state_dict(),
                    "scaler": self.scaler.state_dict(),
                    "config": json.dumps(config_to_tree(self.config)),
                },
            )
        distributed.barrier()

    def loader(self, step: int) -> DataLoader:
        """The batches of ``step``'s epoch from ``step`` on: the sampler is set there, not saved (it runs
        ahead of training while the loader prefetches)."""
        epoch, step_in_epoch = divmod(step, self.steps_per_epoch)
        self.sampler.set_position(epoch, step_in_epoch * self.config.optim.batch_size)
        return DataLoader(
            self.dataset,
            batch_size=self.config.optim.batch_size,
            sampler=self.sampler,
            num_workers=self.config.data.num_workers,
            drop_last=True,
            pin_memory=self.device.type == "cuda",
            collate_fn=_collate,
            persistent_workers=False,
            # Worker seeds from (seed, rank, step) too, not from whatever the global RNG holds here.
            generator=torch.Generator().manual_seed(step_seed(self.config.run.seed, self.process.rank, step)),
        )

    def take_step(self, step: int, batch: dict[str, Any]) -> tuple[float, float, dict[str, float], StepState]:
        """One optimisation step at global ``step``, its randomness seeded from (seed, rank, step)."""
        seed = step_seed(self.config.run.seed, self.process.rank, step)
        torch.manual_seed(seed)
        generator = torch.Generator().manual_seed(seed)
        state = self.schedules.at(step)
        batch["frames"] = batch["frames"].to(self.device, non_blocking=True)
        try:
            loss_value, grad_norm, extra = self.optimization.step(batch, state, generator)
        except NonFiniteLossError as err:
            checkpoint = self.files.checkpoint_path
            saved = f"the checkpoint {checkpoint} is intact" if checkpoint.exists() else "no checkpoint was written"
            raise NonFiniteLossError(
                f"{err}; stopped, {saved}. Lower optim.lr, lengthen optim.warmup_epochs, or use "
                "run.precision=bf16/fp32"
            ) from None
        return loss_value, grad_norm, extra, state

    def train_until(self, end_step: int, *, show_progress: bool) -> tuple[int, float]:
        """Steps from `start_step` to ``end_step``, one loader per epoch; logs every ``run.log_every`` steps and
        checkpoints every ``run.checkpoint_every``. Returns the steps done and the last loss."""
        progress = _Progress(enabled=show_progress and self.process.is_main, total=self.total_steps,
                             done=self.start_step)  # fmt: skip
        log = _IntervalLog(self.config.optim.batch_size * self.process.world_size, self.device)
        self.method.train()
        step, last_loss = self.start_step, float("nan")
        with progress:
            if step == 0:
                self.measure(step, log)  # the floor: the encoder before any step
            while step < end_step:
                for batch in self.loader(step):
                    loss_value, grad_norm, extra, state = self.take_step(step, batch)
                    step, last_loss = step + 1, loss_value
                    log.add(loss_value, images_per_sample=batch["frames"].shape[1])
                    if step % self.config.run.log_every == 0 or step == end_step:
                        record = log.record(step, state, grad_norm, extra)
                        self.metrics.write(record)
                        progress.show(step, record)
                    else:
                        progress.advance(step)
                    if step % self.config.run.checkpoint_every == 0 and step < end_step:
                        self.save(step)
                    if self.monitor is not None and (step % self.monitor.every == 0 or step == self.total_steps):
                        self.measure(step, log)
                    if step >= end_step or step % self.steps_per_epoch == 0:
                        break
        return step, last_loss

    def measure(self, step: int, log: _IntervalLog) -> None:
        """The monitor's metrics line after ``step`` steps (main process; the others wait at the next step's
        gradient exchange); the time it takes is left out of the next throughput figure."""
        if self.monitor is None or not self.process.is_main:
            return
        began = time.perf_counter()
        record = {"step": step, **self.monitor(step, self.method)}
        self.metrics.write(record)
        log.began += time.perf_counter() - began  # the interval's images keep their training time, not this

    def finish(self, step: int, last_loss: float) -> RunResult:
        """The last checkpoint; once every step is done, the exported encoder; the summary."""
        self.save(step)
        agree = distributed.replicas_agree(self.method)
        encoder_path = None
        if step >= self.total_steps:
            encoder_path = self.files.encoder_path
            if self.process.is_main:
                export_encoder(self.method.encoder(), self.method.encoder_spec(), encoder_path)
        if self.process.is_main:
            atomic_write_json(
                self.files.summary_path,
                {
                    "method": self.config.method,
                    "steps_done": step,
                    "total_steps": self.total_steps,
                    "last_loss": last_loss,
                    "world_size": self.process.world_size,
                    "device": self.device.type,
                    "precision": PRECISION_NAMES[self.optimization.amp_dtype],  # as trained (bf16 may fall back)
                    "replicas_agree": agree,
                    "encoder": str(encoder_path) if encoder_path else None,
                },
            )
        return RunResult(self.files.root, step, last_loss, encoder_path, agree, self.process.is_main)


def _process_device(device: torch.device, process: distributed.ProcessInfo) -> torch.device:
    """This process's device: its own GPU under torchrun (TF32 matmuls allowed), else ``device``."""
    if device.type != "cuda":
        return device
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    return torch.device("cuda", process.local_rank)


def _steps_per_epoch(dataset_size: int, sampler: ClipSampler, config: TrainConfig,
                     process: distributed.ProcessInfo) -> int:  # fmt: skip
    """Full batches in one pass of this process's share of the data, capped by ``optim.steps_per_epoch``."""
    optim = config.optim
    steps = sampler.samples_per_rank // optim.batch_size
    if optim.steps_per_epoch:
        steps = min(steps, optim.steps_per_epoch)
    if steps < 1:
        raise WtoursError(
            f"{dataset_size} training samples are fewer than one batch ({optim.batch_size} per process x "
            f"{process.world_size} processes): lower optim.batch_size or add data"
        )
    return steps


def _restore(
    files: RunDir, config: TrainConfig, shape: ScheduleShape, method: Method, optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler, process: distributed.ProcessInfo,
) -> int:  # fmt: skip
    """Load a resumed run's checkpoint into the method, optimizer and scaler; return the steps it holds.
    A changed setting is refused, naming each key, before anything is loaded or written."""
    from wtours.trainers.training.resume import check_resume, restore, saved_config

    checkpoint_path = files.checkpoint_path
    if not checkpoint_path.exists():
        if process.is_main:
            console.print(f"no checkpoint in {files.root} yet: starting from step 0", highlight=False)
        return 0
    state = load_checkpoint(checkpoint_path)
    notices = check_resume(
        saved_config(state), config_to_tree(config), checkpoint=checkpoint_path, steps_done=int(state["step"]),
        total_steps=shape.total_steps, saved_steps_per_epoch=state.get("steps_per_epoch"),
        steps_per_epoch=shape.steps_per_epoch,
    )  # fmt: skip
    restore(state, {"method": method, "optimizer": optimizer, "scaler": scaler}, checkpoint_path)
    for notice in notices if process.is_main else []:
        console.print(f"resuming {files.root}: {notice}", highlight=False, markup=False)
    return int(state["step"])


def _prepare_run_folder(files: RunDir, config: TrainConfig, method: Method, start_step: int) -> None:
    """config.yaml (the resolved config) and, for a new run, the encoder at step 0: the same network before any
    step, the floor its evaluations should beat."""
    import yaml

    files.root.mkdir(parents=True, exist_ok=True)
    remove_atomic_temps(files.root)  # a run killed while writing a checkpoint left its temp file
    atomic_write_text(files.config_path, yaml.safe_dump(config_to_tree(config), sort_keys=False))
    if start_step == 0:
        export_encoder(method.encoder(), method.encoder_spec(), files.encoder_init_path)


class _IntervalLog:
    """The losses and throughput since the last metrics line."""

    def __init__(self, samples_per_step: int, device: torch.device) -> None:
        self.samples_per_step, self.device = samples_per_step, device
        self.losses: list[float] = []
        self.images = 0
        self.began = time.perf_counter()

    def add(self, loss: float, images_per_sample: int) -> None:
        self.losses.append(loss)
        self.images += self.samples_per_step * images_per_sample

    def record(self, step: int, state: StepState, grad_norm: float, extra: dict[str, float]) -> dict[str, Any]:
        """The metrics line of ``step`` (loss averaged over the interval), and a new interval."""
        elapsed = time.perf_counter() - self.began
        record = {
            "step": step,
            "epoch": state.epoch,
            "loss": float(np.mean(self.losses)),
            "lr": state.lr,
            "weight_decay": state.weight_decay,
            "grad_norm": grad_norm,
            "images_per_s": self.images / max(elapsed, 1e-9),
            **extra,
        }
        if self.device.type == "cuda":
            record["peak_memory_gib"] = torch.cuda.max_memory_allocated(self.device) / 2**30
        self.losses, self.images, self.began = [], 0, time.perf_counter()
        return record


class _Progress:
    """A rich bar on the main process showing loss, lr and throughput."""

    def __init__(self, enabled: bool, total: int, done: int):
        self.enabled = enabled
        self.total = total
        self.done = done

    def __enter__(self) -> _Progress:
        if self.enabled:
            from wtours.progress import make_progress

            self.progress = make_progress()
            self.progress.__enter__()
            self.task = self.progress.add_task("pretrain", total=self.total, completed=self.done)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            self.progress.__exit__(*exc)

    def advance(self, step: int) -> None:
        if self.enabled:
            self.progress.update(self.task, completed=step)

    def show(self, step: int, record: dict[str, Any]) -> None:
        if self.enabled:
            description = (
                f"loss {record['loss']:.4f}  lr {record['lr']:.2e}  {record['images_per_s']:.0f} img/s"
            )
            self.progress.update(self.task, completed=step, description=description)
