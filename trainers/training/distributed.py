"""Distribution without ceremony: under ``torchrun`` (WORLD_SIZE > 1) a process group is created
(NCCL on GPUs, gloo on CPUs); a single process runs with no process group at all, and every helper
here then does nothing."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class ProcessInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1


def is_active() -> bool:
    return dist.is_available() and dist.is_initialized()


def setup(device_kind: str) -> ProcessInfo:
    """Join the process group that ``torchrun`` describes in the environment, if any."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return ProcessInfo()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not is_active():
        if device_kind == "cuda":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend="nccl" if device_kind == "cuda" else "gloo")
    return ProcessInfo(rank=rank, world_size=world_size, local_rank=local_rank)


def teardown() -> None:
    if is_active():
        dist.destroy_process_group()


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    if is_active():
        tensor = tensor.clone()
        dist.all_reduce(tensor)
    return tensor


def all_reduce_mean(tensor: torch.Tensor) -> torch.Tensor:
    if is_active():
        return all_reduce_sum(tensor) / dist.get_world_size()
    return tensor


def replicas_agree(module: torch.nn.Module) -> bool:
    """True when every process holds the same parameters and buffers (e.g. DINO's center), compared
    through a checksum per tensor."""
    if not is_active():
        return True
    tensors = [*module.parameters(), *module.buffers()]
    sums = torch.stack([tensor.detach().double().sum() for tensor in tensors])
    low, high = sums.clone(), sums.clone()
    dist.all_reduce(low, op=dist.ReduceOp.MIN)
    dist.all_reduce(high, op=dist.ReduceOp.MAX)
    return bool(torch.equal(low, high))


def barrier() -> None:
    if is_active():
        dist.barrier()
