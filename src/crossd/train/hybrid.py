"""Hybrid 2D+3D pretraining: the same weights also learn from volumes, through a parameter-sharing 3D twin.

After every ``every``-th 2D batch, one 3D batch goes through :func:`crossd.convert.twin.volume_twin` of the
model (for Cross-D: ``Conv3d`` layers that hold the very same 3D kernels; for a regular model: its inflated or ACS
2D kernels) and takes an optimiser step, under the same mixed precision as the 2D steps (``amp``). Volumes must
carry the 2D set's classes (one shared classifier).

Under ``torchrun`` each process takes its share of every global 3D batch (``volume batch size x processes``
volumes) and the 3D step's gradients are averaged over the processes once, in one all-reduce, before the
optimiser steps -- the 2D steps are reduced by ``DistributedDataParallel`` as usual. The twin runs outside DDP,
on the bare model's parameters, so DDP's hooks see only the 2D backward.

The twin also shares the BatchNorm running statistics, so 3D batches move the statistics the 2D network is
evaluated with: the 2D accuracy a hybrid run logs is lower than its weights give with 2D statistics (by 20-28
points for central-plane Cross-D; ``benchmarks/hybrid_bn_stats.py``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from crossd.convert.twin import volume_twin
from crossd.data.images import PRETRAIN_NORMALIZATION
from crossd.data.npz import load_npz
from crossd.data.preprocessing import normalize_volumes, scale_to_unit
from crossd.data.volumes import load_samples
from crossd.errors import CrossdError, DataError
from crossd.train.distributed import DistInfo, all_reduce_sum, average_gradients
from crossd.train.engine import Precision, cross_entropy_step


class VolumeBatches:
    """Shuffled, flipped batches ``(B, 3, D, H, W)`` of labelled volumes; this process's share of each.

    ``path``: a MedMNIST-style 3D ``.npz`` (its ``train`` split, or all samples) or anything
    :func:`crossd.data.volumes.load_samples` reads (a ``path,label`` CSV of NIfTI files, a folder of class folders;
    ``size`` resizes them to a common cube, multi-channel volumes are averaged to grey, NIfTI and DICOM volumes
    are laid out with the ``slice_axis`` plane as ``(H, W)``: :mod:`crossd.data.orientation`). Labels must use the 2D
    data's class indices (for CSVs: the same class names, sorted). Intensities are min-max scaled over the whole
    array to [0, 1] (or clipped to ``window`` and scaled from it), normalised as every evaluation normalises volumes
    (:func:`crossd.data.preprocessing.normalize_volumes` with ``normalize``, pretraining's own by default) and
    repeated to 3 channels. The order
    and flips of epoch ``e`` depend on ``(seed, e)`` only, so a resumed run sees the same batches.

    ``batch_size`` is per process: with ``world_size`` processes every global batch holds
    ``batch_size * world_size`` volumes (fewer if the set is smaller), and process ``rank`` takes the ``rank``-th
    equal part; one process with ``batch_size * world_size`` sees the same global batches.
    """

    def __init__(
        self,
        path: str | Path,
        batch_size: int,
        seed: int,
        num_classes: int,
        device: torch.device,
        size: int | None = None,
        rank: int = 0,
        world_size: int = 1,
        slice_axis: str = "axial",
        window: tuple[float, float] | None = None,
        normalize: str = PRETRAIN_NORMALIZATION,
    ):
        images, labels, classes = _load_volumes(Path(path), size, slice_axis)
        if classes > num_classes:
            raise DataError(
                f"{path}: class-count mismatch: volumes have {classes} classes, but the 2D data has {num_classes}",
                field="volumes",
            )
        lo, hi = window if window is not None else (float(images.min()), float(images.max()))
        scaled = torch.from_numpy(scale_to_unit(images, lo, hi if hi > lo else lo + 1.0))
        self.images = normalize_volumes(scaled, normalize)[:, None]  # (N, 1, D, H, W)
        self.labels = torch.from_numpy(labels.astype(np.int64))
        self.batch_size = min(batch_size, len(self.labels) // world_size)
        if self.batch_size < 1:
            raise DataError(
                f"{path}: {len(self.labels)} volumes cannot be shared by {world_size} processes", field="volumes"
            )
        self.seed, self.device, self.rank, self.world_size = seed, device, rank, world_size

    def epoch(self, epoch: int) -> Iterator[tuple[Tensor, Tensor]]:
        """An endless stream of batches for ``epoch`` (reshuffled after each pass)."""
        generator = torch.Generator().manual_seed(
            int(np.random.SeedSequence([self.seed, epoch, 3]).generate_state(1)[0])
        )
        size = self.batch_size * self.world_size
        while True:
            order = torch.randperm(len(self.labels), generator=generator)
            for start in range(0, len(order) - size + 1, size):
                index = order[start : start + size][self.rank * self.batch_size : (self.rank + 1) * self.batch_size]
                volumes = self.images[index]
                flips = [d for d in (2, 3, 4) if torch.rand((), generator=generator) < 0.5]
                if flips:
                    volumes = volumes.flip(flips)
                yield volumes.expand(-1, 3, -1, -1, -1).to(self.device), self.labels[index].to(self.device)


def _load_volumes(path: Path, size: int | None, slice_axis: str) -> tuple[np.ndarray, np.ndarray, int]:
    """Grey volumes ``(N, D, H, W)``, labels ``(N,)`` and the class count of a 3D ``.npz``, CSV or folder (NIfTI
    and DICOM in the layout of ``slice_axis``). Errors about the settings name the pretraining ones
    (``volume_size``, ``volume_slice_axis``)."""
    if path.suffix == ".npz":
        data = load_npz(path, spatial_dims=3)
        split = data.splits.get("train") or data.pooled()
        return split.images, split.labels, data.num_classes
    try:
        samples = load_samples(path, size, spatial_dims=3, slice_axis=slice_axis)
    except CrossdError as exc:
        if exc.field in ("size", "slice_axis"):
            raise type(exc)(exc.message, field=f"volume_{exc.field}") from None
        raise
    return samples.images.astype(np.float32).mean(1), samples.labels, samples.num_classes


class HybridSteps:
    """The 3D half of hybrid training: call ``start_epoch(e)`` once per epoch and ``self(step)`` after each 2D
    step; every ``every``-th call trains one 3D batch and accumulates its loss for the epoch log.

    ``model`` is the bare model (not its DDP wrapper); ``info`` says how many processes average the 3D gradients;
    the 3D step runs under ``precision`` (autocast, fp16 gradient scaling) as the 2D steps do.
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        volumes: VolumeBatches,
        every: int,
        init: str,
        info: DistInfo | None = None,
        precision: Precision | None = None,
    ):
        self.twin = volume_twin(model, init)
        self.info = info or DistInfo()
        self.precision = precision or Precision()
        self.optimizer, self.volumes, self.every = optimizer, volumes, every
        self.batches: Iterator[tuple[Tensor, Tensor]] | None = None
        self.loss_sum, self.count = 0.0, 0
        self.step_fn = cross_entropy_step()

    def start_epoch(self, epoch: int) -> None:
        self.batches = self.volumes.epoch(epoch)
        self.loss_sum, self.count = 0.0, 0

    def __call__(self, step: int) -> None:
        if step % self.every:
            return
        volumes, labels = next(self.batches)
        self.twin.train()
        with self.precision.autocast(self.info.device):
            loss, _ = self.step_fn(self.twin, (volumes, labels))
        self.precision.backward_step(loss, self.optimizer, lambda: average_gradients(self.twin.parameters(), self.info))
        self.loss_sum += float(loss.detach()) * len(labels)
        self.count += len(labels)

    def mean_loss(self) -> float:
        """Mean 3D training loss of the epoch so far over all processes (NaN before any 3D batch); a collective:
        every process must call it."""
        loss_sum, count = all_reduce_sum([self.loss_sum, self.count], self.info)
        return loss_sum / count if count else float("nan")
