"""``crossd.train.optim.adam``: the fused Adam/AdamW every trainer uses, against a slow reference of the update."""

import math

import pytest
import torch
from torch import nn

from crossd.train.config import PretrainConfig
from crossd.train.optim import adam, build_optimizer


def reference_adam(w, grads, lr, weight_decay, betas=(0.9, 0.999), eps=1e-8):
    """Adam (Kingma & Ba, with bias correction), AdamW's decoupled decay when ``weight_decay`` is set; one
    element at a time in Python floats."""
    out = []
    for i, w_i in enumerate(w):
        m = v = 0.0
        for t, g in enumerate((gs[i] for gs in grads), start=1):
            if weight_decay:
                w_i -= lr * weight_decay * w_i
            m = betas[0] * m + (1 - betas[0]) * g
            v = betas[1] * v + (1 - betas[1]) * g * g
            m_hat, v_hat = m / (1 - betas[0] ** t), v / (1 - betas[1] ** t)
            w_i -= lr * m_hat / (math.sqrt(v_hat) + eps)
        out.append(w_i)
    return out


@pytest.mark.parametrize("weight_decay", [None, 0.05])
def test_fused_adam_on_the_cpu_matches_the_reference_update(weight_decay):
    torch.manual_seed(0)
    start = torch.randn(7, dtype=torch.float64)
    grads = [torch.randn(7, dtype=torch.float64) for _ in range(12)]
    param = nn.Parameter(start.clone())
    optimizer = adam([param], 0.01, weight_decay)
    assert optimizer.defaults["fused"] is True
    assert type(optimizer) is (torch.optim.Adam if weight_decay is None else torch.optim.AdamW)
    for g in grads:
        param.grad = g.clone()
        optimizer.step()
    expected = reference_adam(start.tolist(), [g.tolist() for g in grads], 0.01, weight_decay)
    assert torch.allclose(param.detach(), torch.tensor(expected, dtype=torch.float64), rtol=0, atol=1e-12)


def test_parameters_off_cpu_and_cuda_keep_torchs_default_implementation():
    param = nn.Parameter(torch.empty(3, device="meta"))
    assert not adam([param], 1e-3).defaults["fused"]


def test_pretraining_adamw_is_fused_and_takes_only_trainable_parameters():
    model = nn.Sequential(nn.Linear(2, 3), nn.Linear(3, 1))
    model[0].weight.requires_grad_(False)
    cfg = PretrainConfig(data_path="unused", opt="adamw", lr=0.1, weight_decay=0.01)
    optimizer = build_optimizer(model, cfg)
    assert isinstance(optimizer, torch.optim.AdamW) and optimizer.defaults["fused"] is True
    assert [p for g in optimizer.param_groups for p in g["params"]] == [model[0].bias, *model[1].parameters()]
