"""One training epoch and one evaluation pass, shared by pretraining and evaluation, correct under
``DistributedDataParallel``.

Evaluation gathers every sample's prediction from all processes (no padded duplicates), so losses, accuracies
and the Table-1 metrics are exact for any number of processes. A loss that is NaN or infinite stops training with
:class:`NonFiniteLossError` before the optimiser applies it.
"""

from __future__ import annotations

import contextlib
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader

from crossd.metrics import TOP_K, reports_top5
from crossd.train.distributed import DistInfo, all_gather_objects, all_reduce_sum
from crossd.train.progress import DataWait, ProgressPrinter


class NonFiniteLossError(RuntimeError):
    """A loss (or weights) became NaN or infinite: bad input values, or a learning rate too high. ``loss`` is the
    value seen (NaN when unknown)."""

    def __init__(self, message: str, loss: float = math.nan):
        super().__init__(message)
        self.loss = loss


def check_finite(loss: float, where: str) -> None:
    """Raise :class:`NonFiniteLossError` naming ``where`` when ``loss`` is NaN or infinite."""
    if not math.isfinite(loss):
        raise NonFiniteLossError(
            f"{where}: loss is {loss}; check the data for NaN/Inf values or lower the learning rate (nothing was "
            "reported)",
            loss,
        )


@dataclass
class Precision:
    """Autocast settings: ``dtype`` ``None`` means full precision; ``scaler`` is set for fp16 only."""

    dtype: torch.dtype | None = None
    scaler: torch.amp.GradScaler | None = None

    @classmethod
    def choose(cls, amp: bool, info: DistInfo) -> Precision:
        """bf16 autocast on CUDA where supported, else fp16 with gradient scaling; ``amp`` on CPU warns and is
        ignored."""
        if not amp:
            return cls()
        if info.device.type != "cuda":
            if info.is_main:
                warnings.warn("amp needs CUDA; training in float32 on CPU", stacklevel=3)
            return cls()
        if torch.cuda.is_bf16_supported():
            return cls(torch.bfloat16)
        return cls(torch.float16, torch.amp.GradScaler("cuda"))

    def autocast(self, device: torch.device):
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=device.type, dtype=self.dtype)


@dataclass
class EpochStats:
    """Mean loss, top-1/top-5 accuracy (%), throughput and data-wait share of a training epoch, all processes.
    ``acc5`` is ``None`` for 5 classes or fewer (:func:`crossd.metrics.reports_top5`)."""

    loss: float
    acc1: float
    acc5: float | None
    images_per_second: float
    seconds: float
    data_wait: float = 0.0
    """Share of the epoch's time spent waiting for data (:class:`crossd.train.progress.DataWait`), over processes."""


@dataclass
class Predictions:
    """Every evaluated sample (all processes): true labels ``(N,)``, top-k predictions ``(N, k)`` with
    ``k = min(5, num_classes)``, losses ``(N,)``, and the model's class count."""

    targets: np.ndarray
    topk: np.ndarray
    losses: np.ndarray
    num_classes: int

    @property
    def loss(self) -> float:
        return float(self.losses.mean())

    @property
    def acc1(self) -> float:
        return 100.0 * float((self.topk[:, 0] == self.targets).mean())

    @property
    def acc5(self) -> float | None:
        """Top-5 accuracy (%), ``None`` for 5 classes or fewer (:func:`crossd.metrics.reports_top5`)."""
        if not reports_top5(self.num_classes):
            return None
        return 100.0 * float((self.topk[:, :TOP_K] == self.targets[:, None]).any(1).mean())


def _correct_topk(logits: Tensor, targets: Tensor) -> tuple[int, int]:
    """Numbers of samples whose label is the top-1 / among the top-5 (top-``C`` for fewer classes) logits."""
    topk = logits.topk(min(TOP_K, logits.shape[1]), dim=1).indices
    hits = topk == targets[:, None]
    return int(hits[:, 0].sum()), int(hits.any(1).sum())


def symmetric_kl(a: Tensor, b: Tensor) -> Tensor:
    """``(KL(p_a || p_b) + KL(p_b || p_a)) / 2`` of the softmaxes of logits ``a, b (N, classes)``, mean over N."""
    log_a, log_b = F.log_softmax(a.float(), 1), F.log_softmax(b.float(), 1)
    return ((log_a.exp() - log_b.exp()) * (log_a - log_b)).sum(1).mean() / 2


def train_one_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loader: DataLoader,
    info: DistInfo,
    precision: Precision,
    header: str,
    print_freq: int | None,
    after_step: Callable[[int], None] | None = None,
    consistency: float = 0.0,
    loss_fn: Callable[[Tensor, Tensor], Tensor] = F.cross_entropy,
    train_mode: Callable[[nn.Module], object] = nn.Module.train,
) -> EpochStats:
    """One pass over ``loader`` with ``loss_fn`` (cross-entropy); returns statistics reduced over all processes.

    A progress line every ``print_freq`` steps on the main process (``None``: silent).
    ``after_step(step)`` (1-based) runs after each optimiser step (hybrid training puts its 3D batches there).
    ``consistency`` > 0: each batch goes through the model twice (with random planes, two independent slicings of
    every 3D kernel); the loss is the mean cross-entropy of both plus ``consistency`` times the symmetric KL
    divergence between their predictions.
    ``loss_fn(outputs, targets)``: e.g. a segmentation loss on ``(N, C, *spatial)`` outputs; top-1/top-5 are
    counted for classification batches only (outputs ``(N, classes)``, targets ``(N,)``), else reported as 0.
    ``train_mode(model)`` puts the model in training mode (a protocol may keep some BatchNorms in eval mode).
    A single process raises :class:`NonFiniteLossError` at the first NaN/Inf loss, before its step; under DDP the
    caller checks the returned (all-reduced) loss instead, so that no process stops alone.
    """
    train_mode(model)
    lr = optimizer.param_groups[0]["lr"]
    progress = ProgressPrinter(header, len(loader), print_freq or 1, enabled=info.is_main and print_freq is not None)
    totals = np.zeros(4)  # loss sum, top-1 hits, top-5 hits, samples (this process)
    top5 = True  # False once a batch shows 5 classes or fewer
    start = time.perf_counter()
    batches = DataWait(loader)
    for step, (images, targets) in enumerate(batches, start=1):
        images = images.to(info.device, non_blocking=True)
        targets = targets.to(info.device, non_blocking=True)
        with precision.autocast(info.device):
            logits = model(images)
            loss = loss_fn(logits, targets)
            if consistency:
                other = model(images)
                loss = (loss + loss_fn(other, targets)) / 2 + consistency * symmetric_kl(logits, other)
        loss_value = float(loss.detach())
        if not info.distributed:  # under DDP the caller checks the all-reduced epoch loss (no rank may stop alone)
            check_finite(loss_value, f"{header} step {step}")
        optimizer.zero_grad(set_to_none=True)
        if precision.scaler is not None:
            precision.scaler.scale(loss).backward()
            precision.scaler.step(optimizer)
            precision.scaler.update()
        else:
            loss.backward()
            optimizer.step()
        if after_step is not None:
            after_step(step)
        n = len(targets)
        classify = logits.dim() == 2 and targets.dim() == 1
        top5 = top5 and classify and reports_top5(logits.shape[1])
        hits = _correct_topk(logits.detach(), targets) if classify else (0, 0)
        totals += (loss_value * n, *hits, n)
        acc5 = 100 * totals[2] / totals[3] if top5 else None
        progress.step(step, totals[0] / totals[3], 100 * totals[1] / totals[3], acc5, lr, n * step)
    seconds = time.perf_counter() - start
    loss_sum, top1, hits5, count, waited, spent = all_reduce_sum([*totals.tolist(), batches.seconds, seconds], info)
    count = max(count, 1)
    rate = count / max(seconds, 1e-9)
    return EpochStats(
        loss_sum / count, 100 * top1 / count, 100 * hits5 / count if top5 else None, rate, seconds,
        waited / max(spent, 1e-9),
    )  # fmt: skip


@torch.no_grad()
def predict(model: nn.Module, loader: DataLoader, info: DistInfo, precision: Precision) -> Predictions:
    """Evaluate ``model`` on this process's share of ``loader`` and gather every process's predictions."""
    model.eval()
    targets, topk, losses, classes = [], [], [], 0
    for images, labels in loader:
        images, labels = images.to(info.device, non_blocking=True), labels.to(info.device, non_blocking=True)
        with precision.autocast(info.device):
            logits = model(images)
        logits = logits.float()
        losses.append(F.cross_entropy(logits, labels, reduction="none").cpu())
        topk.append(logits.topk(min(TOP_K, logits.shape[1]), dim=1).indices.cpu())
        classes = logits.shape[1]
        targets.append(labels.cpu())
    local = [torch.cat(x).numpy() if x else None for x in (targets, topk, losses)]
    parts = [p for p in all_gather_objects([*local, classes], info) if p[0] is not None]
    return Predictions(*(np.concatenate([p[i] for p in parts]) for i in range(3)), num_classes=parts[0][3])
