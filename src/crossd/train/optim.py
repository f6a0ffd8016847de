"""Optimizer and per-epoch learning-rate schedule of torchvision's classification reference."""

from __future__ import annotations

import torch
from torch import nn

from crossd.train.config import PretrainConfig


def build_optimizer(model: nn.Module, cfg: PretrainConfig) -> torch.optim.Optimizer:
    """``SGD`` (with ``momentum``) or ``AdamW`` over all trainable parameters."""
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.opt == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


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
