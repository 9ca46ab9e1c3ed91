"""The one training loop shared by every method (DINO, DoRA, VideoMAE).

Per step: seed from (seed, rank, step) -> views on the device -> loss under autocast -> backward
(gradients averaged across processes by DDP) -> per-parameter clipping -> last-layer freeze ->
AdamW step with scheduled lr and weight decay -> teacher EMA. Schedules are arrays indexed by the
global step, so a resumed run picks up exactly where the killed one stopped.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from wtours.errors import WtoursError
from wtours.pipelines.clipdata import ClipSampler
from wtours.progress import console
from wtours.store import RunDir, atomic_write_json, atomic_write_text
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


def resolve_device(choice: str) -> torch.device:
    if choice == "cuda" and not torch.cuda.is_available():
        raise WtoursError("run.device=cuda but no CUDA GPU is visible (use run.device=auto or cpu)")
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(choice)


def resolve_precision(choice: str, device: torch.device) -> torch.dtype:
    """bf16 autocast on GPUs by default (no loss scaling needed, no fp16 NaNs); fp32 on CPU."""
    if choice == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if device.type == "cpu" and choice != "fp32":
        raise WtoursError(f"run.precision={choice} needs a GPU; on CPU use fp32 (or auto)")
    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[choice]


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
        if path.is_file():  # a resumed run drops lines from steps that the checkpoint does not contain
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
    freeze_last_layer_steps: int

    def step(
        self, batch: dict[str, Any], state: StepState, generator: torch.Generator
    ) -> tuple[float, float, dict[str, float]]:
        """Views -> loss -> backward -> clip -> freeze -> AdamW -> EMA. Returns (loss, grad norm, extras);
        raises NonFiniteLossError before touching any weight if the loss is NaN or infinite."""
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
        if state.step < self.freeze_last_layer_steps:
            for name, param in self.method.student.named_parameters():
                if "last_layer" in name:
                    param.grad = None
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.method.teacher_update(state.momentum)
        return loss_value, grad_norm, extra


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
) -> RunResult:
    """Train ``config.method`` on ``dataset`` and write ``runs/<name>/`` (config, metrics, checkpoint,
    exported encoder). ``stop_after_steps`` ends this invocation early with a checkpoint (time-sliced jobs);
    ``resume`` continues from ``checkpoint.pt``."""
    device = resolve_device(config.run.device)
    process = distributed.setup(device.type)
    try:
        return _train(config, dataset, device, process, resume, stop_after_steps, show_progress)
    finally:
        distributed.teardown()


def _train(
    config: TrainConfig,
    dataset: Dataset,
    device: torch.device,
    process: distributed.ProcessInfo,
    resume: bool,
    stop_after_steps: int | None,
    show_progress: bool,
) -> RunResult:
    if device.type == "cuda":
        device = torch.device("cuda", process.local_rank)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    amp_dtype = resolve_precision(config.run.precision, device)
    run_dir = config.run_dir
    files = RunDir(run_dir)
    checkpoint_path = files.checkpoint_path
    if checkpoint_path.exists() and not resume:
        raise WtoursError(
            f"{run_dir} already holds a run: add --resume to continue it, or pick another --name"
        )

    optim = config.optim
    sampler = build_sampler(len(dataset), config, process)
    steps_per_epoch = sampler.samples_per_rank // optim.batch_size
    if optim.steps_per_epoch:
        steps_per_epoch = min(steps_per_epoch, optim.steps_per_epoch)
    if steps_per_epoch < 1:
        raise WtoursError(
            f"{len(dataset)} training samples are fewer than one batch ({optim.batch_size} per process x "
            f"{process.world_size} processes): lower optim.batch_size or add data"
        )
    shape = ScheduleShape(optim.epochs, steps_per_epoch)
    total_steps = shape.total_steps

    module = method_module(config.method)
    torch.manual_seed(config.run.seed)  # identical initial weights on every process
    method: Method = module.build(config, module.Options.model_validate(config.method_options), shape).to(
        device
    )
    optimizer = torch.optim.AdamW(param_groups(method.student, method.no_weight_decay()), lr=0.0, betas=optim.betas)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    freeze_last_layer_steps = round(optim.freeze_last_layer * steps_per_epoch)

    samples_per_step = optim.batch_size * process.world_size
    # The linear scaling rule: lr (and, for methods that scale it too, min_lr) is given at a batch of 256.
    batch_scale = method.lr_batch_size(samples_per_step, config.data.frames_per_clip) / 256
    lr_schedule = cosine_schedule(
        optim.lr * batch_scale,
        optim.min_lr * (batch_scale if method.scales_min_lr else 1.0),
        total_steps,
        round(optim.warmup_epochs * steps_per_epoch),
    )
    wd_schedule = cosine_schedule(optim.weight_decay, optim.weight_decay_end, total_steps)
    momentum_schedule = cosine_schedule(optim.momentum_teacher, 1.0, total_steps)

    start_step = 0
    if resume and not checkpoint_path.exists() and process.is_main:
        console.print(f"no checkpoint in {run_dir} yet: starting from step 0", highlight=False)
    if resume and checkpoint_path.exists():
        from wtours.trainers.training.resume import check_resume, restore, saved_config

        state = load_checkpoint(checkpoint_path)
        # Before anything is loaded or written: a changed setting is refused, naming each key.
        notices = check_resume(
            saved_config(state), config_to_tree(config), checkpoint=checkpoint_path, steps_done=int(state["step"]),
            total_steps=total_steps, saved_steps_per_epoch=state.get("steps_per_epoch"),
            steps_per_epoch=steps_per_epoch,
        )  # fmt: skip
        restore(state, {"method": method, "optimizer": optimizer, "scaler": scaler}, checkpoint_path)
        start_step = int(state["step"])
        for notice in notices if process.is_main else []:
            console.print(f"resuming {run_dir}: {notice}", highlight=False, markup=False)

    if process.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        import yaml

        atomic_write_text(files.config_path, yaml.safe_dump(config_to_tree(config), sort_keys=False))
        if start_step == 0:  # the same network before any step: the floor its evaluations should beat
            export_encoder(method.encoder(), method.encoder_spec(config), files.encoder_init_path)
    metrics = MetricsLog(files.metrics_path, start_step, enabled=process.is_main)

    optimization = Optimization(
        method=method,
        student=prepare_student(method, compile_model=config.run.compile, process=process, device=device),
        optimizer=optimizer,
        scaler=scaler,
        device=device,
        amp_dtype=amp_dtype,
        clip_grad=optim.clip_grad,
        freeze_last_layer_steps=freeze_last_layer_steps,
    )

    def save(step_done: int) -> None:
        if process.is_main:
            epoch, position = divmod(step_done, steps_per_epoch)
            save_checkpoint(
                checkpoint_path,
                {
                    "step": step_done,
                    "steps_per_epoch": steps_per_epoch,
                    "data": {"epoch": epoch, "position": position * optim.batch_size},
                    "method": method.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scaler": scaler.state_dict(),
                    "config": json.dumps(config_to_tree(config)),
                },
            )
        distributed.barrier()

    end_step = total_steps if stop_after_steps is None else min(total_steps, start_step + stop_after_steps)
    progress = _Progress(enabled=show_progress and process.is_main, total=total_steps, done=start_step)
    method.train()
    step = start_step
    last_loss = float("nan")
    interval_losses: list[float] = []
    interval_start, interval_steps = time.perf_counter(), 0
    images_per_sample = None
    with progress:
        while step < end_step:
            epoch, step_in_epoch = divmod(step, steps_per_epoch)
            # Set, not saved: the sampler runs ahead of training while the loader prefetches.
            sampler.set_position(epoch, step_in_epoch * optim.batch_size)
            loader = DataLoader(
                dataset,
                batch_size=optim.batch_size,
                sampler=sampler,
                num_workers=config.data.num_workers,
                drop_last=True,
                pin_memory=device.type == "cuda",
                collate_fn=_collate,
                persistent_workers=False,
                # Worker seeds from (seed, rank, step) too, not from whatever the global RNG holds here.
                generator=torch.Generator().manual_seed(step_seed(config.run.seed, process.rank, step)),
            )
            for batch in loader:
                seed = step_seed(config.run.seed, process.rank, step)
                torch.manual_seed(seed)
                generator = torch.Generator().manual_seed(seed)
                state = StepState(
                    step=step,
                    epoch=epoch,
                    lr=float(lr_schedule[step]),
                    weight_decay=float(wd_schedule[step]),
                    momentum=float(momentum_schedule[step]),
                )
                batch["frames"] = batch["frames"].to(device, non_blocking=True)
                images_per_sample = batch["frames"].shape[1]
                try:
                    loss_value, grad_norm, extra = optimization.step(batch, state, generator)
                except NonFiniteLossError as err:
                    saved = (
                        f"the checkpoint {checkpoint_path} is intact"
                        if checkpoint_path.exists()
                        else "no checkpoint was written"
                    )
                    raise NonFiniteLossError(
                        f"{err}; stopped, {saved}. Lower optim.lr, lengthen optim.warmup_epochs, or use "
                        "run.precision=bf16/fp32"
                    ) from None

                step += 1
                last_loss = loss_value
                interval_losses.append(loss_value)
                interval_steps += 1
                if step % config.run.log_every == 0 or step == end_step:
                    elapsed = time.perf_counter() - interval_start
                    images = interval_steps * samples_per_step * images_per_sample
                    record = {
                        "step": step,
                        "epoch": epoch,
                        "loss": float(np.mean(interval_losses)),
                        "lr": state.lr,
                        "weight_decay": state.weight_decay,
                        "momentum": state.momentum,
                        "grad_norm": grad_norm,
                        "images_per_s": images / max(elapsed, 1e-9),
                        **extra,
                    }
                    if device.type == "cuda":
                        record["peak_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
                    metrics.write(record)
                    progress.show(step, record)
                    interval_losses, interval_steps, interval_start = [], 0, time.perf_counter()
                else:
                    progress.advance(step)
                if step % config.run.checkpoint_every == 0 and step < end_step:
                    save(step)
                if step >= end_step or step % steps_per_epoch == 0:
                    break
    save(step)
    agree = distributed.replicas_agree(method)
    encoder_path = None
    if step >= total_steps:
        encoder_path = files.encoder_path
        if process.is_main:
            export_encoder(method.encoder(), method.encoder_spec(config), encoder_path)
    if process.is_main:
        atomic_write_json(
            files.summary_path,
            {
                "method": config.method,
                "steps_done": step,
                "total_steps": total_steps,
                "last_loss": last_loss,
                "world_size": process.world_size,
                "replicas_agree": agree,
                "encoder": str(encoder_path) if encoder_path else None,
            },
        )
    return RunResult(run_dir, step, last_loss, encoder_path, agree, process.is_main)


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
