"""Forward twins: known models whose forward is 2D-only get a 3D forward, by exact type, reported."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import VGG, DenseNet, MobileNetV2

from crossd import to_3d
from crossd.convert import ConversionWarning, check_really_3d

VOLUME = torch.randn(2, 3, 14, 16, 18)


def test_densenet_pools_over_all_three_axes():
    model = DenseNet(growth_rate=4, block_config=(2, 2), num_init_features=8, num_classes=2).eval()
    model3d, report = to_3d(model, init="i3d", return_report=True)
    assert type(model3d).__name__ == "DenseNet3d" and isinstance(model3d, DenseNet)
    assert report.converted[""] == "DenseNet.forward -> DenseNet3d (3D forward)" and report.ok
    assert model3d.state_dict().keys() == model.state_dict().keys()
    with torch.no_grad():
        expected = model3d.classifier(F.relu(model3d.features(VOLUME)).mean((2, 3, 4)))
        torch.testing.assert_close(model3d.eval()(VOLUME), expected)
    assert check_really_3d(model3d, VOLUME) == {}


def test_mobilenet_v2_pools_over_all_three_axes():
    model = MobileNetV2(num_classes=2, width_mult=0.25).eval()
    model3d, report = to_3d(model, init="center", return_report=True)
    assert type(model3d).__name__ == "MobileNetV23d" and report.ok
    with torch.no_grad():
        expected = model3d.classifier(model3d.features(VOLUME).mean((2, 3, 4)))
        torch.testing.assert_close(model3d.eval()(VOLUME), expected)


def test_vgg_pool_equals_the_classifier_inflated_over_seven_depth_bins():
    """Pooling to (1, 7, 7) = pooling to (7, 7, 7) then the first Linear repeated over depth / 7, for D = 14."""
    model = VGG(nn.Sequential(nn.Conv2d(3, 512, 3, padding=1), nn.ReLU()), num_classes=2, init_weights=False)
    model.classifier = nn.Sequential(nn.Linear(512 * 7 * 7, 3))  # small, same input size as VGG's
    model.eval()
    model3d, report = to_3d(model, init="i3d", return_report=True)
    assert model3d.avgpool.output_size == (1, 7, 7) and report.ok
    assert "AdaptiveAvgPool3d((1, 7, 7))" in report.converted["avgpool"] and "I3D" in report.notes["avgpool"]
    linear = model.classifier[0]
    inflated = linear.weight.reshape(3, 512, 1, 7, 7).repeat(1, 1, 7, 1, 1) / 7
    with torch.no_grad():
        pooled = F.adaptive_avg_pool3d(model3d.features(VOLUME), (7, 7, 7))
        expected = pooled.flatten(1) @ inflated.flatten(1).T + linear.bias
        torch.testing.assert_close(model3d(VOLUME), expected, rtol=1e-4, atol=1e-5)


def test_a_subclass_with_its_own_forward_is_reported_not_overridden():
    class MyDenseNet(DenseNet):
        def forward(self, x):
            return self.classifier(torch.flatten(F.adaptive_avg_pool2d(self.features(x), 1), 1))

    model = MyDenseNet(growth_rate=4, block_config=(2,), num_init_features=8, num_classes=2)
    with pytest.warns(ConversionWarning, match="MyDenseNet.forward"):
        model3d, report = to_3d(model, init="i3d", return_report=True)
    assert type(model3d) is MyDenseNet
    assert "forward() calls adaptive_avg_pool2d" in report.unconverted[""]


def test_unknown_image_idioms_are_named_before_any_forward():
    class ImageSqueeze(nn.Module):
        def __init__(self):
            super().__init__()
            self.gamma = nn.Parameter(torch.ones(4))

        def forward(self, x):
            return x * x.mean((2, 3), keepdim=True) * self.gamma.reshape(1, -1, 1, 1)

    with pytest.warns(ConversionWarning, match="ImageSqueeze"):
        _, report = to_3d(nn.Sequential(nn.Conv2d(1, 4, 1), ImageSqueeze()), init="i3d", return_report=True)
    assert report.unconverted == {
        "1": "ImageSqueeze.forward() reduces over axes (2, 3), forward() reshapes to (1, -1, 1, 1)"
    }
