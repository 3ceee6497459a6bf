"""torchrun / DistributedDataParallel helpers: one script for one process or many.

``torchrun --standalone --nproc-per-node N -m workbench train ...`` sets ``RANK``,
``WORLD_SIZE`` and ``LOCAL_RANK``; :func:`setup` reads them and joins the process group with
NCCL on CUDA and gloo on CPU. Without them everything degrades to a single process and the
collectives below are no-ops, so the training loop has no ``if distributed`` branches.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel


@dataclass(frozen=True)
class DistributedContext:
    """Where this process sits in the job.

    Attributes:
        rank: Global rank (0 writes the run folder).
        world_size: Number of processes.
        local_rank: Rank on this machine (selects the GPU).
        device: Device this process trains on.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def setup(device: str | None = None) -> DistributedContext:
    """Join the torchrun process group if there is one, and pick the device.

    Args:
        device: ``"cpu"``, ``"cuda"`` or ``None`` (CUDA when available).

    Returns:
        The context of this process.
    """
    use_cuda = torch.cuda.is_available() if device is None else device.startswith("cuda")
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if use_cuda:
        torch.cuda.set_device(local_rank)
        chosen = torch.device("cuda", local_rank)
    else:
        chosen = torch.device("cpu")
    if world_size > 1 and not dist.is_initialized():
        # Validation runs on rank 0 while the others wait in the next collective: allow it
        # far longer than the 10-minute default before calling the job hung.
        dist.init_process_group(
            backend="nccl" if use_cuda else "gloo", timeout=timedelta(minutes=60)
        )
    return DistributedContext(rank, world_size, local_rank, chosen)


def cleanup() -> None:
    """Leave the process group (safe to call when there is none)."""
    if dist.is_initialized():
        dist.destroy_process_group()


def wrap(module: nn.Module, context: DistributedContext, find_unused: bool = False) -> nn.Module:
    """Wrap ``module`` in DDP when there are several processes; otherwise return it as is.

    Args:
        module: The training module (already on ``context.device``).
        context: This process's context.
        find_unused: Needed when a forward leaves parameters unused (single-path supernets).
    """
    if not context.enabled:
        return module
    device_ids = [context.local_rank] if context.device.type == "cuda" else None
    return DistributedDataParallel(
        module, device_ids=device_ids, find_unused_parameters=find_unused
    )


def unwrap(module: nn.Module) -> nn.Module:
    """The module inside a DDP wrapper (what gets saved and validated)."""
    return module.module if isinstance(module, DistributedDataParallel) else module


def agree_any(flags: list[bool], context: DistributedContext) -> list[bool]:
    """Logical OR of each flag across processes (stop requests, deadlines, checkpoint due).

    A SIGTERM reaches only the process it was sent to and clocks differ slightly, so every
    decision that changes the control flow is agreed here, once per step.
    """
    if not context.enabled:
        return list(flags)
    values = torch.tensor([float(flag) for flag in flags], device=context.device)
    dist.all_reduce(values, op=dist.ReduceOp.MAX)
    return [bool(value) for value in values.tolist()]


def mean_across(value: Tensor, context: DistributedContext) -> Tensor:
    """Mean of a scalar tensor over processes (for logging the global loss)."""
    if not context.enabled:
        return value.detach()
    value = value.detach().clone()
    dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value / context.world_size


def gather_objects(value: object, context: DistributedContext) -> list[object]:
    """Every process's ``value``, in rank order (all processes get the list)."""
    if not context.enabled:
        return [value]
    gathered: list[object] = [None] * context.world_size
    dist.all_gather_object(gathered, value)
    return gathered


def broadcast_object(value: object, context: DistributedContext) -> object:
    """Rank 0's ``value`` on every process."""
    if not context.enabled:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def parameter_fingerprint(module: nn.Module) -> str:
    """SHA-256 of every parameter's bytes, in name order: equal iff the weights are equal."""
    digest = hashlib.sha256()
    for name, parameter in sorted(unwrap(module).named_parameters()):
        digest.update(name.encode())
        digest.update(parameter.detach().cpu().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
