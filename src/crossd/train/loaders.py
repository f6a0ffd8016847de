"""Data loaders of a (possibly distributed) run: seeded shuffling for training, exact sharding for evaluation."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from crossd.train.distributed import DistInfo


class TrainLoader:
    """Batches of this process's share of ``dataset``, in an order fixed by ``(seed, epoch)``.

    A ``DistributedSampler`` shuffles (for one process too, so a resumed run sees the same order); worker
    processes get their seeds from a generator re-seeded from ``(seed, epoch, rank)`` every epoch. The last
    incomplete batch is dropped when there is a full one (BatchNorm cannot train on a batch of one).
    """

    def __init__(self, dataset: Dataset, batch_size: int, workers: int, seed: int, info: DistInfo):
        self.seed, self.rank = seed, info.rank
        self.sampler = DistributedSampler(dataset, info.world_size, info.rank, shuffle=True, seed=seed)
        self.generator = torch.Generator()
        self.loader = DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=self.sampler,
            num_workers=workers,
            pin_memory=info.device.type == "cuda",
            drop_last=len(self.sampler) > batch_size,
            generator=self.generator,
        )

    def epoch(self, epoch: int) -> DataLoader:
        """The loader, set up for ``epoch`` (0-based)."""
        self.sampler.set_epoch(epoch)
        self.generator.manual_seed(int(np.random.SeedSequence([self.seed, epoch, self.rank]).generate_state(1)[0]))
        return self.loader


def eval_loader(dataset: Dataset, batch_size: int, workers: int, info: DistInfo) -> DataLoader:
    """Every ``world_size``-th sample, from ``rank`` on: each sample is evaluated exactly once by one process."""
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=range(info.rank, len(dataset), info.world_size),
        num_workers=workers,
        pin_memory=info.device.type == "cuda",
    )
