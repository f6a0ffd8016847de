"""Train one network on one fold: epochs under a :class:`Schedule`, best epoch on validation, test scored once."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from crossd.evaluate.metrics import classification_metrics
from crossd.evaluate.protocols import Schedule


@dataclass
class FoldOutcome:
    """Test metrics of the best epoch, which epoch that was (from 0), and the per-epoch history."""

    metrics: dict[str, float]
    best_epoch: int
    history: dict[str, list[float]] = field(default_factory=dict)


@torch.no_grad()
def predict(model: nn.Module, loader: DataLoader, device: torch.device) -> tuple[float, np.ndarray, np.ndarray]:
    """Mean cross-entropy, true labels ``(N,)`` and predicted labels ``(N,)`` over ``loader`` in eval mode."""
    model.eval()
    total, labels, preds = 0.0, [], []
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        logits = model(x)
        total += float(F.cross_entropy(logits, y, reduction="sum"))
        labels.append(y.cpu().numpy())
        preds.append(logits.argmax(1).cpu().numpy())
    y_true, y_pred = np.concatenate(labels), np.concatenate(preds)
    return total / max(len(y_true), 1), y_true, y_pred


def train_one_epoch(model: nn.Module, schedule: Schedule, loader: DataLoader, device: torch.device) -> float:
    """One pass over ``loader`` with the schedule's optimiser; returns the mean training loss."""
    total, count = 0.0, 0
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        loss = F.cross_entropy(model(x), y)
        schedule.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        schedule.optimizer.step()
        total, count = total + loss.item() * len(y), count + len(y)
    return total / max(count, 1)


def train_fold(
    model: nn.Module,
    schedule: Schedule,
    loaders: dict[str, DataLoader],
    epochs: int,
    select: str,
    device: torch.device,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
) -> FoldOutcome:
    """Train for ``epochs``, keep the weights of the best validation epoch, score ``loaders["test"]`` once.

    Args:
        model: the network (already on ``device``), its classifier replaced.
        schedule: the protocol's :class:`Schedule` over ``model``.
        loaders: ``"train"``, ``"val"`` and ``"test"`` data loaders of ``(x, label)``.
        select: ``"val_loss"`` (lowest wins) or ``"val_accuracy"`` (highest wins; ties keep the earlier epoch).
        on_epoch: called as ``on_epoch(epoch, {"train_loss", "val_loss", "val_accuracy", "lr"})``.
    """
    history: dict[str, list[float]] = {"train_loss": [], "val_loss": [], "val_accuracy": [], "lr": []}
    best_score, best_epoch, best_state = None, 0, None
    for epoch in range(epochs):
        schedule.begin_epoch(epoch)
        lr = schedule.lr
        train_loss = train_one_epoch(model, schedule, loaders["train"], device)
        schedule.end_epoch()
        val_loss, y_true, y_pred = predict(model, loaders["val"], device)
        val_accuracy = float((y_true == y_pred).mean()) if len(y_true) else 0.0
        row = {"train_loss": train_loss, "val_loss": val_loss, "val_accuracy": val_accuracy, "lr": lr}
        for key, value in row.items():
            history[key].append(value)
        score = -val_loss if select == "val_loss" else val_accuracy
        if best_score is None or score > best_score:
            best_score, best_epoch = score, epoch
            best_state = copy.deepcopy({k: v.detach().cpu() for k, v in model.state_dict().items()})
        if on_epoch is not None:
            on_epoch(epoch, row)
    if best_state is not None:
        model.load_state_dict(best_state)
    _, y_true, y_pred = predict(model, loaders["test"], device)
    return FoldOutcome(classification_metrics(y_true, y_pred), best_epoch, history)
