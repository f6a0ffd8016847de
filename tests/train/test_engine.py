"""The shared training step: a NaN/Inf loss stops before the optimiser applies it; custom losses and modes."""

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from crossd.train.distributed import DistInfo
from crossd.train.engine import NonFiniteLossError, Precision, train_one_epoch


def _loader(x):
    return DataLoader(TensorDataset(x, torch.tensor([0, 1, 0, 1])), batch_size=2)


def test_non_finite_loss_raises_before_the_step():
    model = nn.Sequential(nn.Flatten(), nn.Linear(3, 2))
    before = [p.detach().clone() for p in model.parameters()]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    x = torch.rand(4, 3)
    x[0, 0] = float("inf")
    with pytest.raises(NonFiniteLossError, match=r"fold 3 step 1: loss is (nan|inf)"):
        train_one_epoch(model, optimizer, _loader(x), DistInfo(), Precision(), "fold 3", None)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    assert issubclass(NonFiniteLossError, RuntimeError)


def test_custom_loss_and_train_mode():
    model = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    seen = []

    def mode(m):
        m.train()
        m[1].eval()
        seen.append(m[1].training)

    def loss_fn(out, y):
        return (out[:, 0] - y.float()).pow(2).mean()

    stats = train_one_epoch(
        model,
        optimizer,
        _loader(torch.rand(4, 3)),
        DistInfo(),
        Precision(),
        "x",
        None,
        loss_fn=loss_fn,
        train_mode=mode,
    )
    assert seen == [False] and not model[1].training and stats.loss > 0
