"""Process bodies for the distributed hybrid-training tests (importable by ``torch.multiprocessing.spawn``)."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from crossd.nn.crossd_conv import CrossDConv
from crossd.train import PretrainConfig, pretrain
from crossd.train.distributed import DistInfo
from crossd.train.engine import Precision, cross_entropy_step, train_one_epoch
from crossd.train.hybrid import HybridSteps, VolumeBatches

GLOBAL_BATCH, GLOBAL_VOLUMES, STEPS = 8, 4, 2


def tiny_crossd_net() -> nn.Module:
    """Two Cross-D layers and a classifier, without BatchNorm (the heads' BatchNorm is replaced by ``Identity``).

    BatchNorm normalises with each process's own batch (``SyncBatchNorm`` needs CUDA), so with it a distributed
    step differs from a single-process step by construction; without it the two must agree to rounding.
    """
    torch.manual_seed(0)
    net = nn.Sequential(
        CrossDConv(3, 4, 3, padding=1),
        nn.ReLU(),
        CrossDConv(4, 6, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(6, 3),
    )
    for layer in (net[0], net[2]):
        layer.rotation_head[1] = nn.Identity()
    return net


def hybrid_steps(rank: int, world_size: int, store: str, volumes: str, out: str) -> None:
    """``STEPS`` hybrid steps (a 2D step, then a 3D step) on this process's share of fixed global batches.

    Rank 0 saves the trained state and the epoch's losses to ``out``.
    """
    torch.set_num_threads(1)
    if world_size > 1:
        dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world_size)
    info = DistInfo(rank, world_size)
    bare = tiny_crossd_net()
    model = DistributedDataParallel(bare) if world_size > 1 else bare
    optimizer = torch.optim.SGD(bare.parameters(), lr=0.1, momentum=0.9)
    batches = VolumeBatches(volumes, GLOBAL_VOLUMES // world_size, 0, 3, torch.device("cpu"), None, rank, world_size)
    hybrid = HybridSteps(bare, optimizer, batches, every=1, init="crossd", info=info)
    hybrid.start_epoch(0)
    generator = torch.Generator().manual_seed(1)
    per = GLOBAL_BATCH // world_size
    shards = []
    for _ in range(STEPS):
        images = torch.randn(GLOBAL_BATCH, 3, 12, 12, generator=generator)
        labels = torch.randint(0, 3, (GLOBAL_BATCH,), generator=generator)
        shards.append((images[rank * per : (rank + 1) * per], labels[rank * per : (rank + 1) * per]))
    stats = train_one_epoch(model, shards, cross_entropy_step(), None, optimizer, info, Precision(), after_step=hybrid)
    volume_loss = hybrid.mean_loss()
    if rank == 0:
        torch.save({"state": bare.state_dict(), "loss": stats.loss, "volume_loss": volume_loss}, out)
    if world_size > 1:
        dist.destroy_process_group()


def pretrain_rank(rank: int, world_size: int, port: int, config: dict) -> None:
    """``pretrain(PretrainConfig(**config))`` as process ``rank`` of a ``torchrun``-like group on ``port``."""
    os.environ.update(
        RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)
    )
    torch.set_num_threads(1)
    pretrain(PretrainConfig(**config))


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
