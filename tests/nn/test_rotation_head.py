"""The rotation head (fused below 16 input channels) against the same four modules run one after another."""

import copy

import pytest
import torch
from torch import nn

from crossd.nn.rotation_head import RotationHead


def _modules_in_turn(head: RotationHead, x: torch.Tensor) -> torch.Tensor:
    """The unfused head: ``nn.Conv2d -> nn.BatchNorm2d -> ReLU -> nn.Conv2d``, softmax pooling over pixels."""
    r = head[3](torch.relu(head[1](head[0](x)))).flatten(2)
    return (r * torch.softmax(r, dim=-1)).sum(-1)


def _head(channels: int, momentum: float | None = 0.1) -> RotationHead:
    head = RotationHead(channels).double()
    head[1].momentum = momentum
    with torch.no_grad():  # non-trivial affine and running statistics
        head[1].weight.uniform_(0.5, 1.5)
        head[1].bias.uniform_(-0.5, 0.5)
        head[1].running_mean.uniform_(-0.2, 0.2)
        head[1].running_var.uniform_(0.5, 2.0)
    return head


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("channels,size,momentum", [(3, 9, 0.1), (12, 5, None), (7, 4, 0.3), (20, 3, 0.1)])
@pytest.mark.parametrize("training", [True, False])
def test_fused_head_equals_its_modules_in_turn(channels, size, momentum, training, channels_last):
    fused = _head(channels, momentum).train(training)
    modules = copy.deepcopy(fused)
    x = torch.randn(4, channels, size, size + 1, dtype=torch.float64) * 2 + 0.5
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    grad = torch.randn(4, 4, dtype=torch.float64)
    v1, v2 = fused(x1), _modules_in_turn(modules, x2)
    torch.testing.assert_close(v1, v2, rtol=1e-10, atol=1e-12)
    v1.backward(grad)
    v2.backward(grad)
    torch.testing.assert_close(x1.grad, x2.grad, rtol=1e-9, atol=1e-12)
    for (name, p1), p2 in zip(fused.named_parameters(), modules.parameters(), strict=True):
        torch.testing.assert_close(p1.grad, p2.grad, rtol=1e-9, atol=1e-12, msg=name)
    for (name, b1), b2 in zip(fused.named_buffers(), modules.buffers(), strict=True):
        torch.testing.assert_close(b1, b2, rtol=1e-12, atol=1e-14, msg=name)


def test_fused_head_float32_and_input_without_gradient():
    head = _head(3).float()
    reference = copy.deepcopy(head)
    x = torch.randn(2, 3, 16, 16)
    v = head(x)
    torch.testing.assert_close(v, _modules_in_turn(reference, x), rtol=1e-4, atol=1e-5)
    v.sum().backward()
    assert head[0].weight.grad is not None and head[0].weight.grad.shape == (16, 3, 1, 1)


def test_a_replaced_child_runs_the_children_in_turn():
    head = _head(3)
    head[1] = nn.Identity()
    x = torch.randn(2, 3, 5, 5, dtype=torch.float64)
    r = head[3](torch.relu(head[0](x))).flatten(2)
    torch.testing.assert_close(head(x), (r * torch.softmax(r, -1)).sum(-1))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_fused_head_on_cuda_matches_the_cpu_modules():
    head = _head(3).float()
    reference = copy.deepcopy(head)
    x = torch.randn(4, 3, 32, 32)
    expected = _modules_in_turn(reference, x)
    expected.sum().backward()
    head.cuda()
    v = head(x.cuda().contiguous(memory_format=torch.channels_last))
    v.sum().backward()
    torch.testing.assert_close(v.cpu(), expected, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(head[0].weight.grad.cpu(), reference[0].weight.grad, rtol=1e-3, atol=1e-5)
    torch.testing.assert_close(head[1].running_var.cpu(), reference[1].running_var, rtol=1e-5, atol=1e-6)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        assert head(x.cuda()).dtype == torch.float32  # the head computes in float32 under autocast
