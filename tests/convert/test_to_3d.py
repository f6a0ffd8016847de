"""to_3d: layer swaps, and every kernel init checked against the kernel it must build."""

import pytest
import torch
from torch import nn
from torchvision.models import resnet18

from crossd import ACSConv3d, CrossDConv, to_3d, to_crossd
from crossd.convert import acs_kernel


def test_crossd_resnet18_runs_on_volumes_with_stored_kernels():
    model = to_crossd(resnet18(num_classes=2), mode="rotate")
    model3d = to_3d(model).eval()
    assert model3d(torch.randn(2, 3, 32, 32, 32)).shape == (2, 2)
    source = dict(model.named_modules())
    for name, module in model3d.named_modules():
        if isinstance(module, nn.Conv3d):
            assert torch.equal(module.weight, source[name].weight.detach())
    assert not any("rotation_head" in k for k in model3d.state_dict())
    assert not any(isinstance(m, (nn.BatchNorm2d, nn.MaxPool2d, nn.AdaptiveAvgPool2d)) for m in model3d.modules())


def test_batchnorm_statistics_are_copied():
    bn = nn.BatchNorm2d(4)
    bn.running_mean.normal_()
    bn.running_var.uniform_(0.5, 2)
    bn.weight.data.normal_()
    new = to_3d(nn.Sequential(bn))[0]
    assert isinstance(new, nn.BatchNorm3d)
    for key, value in bn.state_dict().items():
        assert torch.equal(new.state_dict()[key], value)


def test_shift_align_rolls_the_kernel():
    layer = CrossDConv(2, 3, 3, mode="shift")
    plain = to_3d(nn.Sequential(layer))[0]
    aligned = to_3d(nn.Sequential(layer), align=True)[0]
    assert torch.equal(plain.weight, layer.weight.detach())
    assert torch.equal(aligned.weight, torch.roll(layer.weight.detach(), (1, 1, 1), (2, 3, 4)))


@pytest.mark.parametrize("source", ["conv2d", "crossd_rotate", "crossd_shift"])
def test_planar_inits(source):
    conv = nn.Conv2d(2, 3, 3, padding=1, bias=True)
    if source == "conv2d":
        model, kernel2d = nn.Sequential(conv), conv.weight.detach()
    else:
        mode = source.split("_")[1]
        model = to_crossd(nn.Sequential(conv), mode=mode, init="center")
        kernel2d = conv.weight.detach()  # the angle-0 kernel of a centre-initialised layer
    i3d = to_3d(model, init="i3d")[0]
    torch.testing.assert_close(i3d.weight, kernel2d[:, :, None].repeat(1, 1, 3, 1, 1) / 3)
    center = to_3d(model, init="center")[0]
    assert torch.equal(center.weight[:, :, 1], kernel2d) and center.weight[:, :, [0, 2]].abs().sum() == 0
    assert torch.equal(center.bias, conv.bias.detach())
    acs = to_3d(model, init="acs")[0]
    assert isinstance(acs, ACSConv3d) and torch.equal(acs.weight, kernel2d)
    random = to_3d(model, init="random")[0]
    assert isinstance(random, nn.Conv3d) and random.weight.shape == (3, 2, 3, 3, 3)
    # i3d on a depth-constant volume gives the 2D response in every slice
    image = torch.randn(1, 2, 6, 6)
    volume = image[:, :, None].repeat(1, 1, 5, 1, 1)
    response = nn.functional.conv2d(image, kernel2d, conv.bias.detach(), padding=1)
    torch.testing.assert_close(i3d(volume)[:, :, 2], response)


def test_crossd_init_needs_crossd_layers():
    with pytest.raises(ValueError, match="init 'crossd' needs a Cross-D layer"):
        to_3d(resnet18(), init="crossd")
    with pytest.raises(ValueError, match="init must be one of"):
        to_3d(resnet18(), init="nope")


@pytest.mark.parametrize(("stride", "dilation"), [(1, 1), (2, 1), (1, 2)])
def test_acs_kernel_in_one_conv3d_equals_acs_conv(stride, dilation):
    """What grouped and SAME-padded layers get for init='acs' is the ACS convolution itself (padding d(K-1)/2)."""
    conv = nn.Conv2d(3, 5, 3, stride=stride, padding=dilation, dilation=dilation)
    acs = to_3d(nn.Sequential(conv), init="acs")[0]
    x = torch.randn(2, 3, 5, 6, 7)
    expected = nn.functional.conv3d(x, acs_kernel(conv.weight.detach()), conv.bias, stride, dilation, dilation)
    torch.testing.assert_close(acs(x), expected)
    grouped = nn.Conv2d(4, 6, 3, padding=1, groups=2)
    model3d, report = to_3d(nn.Sequential(grouped), init="acs", return_report=True)
    assert type(model3d[0]) is nn.Conv3d and "ACS views as one Conv3d" in report.notes["0"]
    assert torch.equal(model3d[0].weight, acs_kernel(grouped.weight.detach()))
    patchify = nn.Conv2d(3, 6, 4, stride=4)  # a ConvNeXt-style stem: no padding, ACSConv3d's views would disagree
    model3d, report = to_3d(nn.Sequential(patchify), init="acs", return_report=True)
    assert type(model3d[0]) is nn.Conv3d and "ACS views as one Conv3d" in report.notes["0"]
    assert model3d[0](torch.randn(1, 3, 9, 10, 11)).shape == (1, 6, 2, 2, 2)
