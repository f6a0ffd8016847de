"""volume_twin: a 3D model sharing parameters and buffers with a Cross-D or regular 2D model."""

import pytest
import torch
from torch import nn
from torchvision.models import resnet18

from crossd import to_3d, to_crossd
from crossd.convert.twin import volume_twin


def test_twin_shares_parameters_and_buffers():
    model = to_crossd(resnet18(num_classes=3))
    twin = volume_twin(model)
    shared = {id(p) for p in model.parameters()}
    assert all(id(p) in shared for p in twin.parameters())
    assert twin.bn1.running_mean is model.bn1.running_mean
    twin(torch.randn(2, 3, 16, 16, 16)).sum().backward()
    assert model.conv1.weight.grad is not None and model.conv1.weight.grad.abs().sum() > 0
    with torch.no_grad():
        model.conv1.weight.add_(1.0)
    assert torch.equal(twin.conv1.weight, model.conv1.weight)


@pytest.mark.parametrize("init", ["i3d", "acs"])
def test_twin_of_a_regular_model_is_its_3d_conversion_and_trains_the_2d_weights(init):
    torch.manual_seed(0)
    model = resnet18(num_classes=3).eval()
    twin = volume_twin(model, init).eval()
    shared = {id(p) for p in model.parameters()}
    assert all(id(p) in shared for p in twin.parameters())
    x = torch.randn(2, 3, 16, 16, 16)
    # the twin computes what the one-off conversion computes (float32, same kernels: tolerance 1e-5 relative)
    torch.testing.assert_close(twin(x), to_3d(model, init=init).eval()(x), rtol=1e-5, atol=1e-5)
    twin.train()
    twin(x).sum().backward()
    assert model.conv1.weight.grad is not None and model.conv1.weight.grad.abs().sum() > 0


def test_twin_refuses_a_mismatched_init():
    with pytest.raises(ValueError, match="init 'crossd' does not fit a regular 2D model; it needs i3d or acs"):
        volume_twin(resnet18(num_classes=3), "crossd")
    with pytest.raises(ValueError, match="init 'i3d' does not fit a Cross-D model; it needs crossd"):
        volume_twin(to_crossd(resnet18(num_classes=3)), "i3d")


def _odd_layers(same_padded: bool) -> nn.Module:
    """A patchify stem (padding 0), a grouped convolution and, with timm, a "SAME"-padded strided one."""
    layers = [nn.Conv2d(3, 6, 4, stride=4), nn.BatchNorm2d(6), nn.ReLU(), nn.Conv2d(6, 6, 3, padding=1, groups=3)]
    if same_padded:
        layers.append(pytest.importorskip("timm.layers").Conv2dSame(6, 6, 3, stride=2))
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 3))


@pytest.mark.parametrize("same_padded", [False, True], ids=["torch", "timm-same"])
@pytest.mark.parametrize("init", ["i3d", "acs"])
def test_twin_shares_grouped_patchify_and_same_padded_kernels(init, same_padded):
    torch.manual_seed(0)
    model = _odd_layers(same_padded).eval()
    twin = volume_twin(model, init).eval()
    shared = {id(p) for p in model.parameters()}
    assert all(id(p) in shared for p in twin.parameters())
    x = torch.randn(2, 3, 17, 18, 19)
    torch.testing.assert_close(twin(x), to_3d(model, init=init).eval()(x), rtol=1e-5, atol=1e-5)
    twin(x).sum().backward()
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert all(c.weight.grad is not None and c.weight.grad.abs().sum() > 0 for c in convs)
