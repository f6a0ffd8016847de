"""to_3d: layer swaps, and every kernel init checked against the kernel it must build."""

import pytest
import torch
from torch import nn
from torchvision.models import resnet18

from crossd import ACSConv3d, CrossDConv, to_3d, to_crossd
from crossd.convert import acs_kernel
from crossd.errors import SettingsError


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
    with pytest.raises(SettingsError, match="init 'nope' is unknown; expected one of crossd, i3d"):
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


# 2.5D: each 2D kernel a 3D kernel of size 1 along one axis; the reference is the 2D layer run on every slice.

_AXIS = {"d": 2, "h": 3, "w": 4}


def _per_slice(layer2d: nn.Module, volume: torch.Tensor, axis: str, step: int = 1) -> torch.Tensor:
    """``layer2d`` run on every ``step``-th slice of ``volume`` across ``axis`` (the independent reference)."""
    dim = _AXIS[axis]
    return torch.stack([layer2d(volume.select(dim, i)) for i in range(0, volume.shape[dim], step)], dim)


@pytest.mark.parametrize("axis", ["d", "h", "w"])
@pytest.mark.parametrize("stride", [1, (2, 3)])
def test_2_5d_kernels_are_flat_along_the_axis_and_convolve_every_slice_as_the_2d_layer(axis, stride):
    """Along ``axis``: kernel 1, stride 1, padding 0, dilation 1: the layer convolves
    every slice across ``axis`` as the 2D layer does, a strided one striding in-plane only."""
    conv = nn.Conv2d(4, 6, (3, 5), stride=stride, padding=(1, 3), dilation=(1, 2), groups=2).eval()
    new = to_3d(nn.Sequential(conv), init="2.5d", axis=axis)[0]
    dim = _AXIS[axis]
    assert new.weight.shape == conv.weight.unsqueeze(dim).shape  # (6, 2, 1, 3, 5) for "d", (6, 2, 3, 1, 5) for "h"
    assert torch.equal(new.weight.squeeze(dim), conv.weight) and torch.equal(new.bias, conv.bias)
    assert (new.stride[dim - 2], new.padding[dim - 2], new.dilation[dim - 2], new.groups) == (1, 0, 1, 2)
    volume = torch.randn(2, 4, 5, 7, 9)
    with torch.no_grad():
        torch.testing.assert_close(new(volume), _per_slice(conv, volume, axis, 1), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("axis", ["d", "w"])
def test_2_5d_on_identical_slices_is_the_2d_network_on_each_slice(axis):
    """A U-Net-like stack (a strided convolution, a pool, an up-sampling transposed convolution): on a volume whose
    slices across ``axis`` are one image, every output slice is the 2D network's output on that image; the strided
    convolution keeps every slice, the pool halves them and the transposed one writes each slice to ``stride``
    slices."""
    model = nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Conv2d(4, 4, 3, stride=2, padding=1),
        nn.MaxPool2d(2),
        nn.ConvTranspose2d(4, 3, 2, stride=2),
    )
    model[1].running_mean.normal_()
    model.eval()
    image = torch.randn(2, 2, 8, 12)
    volume = image.unsqueeze(_AXIS[axis]).repeat_interleave(6, _AXIS[axis])
    model3d = to_3d(model, init="2.5d", axis=axis).eval()
    with torch.no_grad():
        out, expected = model3d(volume), model(image)
    assert out.shape[_AXIS[axis]] == 6  # kept by the strided convolution, halved by the pool, doubled again
    for i in range(6):
        torch.testing.assert_close(out.select(_AXIS[axis], i), expected, rtol=1e-5, atol=1e-5)


def test_2_5d_transposed_convolutions_are_flat_when_only_strided_convolutions_down_sample():
    """MONAI's ``UNet`` down-samples with strided convolutions (which keep every slice in 2.5D) and up-samples with
    transposed ones: those are flat along the axis too, so the skip connections meet and every output slice is the
    2D U-Net's output on that slice's image."""
    from monai.networks.nets import UNet

    model = UNet(spatial_dims=2, in_channels=1, out_channels=2, channels=(4, 8, 8), strides=(2, 2)).eval()
    model3d = to_3d(model, init="2.5d").eval()
    transposed = [m for m in model3d.modules() if isinstance(m, nn.ConvTranspose3d)]
    assert transposed and all(m.stride[0] == 1 and m.kernel_size[0] == 1 for m in transposed)
    image = torch.randn(1, 1, 16, 16)
    with torch.no_grad():
        out, expected = model3d(image[:, :, None].repeat(1, 1, 5, 1, 1)), model(image)
    assert out.shape == (1, 2, 5, 16, 16)
    for i in range(5):
        torch.testing.assert_close(out[:, :, i], expected, rtol=1e-4, atol=1e-5)


def test_2_5d_resnet_on_identical_slices_gives_the_2d_logits():
    """Pools stay 3D (slices mix there), but over identical slices they change nothing: the logits are the 2D ones."""
    model = resnet18(num_classes=3).eval()
    image = torch.randn(2, 3, 32, 32)
    model3d = to_3d(model, init="2.5d").eval()
    assert isinstance(model3d.maxpool, nn.MaxPool3d) and model3d.conv1.weight.shape == (64, 3, 1, 7, 7)
    with torch.no_grad():
        torch.testing.assert_close(model3d(image[:, :, None].repeat(1, 1, 4, 1, 1)), model(image), rtol=1e-4, atol=1e-5)


def test_2_5d_resnet_keeps_every_slice_until_the_stem_pool():
    """conv1 (stride 2) keeps all 16 slices and the stem's max pool halves them: the first block sees 8 slices of
    8 x 8 (a stride-2 conv1 along depth would leave 4)."""
    model3d = to_3d(resnet18(num_classes=3), init="2.5d").eval()
    assert model3d.conv1.stride == (1, 2, 2) and model3d.layer2[0].downsample[0].stride == (1, 2, 2)
    layers = {"layer1": model3d.layer1, "layer2": model3d.layer2}
    seen = {}
    for name, layer in layers.items():
        layer.register_forward_hook(lambda m, i, o, name=name: seen.update({name: tuple(o.shape[2:])}))
    with torch.no_grad():
        model3d(torch.randn(1, 3, 16, 32, 32))
    assert seen == {"layer1": (8, 8, 8), "layer2": (8, 4, 4)}


def test_2_5d_resnet_d_average_pool_shortcut_keeps_the_slices_of_the_main_path():
    """timm's ResNet-D shortcut (``AvgPool2d(2, 2)`` then a 1x1 conv) beside a strided 3x3: in 2.5D the shortcut
    pool is flat along the axis, the stem's max pool is not, and the block's sum works on any depth."""
    timm = pytest.importorskip("timm")
    model3d = to_3d(timm.create_model("resnet26d", pretrained=False, num_classes=2), init="2.5d", axis="h").eval()
    assert model3d.layer2[0].downsample[0].kernel_size == (2, 1, 2)
    assert model3d.layer2[0].downsample[0].stride == (2, 1, 2)
    assert model3d.maxpool.stride == (2, 2, 2)
    with torch.no_grad():
        assert model3d(torch.randn(1, 3, 24, 20, 28)).shape == (1, 2)


def test_2_5d_of_a_crossd_model_uses_its_angle_0_kernels():
    model = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.ConvTranspose2d(3, 2, 2, stride=2))
    crossd = to_crossd(model, init="center")
    assert isinstance(crossd[0], CrossDConv)
    from_crossd, from_2d = to_3d(crossd, init="2.5d"), to_3d(model, init="2.5d")
    assert all(torch.equal(a, b) for a, b in zip(from_crossd.parameters(), from_2d.parameters(), strict=True))


def test_2_5d_refuses_an_unknown_axis():
    with pytest.raises(SettingsError, match="axis must be one of d, h, w, got 'z'"):
        to_3d(nn.Sequential(nn.Conv2d(1, 1, 3)), init="2.5d", axis="z")
