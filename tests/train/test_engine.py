"""The shared training step: a NaN/Inf loss stops before the optimiser applies it; custom steps, the caller's
training mode, top-k accuracy and the optimiser step against plain PyTorch; predict with the caller's loss."""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from crossd.train.distributed import DistInfo
from crossd.train.engine import (
    NonFiniteLossError,
    Precision,
    StepOutput,
    TopKAccuracy,
    cross_entropy_step,
    predict,
    sample_cross_entropy,
    train_one_epoch,
)


def _loader(x, y=None):
    return DataLoader(TensorDataset(x, torch.tensor([0, 1, 0, 1]) if y is None else y), batch_size=2)


def test_non_finite_loss_raises_before_the_step():
    model = nn.Sequential(nn.Flatten(), nn.Linear(3, 2))
    before = [p.detach().clone() for p in model.parameters()]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    x = torch.rand(4, 3)
    x[0, 0] = float("inf")
    with pytest.raises(NonFiniteLossError, match=r"fold 3 step 1: loss is (nan|inf)"):
        train_one_epoch(model, _loader(x), cross_entropy_step(), None, optimizer, DistInfo(), Precision(), "fold 3")
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    assert issubclass(NonFiniteLossError, RuntimeError)


def test_custom_step_keeps_the_callers_training_mode():
    model = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    model.train()
    model[1].eval()  # as a protocol that freezes BatchNorm statistics
    seen = []

    def step(m, batch):
        x, y = batch
        seen.append(m[1].training)
        out = m(x)
        return StepOutput((out[:, 0] - y.float()).pow(2).mean(), out)

    stats = train_one_epoch(model, _loader(torch.rand(4, 3)), step, None, optimizer, DistInfo(), Precision(), "x")
    assert seen == [False, False] and model[0].training and not model[1].training
    assert stats.loss > 0 and stats.acc1 == 0.0 and stats.acc5 is None


def test_an_epoch_equals_plain_pytorch_steps():
    """Loss (sample-weighted mean over batches of sizes 2, 2, 1), accuracy and weights against a hand-written loop."""
    torch.manual_seed(0)
    model = nn.Linear(4, 6)
    reference = copy.deepcopy(model)
    x, y = torch.randn(5, 4), torch.tensor([0, 5, 2, 2, 3])
    loader = DataLoader(TensorDataset(x, y), batch_size=2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
    stats = train_one_epoch(model, loader, cross_entropy_step(), TopKAccuracy(), optimizer, DistInfo(), Precision())

    ref_optimizer = torch.optim.SGD(reference.parameters(), lr=0.5, momentum=0.9)
    loss_sum, top1, top5 = 0.0, 0, 0
    for xb, yb in loader:
        logits = reference(xb)
        loss = F.cross_entropy(logits, yb)
        ranks = (logits > logits.gather(1, yb[:, None])).sum(1)  # classes scored above the label
        top1, top5 = top1 + int((ranks == 0).sum()), top5 + int((ranks < 5).sum())
        loss_sum += float(loss.detach()) * len(yb)
        ref_optimizer.zero_grad()
        loss.backward()
        ref_optimizer.step()
    assert stats.loss == pytest.approx(loss_sum / 5, rel=1e-12)
    assert (stats.acc1, stats.acc5) == pytest.approx((100 * top1 / 5, 100 * top5 / 5))
    for a, b in zip(model.parameters(), reference.parameters(), strict=True):
        assert torch.equal(a, b)


def test_top5_is_not_reported_for_five_classes_or_fewer():
    metrics = TopKAccuracy()
    metrics.update(torch.tensor([[0.1, 0.9, 0.0, 0.0, 0.0], [0.8, 0.1, 0.0, 0.0, 0.0]]), torch.tensor([1, 1]))
    assert metrics.hits == [1, 2]
    assert metrics.percent(metrics.hits, 2) == (50.0, None)


def test_backward_step_runs_the_hook_between_backward_and_step():
    weight = nn.Parameter(torch.ones(2))
    optimizer = torch.optim.SGD([weight], lr=1.0)
    weight.grad = torch.full((2,), 7.0)  # a stale gradient: zeroed first

    def halve():
        weight.grad /= 2  # as averaging over two processes

    Precision().backward_step((weight * torch.tensor([2.0, 4.0])).sum(), optimizer, halve)
    assert weight.tolist() == [0.0, -1.0]


def test_predict_scores_with_the_given_loss():
    torch.manual_seed(0)
    model = nn.Linear(3, 4)
    x, y = torch.randn(5, 3), torch.tensor([0, 1, 2, 3, 1])
    loader = DataLoader(TensorDataset(x, y), batch_size=2)
    with torch.no_grad():
        logits = model(x)
    cross_entropy = predict(model, loader, sample_cross_entropy, DistInfo(), Precision())
    expected = -logits.log_softmax(1)[torch.arange(5), y]
    torch.testing.assert_close(torch.from_numpy(cross_entropy.losses), expected, rtol=1e-6, atol=0)
    assert cross_entropy.targets.tolist() == y.tolist() and cross_entropy.topk.shape == (5, 4)

    def margin_fn(out, t):  # how far each label's logit is below the best
        return out.max(1).values - out[torch.arange(len(t)), t]

    margin = predict(model, loader, margin_fn, DistInfo(), Precision())
    torch.testing.assert_close(torch.from_numpy(margin.losses), logits.max(1).values - logits[torch.arange(5), y])


def test_backward_step_with_gradient_scaling_steps_with_the_unscaled_gradients():
    weight = nn.Parameter(torch.ones(2))
    optimizer = torch.optim.SGD([weight], lr=1.0)
    seen = []
    precision = Precision(torch.float16, torch.amp.GradScaler("cpu", init_scale=1024.0))
    loss = (weight * torch.tensor([2.0, 4.0])).sum()
    precision.backward_step(loss, optimizer, lambda: seen.append(weight.grad.tolist()))
    assert seen == [[2048.0, 4096.0]]  # the hook sees the scaled gradients (averaging is linear)
    assert weight.tolist() == [-1.0, -3.0]
