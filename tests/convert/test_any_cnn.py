"""to_crossd and to_3d on real architectures: every layer type converted, kernels checked, 2D-only code reported."""

import warnings

import pytest
import torch
import torchvision
from monai.networks.nets import UNet
from torch import nn

from crossd import CrossDConv, to_3d, to_crossd
from crossd.convert import ConversionWarning, LayerNorm3d
from crossd.convert.kernels import planar_kernel

# name -> (Cross-D mode, image/volume side, what the 3D conversion must report as unconvertible)
MODELS = {
    "resnet18": ("rotate", 32, {}),
    "resnet50": ("rotate", 32, {}),
    "densenet121": ("rotate", 32, {}),  # DenseNet.forward's F.adaptive_avg_pool2d: a 3D forward twin
    "vgg11_bn": ("rotate", 32, {}),  # avgpool -> (1, 7, 7): the classifier keeps its 512 * 7 * 7 inputs
    "convnext_tiny": ("shift", 32, {}),  # 4x4 and 2x2 kernels: even, so 'shift'
    "efficientnet_b0": ("rotate", 32, {}),
    "mobilenet_v3_small": ("rotate", 32, {}),
    "monai_unet": ("rotate", 16, {}),
}


pytestmark = pytest.mark.usefixtures("one_thread")


def _build(name: str) -> nn.Module:
    if name == "monai_unet":
        return UNet(spatial_dims=2, in_channels=1, out_channels=2, channels=(4, 8, 16), strides=(2, 2))
    return torchvision.models.get_model(name, weights=None, num_classes=3)


def _zero_heads(model: nn.Module) -> None:
    """Rotation heads that output 0: angle 0, so a centre-initialised layer is its 2D kernel."""
    for module in model.modules():
        if isinstance(module, CrossDConv):
            nn.init.zeros_(module.rotation_head[3].weight)
            nn.init.zeros_(module.rotation_head[3].bias)


def _weights(model: nn.Module, types) -> dict[str, torch.Tensor]:
    return {n: m.weight.detach().clone() for n, m in model.named_modules() if isinstance(m, types)}


@pytest.mark.parametrize("name", list(MODELS))
def test_converts_to_crossd_then_to_3d(name):
    torch.manual_seed(0)
    mode, side, expected_unconverted = MODELS[name]
    model = _build(name).eval()
    channels = 1 if name == "monai_unet" else 3
    image = torch.randn(2, channels, side, side)
    with torch.no_grad():
        reference = model(image)
    convs2d = _weights(model, nn.Conv2d)
    transposed2d = _weights(model, nn.ConvTranspose2d)
    norms2d = {n: m.state_dict() for n, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)}

    crossd, report = to_crossd(model, mode=mode, init="center", inplace=True, return_report=True)
    assert report.ok and set(report.converted) == set(convs2d)
    assert set(report.notes) == set(transposed2d)  # ConvTranspose2d stays 2D, and says so
    layers = {n: m for n, m in crossd.named_modules() if isinstance(m, CrossDConv)}
    assert set(layers) == set(convs2d)
    for layer_name, kernel in convs2d.items():
        assert torch.equal(planar_kernel(layers[layer_name]), kernel), layer_name
    _zero_heads(crossd)
    with torch.no_grad():
        torch.testing.assert_close(crossd(image), reference, rtol=1e-3, atol=1e-4)

    volume = torch.randn(2, channels, side, side, side)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model3d, report3d = to_3d(crossd, init="crossd", inplace=True, example_input=volume, return_report=True)
    assert set(report3d.unconverted) == set(expected_unconverted)
    for where, words in expected_unconverted.items():
        assert words in report3d.unconverted[where]
    assert any(issubclass(w.category, ConversionWarning) for w in caught) == bool(expected_unconverted)

    modules3d = dict(model3d.named_modules())
    for layer_name in convs2d:  # init="crossd": the stored 3D kernel, copied
        assert torch.equal(modules3d[layer_name].weight, layers[layer_name].weight.detach()), layer_name
    for layer_name, kernel in transposed2d.items():  # no Cross-D kernel: I3D, depth sum = the 2D kernel
        new = modules3d[layer_name]
        assert isinstance(new, nn.ConvTranspose3d) and layer_name in report3d.notes
        torch.testing.assert_close(new.weight.sum(2), kernel)
    for norm_name, state in norms2d.items():
        assert isinstance(modules3d[norm_name], nn.BatchNorm3d)
        assert all(torch.equal(modules3d[norm_name].state_dict()[k], v) for k, v in state.items())
    assert not any("rotation_head" in key for key in model3d.state_dict())
    assert not any(type(m).__name__.endswith("2d") for m in model3d.modules())

    if not expected_unconverted:
        with torch.no_grad():
            out = model3d(volume)
        assert out.shape == ((2, 2, side, side, side) if name == "monai_unet" else (2, 3))
        assert torch.isfinite(out).all()
    else:  # the backbone itself is fine in 3D
        with torch.no_grad():
            assert model3d.features(volume).dim() == 5


def test_convnext_parts_have_3d_twins():
    model = torchvision.models.convnext_tiny(num_classes=2)
    scale = model.features[1][0].layer_scale.detach().clone()
    norm = model.features[0][1]
    model3d = to_3d(model, init="i3d")
    assert isinstance(model3d.features[0][1], LayerNorm3d)
    assert torch.equal(model3d.features[0][1].weight, norm.weight)
    assert torch.equal(model3d.features[1][0].layer_scale, scale[..., None])  # (C, 1, 1) -> (C, 1, 1, 1)
    assert [list(m.dims) for m in model3d.features[1][0].block if hasattr(m, "dims")] == [
        [0, 2, 3, 4, 1],
        [0, 4, 1, 2, 3],
    ]
    # LayerNorm3d normalises over channels at every voxel
    x = torch.randn(2, 96, 3, 4, 5)
    expected = nn.functional.layer_norm(x.movedim(1, -1), (96,), norm.weight, norm.bias, norm.eps).movedim(-1, 1)
    torch.testing.assert_close(model3d.features[0][1](x), expected)


@pytest.mark.parametrize("via_crossd", [False, True])
def test_center_init_on_a_one_slice_volume_is_the_2d_model(via_crossd):
    model = torchvision.models.resnet18(num_classes=3).eval()
    for module in model.modules():  # non-trivial statistics, so a wrong norm conversion shows
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.normal_(0, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    image = torch.randn(2, 3, 32, 32)
    if via_crossd:
        model3d = to_3d(to_crossd(model, init="center"), init="crossd")
    else:
        model3d = to_3d(model, init="center")
    with torch.no_grad():
        torch.testing.assert_close(model3d.eval()(image[:, :, None]), model(image), rtol=1e-4, atol=1e-5)


def test_layers_without_crossd_kernels_and_other_twins():
    model = nn.Sequential(
        nn.ConvTranspose2d(2, 3, 3, stride=2, padding=1, output_padding=1),
        nn.InstanceNorm2d(3, affine=True),
        nn.GroupNorm(1, 3),
        nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
        nn.Upsample(size=(4, 6), mode="nearest"),
        nn.ReflectionPad2d((1, 1, 2, 2)),
        nn.AvgPool2d(2, ceil_mode=True),
        nn.LPPool2d(2, 1),
        nn.Dropout2d(0.1),
        nn.AdaptiveMaxPool2d((2, 3)),
    )
    model3d, report = to_3d(model, init="center", return_report=True)
    kinds = [type(m).__name__ for m in model3d]
    assert kinds == [
        "ConvTranspose3d",
        "InstanceNorm3d",
        "GroupNorm",
        "Upsample",
        "Upsample",
        "ReflectionPad3d",
        "AvgPool3d",
        "LPPool3d",
        "Dropout3d",
        "AdaptiveMaxPool3d",
    ]
    assert report.ok and "0" not in report.notes  # center is a valid init for transposed convs
    assert torch.equal(model3d[0].weight[:, :, 1], model[0].weight.detach())
    assert model3d[3].mode == "trilinear" and model3d[3].scale_factor == (2.0, 2.0, 2.0)
    assert model3d[4].size == (4, 4, 6) and model3d[5].padding == (1, 1, 2, 2, 2, 2)
    assert model3d.eval()(torch.randn(1, 2, 3, 3, 3)).shape == (1, 3, 2, 2, 3)


class _ImageOnlyUpsampler(nn.Module):
    """A block whose forward assumes images: the converter cannot see inside it."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, padding=1)

    def forward(self, x):
        return nn.functional.interpolate(self.conv(x), scale_factor=2, mode="bilinear")


def test_unconvertible_parts_are_reported_by_name():
    model = nn.Sequential(nn.Conv2d(1, 1, 3), _ImageOnlyUpsampler(), nn.FractionalMaxPool2d(2, output_size=4))
    with pytest.warns(ConversionWarning, match=r"1 \(_ImageOnlyUpsampler.forward\(\) calls interpolate"):
        _, report = to_3d(model, init="i3d", return_report=True, example_input=torch.randn(1, 1, 8, 8, 8))
    assert set(report.unconverted) == {"1", "2"}
    assert "FractionalMaxPool2d is a 2D layer" in report.unconverted["2"]
    assert "1.conv" in report.converted  # the layers inside it were still converted


def test_failing_forward_names_the_module():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.AdaptiveAvgPool2d(2), nn.Flatten(1), nn.Linear(16, 2))
    with pytest.warns(ConversionWarning, match="3 "):
        _, report = to_3d(model, init="i3d", return_report=True, example_input=torch.randn(1, 1, 8, 8, 8))
    assert list(report.unconverted) == ["3"] and "forward failed" in report.unconverted["3"]


def test_rotate_mode_rejects_even_kernels_by_name_when_asked():
    with pytest.raises(ValueError, match=r"features\.0\.0: mode 'rotate' needs an odd kernel size.*even_kernels"):
        to_crossd(torchvision.models.convnext_tiny(), mode="rotate", even_kernels="error")
