"""volume_twin: a 3D model sharing parameters and buffers with a Cross-D model."""

import torch
from torchvision.models import resnet18

from crossd import to_crossd
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
