"""One training epoch and one evaluation pass, shared by pretraining, hybrid 3D steps, evaluation and
segmentation, correct under ``DistributedDataParallel``.

:func:`train_one_epoch` owns the iteration, autocast, the optimiser step (with fp16 gradient scaling:
:class:`Precision`), loss and accuracy accumulation and progress; each caller passes its ``step_fn(model, batch)``
returning the loss (:func:`cross_entropy_step` for classifiers).

Evaluation gathers every sample's prediction from all processes (no padded duplicates), so losses, accuracies
and the Table-1 metrics are exact for any number of processes. A loss that is NaN or infinite stops training with
:class:`NonFiniteLossError` before the optimiser applies it.
"""

from __future__ import annotations

import contextlib
import math
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import NamedTuple

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

    def backward_step(
        self, loss: Tensor, optimizer: torch.optim.Optimizer, before_step: Callable[[], None] | None = None
    ) -> None:
        """Zero the gradients, backpropagate ``loss``, run ``before_step()`` (e.g. averaging the gradients over
        processes) and step ``optimizer``. With fp16 the loss is scaled, so ``before_step`` sees scaled gradients
        (the scaler unscales them at the step, which it skips on inf/NaN gradients)."""
        optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
        else:
            loss.backward()
        if before_step is not None:
            before_step()
        if self.scaler is not None:
            self.scaler.step(optimizer)
            self.scaler.update()
        else:
            optimizer.step()


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


class StepOutput(NamedTuple):
    """What a training step computed: the scalar ``loss`` to minimise and the model's ``outputs`` for the metrics
    (e.g. logits ``(N, classes)``)."""

    loss: Tensor
    outputs: Tensor


StepFn = Callable[[nn.Module, tuple[Tensor, Tensor]], StepOutput]
"""``step_fn(model, (inputs, targets)) -> StepOutput``: the forward pass and loss of one batch (already on the
device, under the run's autocast)."""


def symmetric_kl(a: Tensor, b: Tensor) -> Tensor:
    """``(KL(p_a || p_b) + KL(p_b || p_a)) / 2`` of the softmaxes of logits ``a, b (N, classes)``, mean over N."""
    log_a, log_b = F.log_softmax(a.float(), 1), F.log_softmax(b.float(), 1)
    return ((log_a.exp() - log_b.exp()) * (log_a - log_b)).sum(1).mean() / 2


def cross_entropy_step(consistency: float = 0.0) -> StepFn:
    """The classification step: cross-entropy of logits ``(N, classes)`` against labels ``(N,)``.

    ``consistency`` > 0: each batch goes through the model twice (with random planes, two independent slicings of
    every 3D kernel); the loss is the mean cross-entropy of both plus ``consistency`` times the symmetric KL
    divergence between their predictions (the first pass's logits are the outputs).
    """

    def step(model: nn.Module, batch: tuple[Tensor, Tensor]) -> StepOutput:
        images, targets = batch
        logits = model(images)
        loss = F.cross_entropy(logits, targets)
        if consistency:
            other = model(images)
            loss = (loss + F.cross_entropy(other, targets)) / 2 + consistency * symmetric_kl(logits, other)
        return StepOutput(loss, logits)

    return step


def sample_cross_entropy(logits: Tensor, targets: Tensor) -> Tensor:
    """Cross-entropy of each sample: logits ``(N, classes)``, labels ``(N,)`` -> ``(N,)``; :func:`predict`'s loss
    for classifiers."""
    return F.cross_entropy(logits, targets, reduction="none")


def top_predictions(logits: Tensor) -> Tensor:
    """The ``min(5, classes)`` highest-scoring classes of logits ``(N, classes)``, best first: ``(N, k)``."""
    return logits.topk(min(TOP_K, logits.shape[1]), dim=1).indices


class TopKAccuracy:
    """Top-1 / top-5 hits of classification batches (top-``C`` for ``C`` < 5 classes), summed over an epoch.

    ``top5`` turns ``False`` once a batch shows 5 classes or fewer (:func:`crossd.metrics.reports_top5`).
    """

    def __init__(self) -> None:
        self.hits = [0, 0]
        self.top5 = True

    def update(self, logits: Tensor, targets: Tensor) -> None:
        """Count the hits of logits ``(N, classes)`` against labels ``(N,)``."""
        self.top5 = self.top5 and reports_top5(logits.shape[1])
        hits = top_predictions(logits) == targets[:, None]
        self.hits[0] += int(hits[:, 0].sum())
        self.hits[1] += int(hits.any(1).sum())

    def percent(self, hits: list[float], count: float) -> tuple[float, float | None]:
        """Top-1 and top-5 accuracy (%) of ``hits`` (this object's, or their sums over processes) in ``count``
        samples; top-5 is ``None`` unless :attr:`top5`."""
        return 100 * hits[0] / count, 100 * hits[1] / count if self.top5 else None


def train_one_epoch(
    model: nn.Module,
    loader: Iterable[tuple[Tensor, Tensor]],
    step_fn: StepFn,
    metrics: TopKAccuracy | None,
    optimizer: torch.optim.Optimizer,
    info: DistInfo,
    precision: Precision,
    header: str = "",
    print_freq: int | None = None,
    after_step: Callable[[int], None] | None = None,
) -> EpochStats:
    """One pass over ``loader``'s ``(inputs, targets)`` batches; returns statistics reduced over all processes.

    Each batch moves to ``info.device``; ``step_fn(model, batch)`` computes its loss under ``precision``'s autocast
    and :meth:`Precision.backward_step` applies it with ``optimizer``. ``model`` trains in the mode it is in: the
    caller sets it (a protocol may keep some BatchNorms in eval mode).
    ``metrics``: :class:`TopKAccuracy` of the step's outputs for classifiers; ``None`` reports accuracy 0.
    A progress line every ``print_freq`` steps on the main process (``None``: silent), headed by ``header``.
    ``after_step(step)`` (1-based) runs after each optimiser step (hybrid training puts its 3D batches there).
    A single process raises :class:`NonFiniteLossError` at the first NaN/Inf loss, before its step; under DDP the
    caller checks the returned (all-reduced) loss instead, so that no process stops alone.
    """
    lr = optimizer.param_groups[0]["lr"]
    progress = ProgressPrinter(header, len(loader), print_freq or 1, enabled=info.is_main and print_freq is not None)
    loss_sum, count = 0.0, 0  # this process
    start = time.perf_counter()
    batches = DataWait(loader)
    for step, (inputs, targets) in enumerate(batches, start=1):
        inputs = inputs.to(info.device, non_blocking=True)
        targets = targets.to(info.device, non_blocking=True)
        with precision.autocast(info.device):
            loss, outputs = step_fn(model, (inputs, targets))
        loss_value = float(loss.detach())
        if not info.distributed:  # under DDP the caller checks the all-reduced epoch loss (no rank may stop alone)
            check_finite(loss_value, f"{header} step {step}")
        precision.backward_step(loss, optimizer)
        if after_step is not None:
            after_step(step)
        n = len(targets)
        loss_sum, count = loss_sum + loss_value * n, count + n
        if metrics is not None:
            metrics.update(outputs.detach(), targets)
        acc1, acc5 = metrics.percent(metrics.hits, count) if metrics is not None else (0.0, None)
        progress.step(step, loss_sum / count, acc1, acc5, lr, n * step)
    seconds = time.perf_counter() - start
    hits = metrics.hits if metrics is not None else []
    loss_sum, count, waited, spent, *hits = all_reduce_sum([loss_sum, count, batches.seconds, seconds, *hits], info)
    count = max(count, 1)
    acc1, acc5 = metrics.percent(hits, count) if metrics is not None else (0.0, None)
    return EpochStats(loss_sum / count, acc1, acc5, count / max(seconds, 1e-9), seconds, waited / max(spent, 1e-9))


@torch.no_grad()
def predict(
    model: nn.Module,
    loader: DataLoader,
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    info: DistInfo,
    precision: Precision,
) -> Predictions:
    """Evaluate the classifier ``model`` on this process's share of ``loader`` and gather every process's
    predictions; ``loss_fn(logits (N, classes), labels (N,)) -> (N,)`` gives each sample's loss (e.g.
    :func:`sample_cross_entropy`), taken in float32."""
    model.eval()
    targets, topk, losses, classes = [], [], [], 0
    for images, labels in loader:
        images, labels = images.to(info.device, non_blocking=True), labels.to(info.device, non_blocking=True)
        with precision.autocast(info.device):
            logits = model(images)
        logits = logits.float()
        losses.append(loss_fn(logits, labels).cpu())
        topk.append(top_predictions(logits).cpu())
        classes = logits.shape[1]
        targets.append(labels.cpu())
    local = [torch.cat(x).numpy() if x else None for x in (targets, topk, losses)]
    parts = [p for p in all_gather_objects([*local, classes], info) if p[0] is not None]
    return Predictions(*(np.concatenate([p[i] for p in parts]) for i in range(3)), num_classes=parts[0][3])
