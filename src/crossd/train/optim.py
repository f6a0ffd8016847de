"""Optimizer and per-epoch learning-rate schedule of torchvision's classification reference, and the fused Adam
kernels every Adam/AdamW of crossd uses."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from crossd.train.config import PretrainConfig

FUSED_DEVICES = frozenset({"cpu", "cuda"})
"""Devices with torch's fused Adam/AdamW kernel (CPU since torch 2.4)."""


def adam(params: Sequence[nn.Parameter], lr: float, weight_decay: float | None = None) -> torch.optim.Optimizer:
    """``Adam`` (or ``AdamW`` when ``weight_decay`` is given), fused when every parameter lies on a CPU or CUDA
    device: one vectorised update over all tensors instead of torch's CPU default, a Python loop over them. The
    same update to rounding, about 3x faster per step for a Cross-D ResNet-18 on one CPU thread
    (``benchmarks/optimizer_step.py``, ``benchmarks/RESULTS.md``)."""
    params = list(params)
    fused = {"fused": True} if params and {p.device.type for p in params} <= FUSED_DEVICES else {}
    if weight_decay is None:
        return torch.optim.Adam(params, lr=lr, **fused)
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, **fused)


def build_optimizer(model: nn.Module, cfg: PretrainConfig) -> torch.optim.Optimizer:
    """``SGD`` (with ``momentum``) or ``AdamW`` (:func:`adam`) over all trainable parameters."""
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.opt == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    return adam(params, cfg.lr, cfg.weight_decay)


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: PretrainConfig) -> torch.optim.lr_scheduler.LRScheduler:
    """StepLR or cosine annealing, after ``lr_warmup_epochs`` of linear warm-up; stepped once per epoch."""
    if cfg.lr_scheduler == "steplr":
        main = torch.optim.lr_scheduler.StepLR(optimizer, step_size=cfg.lr_step_size, gamma=cfg.lr_gamma)
    else:
        main = torch.optim.lr_scheduler.CosineAnnealingLR(
            optimizer, T_max=cfg.epochs - cfg.lr_warmup_epochs, eta_min=cfg.lr_min
        )
    if cfg.lr_warmup_epochs == 0:
        return main
    warmup = torch.optim.lr_scheduler.LinearLR(
        optimizer, start_factor=cfg.lr_warmup_decay, total_iters=cfg.lr_warmup_epochs
    )
    return torch.optim.lr_scheduler.SequentialLR(optimizer, [warmup, main], milestones=[cfg.lr_warmup_epochs])
