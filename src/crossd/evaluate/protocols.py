"""Which parameters train, with which optimiser and learning rate, epoch by epoch, for each protocol.

- ``bn``: new head + every BatchNorm (affine, running statistics) trained; Adam; MultiStepLR at 50%/75%.
- ``linear``: the head only; BatchNorms in eval mode (statistics frozen).
- ``finetune``: everything.
- ``paper``: epochs ``0..bn_epoch-1`` the head only with AdamW and MultiStepLR(milestones); at ``bn_epoch`` Adam
  over head + all BatchNorm affine parameters at the then-current learning rate, constant afterwards.
  BatchNorm statistics update throughout; convolutions (and rotation heads' convs) never train.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader

from crossd.errors import SettingsError
from crossd.evaluate.config import PROTOCOLS, BnConstants, PaperConstants
from crossd.train.optim import adam


def batchnorm_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The affine parameters of every BatchNorm (rotation heads' included)."""
    return [p for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) for p in m.parameters()]


def recalibrate_batchnorm(model: nn.Module, loader: DataLoader, device: torch.device) -> None:
    """AdaBN: reset every BatchNorm's running statistics and re-estimate them as the plain average over the
    batches ``(x, y)`` of ``loader`` (no gradients, weights untouched).

    Only the BatchNorms run in training mode: everything else computes what it computes at test time (dropout
    off, Cross-D layers on their heads' planes), so the statistics are those of the test-time features. Momenta
    and every module's mode are restored."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
        m.train()
    with torch.no_grad():
        for inputs, _ in loader:
            model(inputs.to(device))
    for m, momentum in zip(norms, momenta, strict=True):
        m.momentum = momentum
    for m, training in modes:
        m.train(training)


def _only_trainable(model: nn.Module, params: list[nn.Parameter]) -> list[nn.Parameter]:
    """Set ``requires_grad`` on ``params`` and off everywhere else; returns ``params``."""
    chosen = {id(p) for p in params}
    for p in model.parameters():
        p.requires_grad_(id(p) in chosen)
    return params


class Schedule:
    """The optimiser and learning rate of a protocol; call :meth:`begin_epoch` before and :meth:`end_epoch`
    after each epoch (epochs count from 0).

    Args:
        protocol: ``bn``, ``linear``, ``finetune`` or ``paper``.
        model: the whole network.
        head: the layers new to it, trained from the start: its new classifier (a sub-module of ``model``), for
            slice aggregation with the slice pool (:func:`crossd.evaluate.methods.new_layers`).
        epochs, lr: resolved run settings.
        constants: the protocol's :class:`PaperConstants` or :class:`BnConstants`.
    """

    def __init__(
        self,
        protocol: str,
        model: nn.Module,
        head: nn.Module,
        epochs: int,
        lr: float,
        constants: PaperConstants | BnConstants,
    ):
        self.protocol, self.model, self.head, self.constants = protocol, model, head, constants
        head_params = list(head.parameters())
        if protocol == "paper":
            params = _only_trainable(model, head_params)
            self.optimizer = adam(params, lr, constants.weight_decay)
            milestones = list(constants.milestones)
        else:
            if protocol == "finetune":
                params = _only_trainable(model, list(model.parameters()))
            elif protocol == "bn":
                params = _only_trainable(model, head_params + batchnorm_parameters(model))
            elif protocol == "linear":
                params = _only_trainable(model, head_params)
            else:
                raise SettingsError(f"must be one of {PROTOCOLS}, got {protocol!r}", field="protocol")
            self.optimizer = adam(params, lr)
            milestones = [int(f * epochs) for f in constants.milestones_fraction]
        self.scheduler = torch.optim.lr_scheduler.MultiStepLR(self.optimizer, milestones, constants.gamma)

    @property
    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def optimized_parameters(self) -> list[nn.Parameter]:
        return [p for group in self.optimizer.param_groups for p in group["params"]]

    def begin_epoch(self, epoch: int) -> None:
        """Switch optimisers where the protocol says so, and put the model in its training mode."""
        if self.protocol == "paper" and epoch == self.constants.bn_epoch:
            params = _only_trainable(self.model, list(self.head.parameters()) + batchnorm_parameters(self.model))
            self.optimizer = adam(params, self.lr)
            self.scheduler = None
        self.train_mode(self.model)

    def train_mode(self, model: nn.Module) -> None:
        """Training mode, except every BatchNorm under ``linear`` (its statistics stay frozen)."""
        model.train()
        if self.protocol == "linear":
            for m in model.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()

    def end_epoch(self) -> None:
        if self.scheduler is not None:
            self.scheduler.step()
