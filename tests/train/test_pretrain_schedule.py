"""Optimizer, learning-rate schedule and settings checks of the pretraining recipe."""

import pytest
import torch
from torch import nn

from crossd.train import PretrainConfig
from crossd.train.optim import build_optimizer, build_scheduler


def _lrs(cfg: PretrainConfig) -> list[float]:
    optimizer = build_optimizer(nn.Linear(2, 2), cfg)
    scheduler = build_scheduler(optimizer, cfg)
    lrs = []
    for _ in range(cfg.epochs):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs


def test_paper_recipe_is_adamw_with_torch_default_weight_decay_and_steplr():
    cfg = PretrainConfig(epochs=90)
    optimizer = build_optimizer(nn.Linear(2, 2), cfg)
    assert isinstance(optimizer, torch.optim.AdamW) and optimizer.defaults["weight_decay"] == 0.01
    assert _lrs(cfg)[::30] == pytest.approx([1e-3, 1e-4, 1e-5])


def test_warmup_then_cosine():
    lrs = _lrs(PretrainConfig(epochs=6, lr=1.0, lr_scheduler="cosineannealinglr", lr_warmup_epochs=2))
    assert lrs[0] == pytest.approx(0.01) and lrs[1] == pytest.approx(0.505)
    assert lrs[2] == pytest.approx(1.0) and lrs[2:] == sorted(lrs[2:], reverse=True) and lrs[-1] > 0


def test_sgd_uses_momentum():
    optimizer = build_optimizer(nn.Linear(2, 2), PretrainConfig(opt="sgd", momentum=0.8, weight_decay=1e-4))
    assert isinstance(optimizer, torch.optim.SGD) and optimizer.defaults["momentum"] == 0.8


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"opt": "lamb"}, "opt must be one of"),
        ({"lr_scheduler": "onecycle"}, "lr_scheduler must be one of"),
        ({"epochs": 0}, "epochs must be at least 1"),
        ({"lr_warmup_epochs": 5, "epochs": 5}, "fewer than epochs"),
        ({"conv": "acs"}, "conv must be"),
    ],
)
def test_invalid_settings(overrides, match):
    with pytest.raises(ValueError, match=match):
        PretrainConfig(**overrides).validate()
