"""Data-parallel training under `torchrun`: one process per core group or GPU.

Why hand-rolled and not `DistributedDataParallel`: the loop already computes each step from a
seed, so every process can draw the *whole* global batch and keep its own equal shard; after
the backward pass the gradients are averaged with one all-reduce per parameter. With losses
that are means over equal-sized shards (as every aios task's are), N processes then take
exactly the step one process takes on the global batch, which the tests check. Only rank 0
writes checkpoints and figures. Backends: NCCL when CUDA is present, else gloo (CPU).
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import torch
import torch.distributed as dist


def init_distributed() -> tuple[int, int]:
    """Join the process group `torchrun` describes (``WORLD_SIZE`` > 1); (rank, world)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), dist.get_world_size()


def is_main_process() -> bool:
    return not dist.is_initialized() or dist.get_rank() == 0


def average_gradients(params: Iterable[torch.Tensor], world: int) -> None:
    """Replace every gradient by its mean over the processes."""
    if world <= 1:
        return
    for p in params:
        if p.grad is not None:
            dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
            p.grad.div_(world)


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


__all__ = ["average_gradients", "barrier", "init_distributed", "is_main_process"]
