"""load_published: the authors' checkpoint format gives the authors' layer's outputs."""

import pytest
import torch
from torch import nn
from torchvision.models import resnet18

from crossd import load_published
from crossd.convert.walk import replace_modules
from crossd.errors import CheckpointError
from reference import PublishedCrossDConv


def _published_resnet18(num_classes=5):
    def rule(name, module):
        if isinstance(module, nn.Conv2d):
            layer = PublishedCrossDConv(
                module.in_channels, module.out_channels, module.kernel_size[0], module.stride[0], module.padding[0]
            )
            with torch.no_grad():
                fan_in = module.in_channels * module.kernel_size[0] ** 2
                layer.weights_3d.mul_(fan_in**-0.5)
                bn = layer.rotation_params[1]
                bn.running_mean.normal_()
                bn.running_var.uniform_(0.5, 2)
            return layer
        return None

    return replace_modules(resnet18(num_classes=num_classes), rule)


def test_outputs_equal_the_published_layer(tmp_path):
    published = _published_resnet18().double().eval()
    path = tmp_path / "crossd_resnet18.pth"
    torch.save({"model": {f"_orig_mod.{k}": v for k, v in published.state_dict().items()}}, path)
    model = load_published(path).double()
    x = torch.randn(2, 3, 40, 40, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), published(x), rtol=1e-9, atol=1e-9)
    assert model.fc.out_features == 5


def test_bad_files(tmp_path):
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        load_published(tmp_path / "missing.pth")
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable PyTorch checkpoint"):
        load_published(corrupt)
    foreign = tmp_path / "foreign.pth"
    torch.save(resnet18(num_classes=3).state_dict(), foreign)
    with pytest.raises(ValueError, match="not a published Cross-D ResNet-18"):
        load_published(foreign)
    published = tmp_path / "ok.pth"
    torch.save(_published_resnet18(4).state_dict(), published)
    with pytest.raises(ValueError, match="^num_classes 10, but .*ok.pth has 4 classes$"):
        load_published(published, num_classes=10)


def test_refuses_pickled_objects(tmp_path):
    evil = tmp_path / "evil.pth"
    torch.save({"model": nn.Linear(2, 2)}, evil)  # a pickled module, not tensors
    with pytest.raises(ValueError, match="not a readable PyTorch checkpoint"):
        load_published(evil)
