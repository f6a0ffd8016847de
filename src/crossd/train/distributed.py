"""Process-group set-up from ``torchrun`` environment variables, and the few collectives pretraining needs.

``torchrun`` sets ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE``; without them the run is a single process.
The backend is NCCL for CUDA devices and gloo for CPU.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from crossd.errors import SettingsError


@dataclass
class DistInfo:
    """Where this process stands: ``rank`` of ``world_size`` processes, on ``device``."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def resolve_device(device: str, local_rank: int = 0) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; a bare ``"cuda"`` picks this process's ``LOCAL_RANK`` GPU."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        resolved = torch.device(device)
    except RuntimeError as exc:
        raise SettingsError(f"{device!r} is not a device ({exc})", field="device") from None
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise SettingsError(f"{device!r} requested but CUDA is not available", field="device")
        if resolved.index is None:
            resolved = torch.device("cuda", local_rank)
    return resolved


def init_distributed(device: str) -> DistInfo:
    """Join the ``torchrun`` process group if its variables are set; otherwise a single-process ``DistInfo``."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return DistInfo(device=resolve_device(device))
    rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    resolved = resolve_device(device, local_rank)
    if resolved.type == "cuda":
        torch.cuda.set_device(resolved)
    if not dist.is_initialized():
        backend = "nccl" if resolved.type == "cuda" else "gloo"
        dist.init_process_group(backend, rank=rank, world_size=world_size)
    return DistInfo(rank, world_size, local_rank, resolved)


def close_distributed() -> None:
    """Leave the process group (if any)."""
    if dist.is_initialized():
        dist.destroy_process_group()


def convert_sync_batchnorm(model: nn.Module, info: DistInfo, warn: bool = True) -> nn.Module:
    """``SyncBatchNorm`` on distributed CUDA runs; CPU runs keep per-process BatchNorm (SyncBN needs GPUs)."""
    if info.device.type != "cuda":
        if warn and info.is_main:
            warnings.warn("sync_bn needs CUDA (SyncBatchNorm raises on CPU); using per-process BatchNorm", stacklevel=2)
        return model
    return nn.SyncBatchNorm.convert_sync_batchnorm(model) if info.distributed else model


def all_reduce_sum(values: list[float], info: DistInfo) -> list[float]:
    """Element-wise sum of ``values`` over all processes (float64)."""
    tensor = torch.tensor(values, dtype=torch.float64, device=info.device)
    if info.distributed:
        dist.all_reduce(tensor)
    return tensor.tolist()


def average_gradients(parameters: Iterable[nn.Parameter], info: DistInfo) -> None:
    """Replace each gradient by its mean over all processes, in one all-reduce of the flattened gradients.

    Parameters without a gradient are skipped (they must be the same on every process).
    """
    if not info.distributed:
        return
    grads = [p.grad for p in dict.fromkeys(parameters) if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= info.world_size
    for grad, part in zip(grads, flat.split([g.numel() for g in grads]), strict=True):
        grad.copy_(part.view_as(grad))


def all_gather_objects(obj: Any, info: DistInfo) -> list[Any]:
    """``[obj of rank 0, obj of rank 1, ...]`` (picklable objects)."""
    if not info.distributed:
        return [obj]
    gathered: list[Any] = [None] * info.world_size
    dist.all_gather_object(gathered, obj)
    return gathered


def broadcast_buffers(module: nn.Module, info: DistInfo) -> None:
    """Give every process rank 0's buffers (BatchNorm statistics), so all evaluate the model rank 0 saves."""
    if info.distributed:
        for buffer in module.buffers():
            dist.broadcast(buffer, 0)


def barrier(info: DistInfo) -> None:
    if info.distributed:
        dist.barrier()
