"""to_crossd: every Conv2d becomes a CrossDConv with the same hyper-parameters and the chosen kernel init."""

import pytest
import torch
from torch import nn
from torchvision.models import resnet18

from crossd import CrossDConv, to_3d, to_crossd
from crossd.convert.kernels import planar_kernel, shift_align
from crossd.errors import SettingsError


def _zero_heads(model):
    for module in model.modules():
        if isinstance(module, CrossDConv):
            nn.init.zeros_(module.rotation_head[3].weight)
            nn.init.zeros_(module.rotation_head[3].bias)


def test_replaces_every_conv_keeping_hyper_parameters():
    model = resnet18(num_classes=3)
    converted = to_crossd(model)
    convs = {n: m for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}
    layers = {n: m for n, m in converted.named_modules() if isinstance(m, CrossDConv)}
    assert set(convs) == set(layers) and len(layers) == 20
    for name, conv in convs.items():
        layer = layers[name]
        assert layer.weight.shape == (*conv.weight.shape, conv.kernel_size[0])
        assert layer.stride[1:] == conv.stride and layer.padding[1:] == conv.padding
        assert (layer.bias is None) == (conv.bias is None)
    assert not any(
        isinstance(m, nn.Conv2d)
        for n, m in converted.named_modules()
        if ".rotation_head" not in n and not n.endswith("rotation_head")
    )
    assert any(isinstance(m, nn.Conv2d) for m in model.modules()), "the original model is left alone"


@pytest.mark.parametrize("mode", ["rotate", "shift", "project"])
def test_center_init_equals_the_2d_model_at_angle_zero(mode):
    model = resnet18(num_classes=4).eval()
    converted = to_crossd(model, mode=mode, init="center").eval()
    _zero_heads(converted)  # v[:, 3] = 0 -> angle tanh(0) * pi/4 = 0
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(converted(x), model(x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("mode", ["rotate", "shift"])
def test_kernel_inits(mode):
    conv = nn.Conv2d(2, 3, 3, bias=True)
    center = to_crossd(nn.Sequential(conv), mode=mode, init="center")[0]
    torch.testing.assert_close(planar_kernel(center), conv.weight.detach())
    assert center.weight.abs().gt(0).sum() == conv.weight.numel()  # zeros off the plane
    torch.testing.assert_close(center.bias, conv.bias)
    inflate = to_crossd(nn.Sequential(conv), mode=mode, init="inflate")[0]
    torch.testing.assert_close(planar_kernel(inflate), conv.weight.detach() / 3)
    stored = shift_align(inflate.weight.detach()) if mode == "shift" else inflate.weight.detach()
    torch.testing.assert_close(stored.sum(2), conv.weight.detach())
    random = to_crossd(nn.Sequential(conv), mode=mode)[0]
    assert not torch.allclose(planar_kernel(random), conv.weight.detach())


def test_project_inits_give_the_2d_kernel_and_transfer_as_i3d():
    """The ``project`` scale convention (docs/conventions.md): both inits project back to the 2D kernel at angle 0,
    and an inflated Cross-D kernel used as stored is exactly the I3D transfer of the 2D model."""
    model = nn.Sequential(nn.Conv2d(2, 3, 3, bias=True))
    for init in ("center", "inflate"):
        torch.testing.assert_close(planar_kernel(to_crossd(model, "project", init)[0]), model[0].weight.detach())
    inflated = to_crossd(model, mode="project", init="inflate")
    torch.testing.assert_close(to_3d(inflated, init="crossd")[0].weight, to_3d(model, init="i3d")[0].weight)
    with pytest.raises(ValueError, match="mode 'project' needs an odd kernel size"):
        to_crossd(nn.Sequential(nn.Conv2d(1, 1, 2)), mode="project", even_kernels="error")


def test_bad_arguments():
    with pytest.raises(SettingsError, match="init 'magic' is unknown; expected one of inflate, center, random"):
        to_crossd(nn.Sequential(nn.Conv2d(1, 1, 3)), init="magic")
    with pytest.raises(ValueError, match="square kernels"):
        to_crossd(nn.Sequential(nn.Conv2d(1, 1, (1, 3))))


def _even_and_odd():
    """A 4x4 stride-4 stem (ConvNeXt style), a 3x3 convolution and a 2x2 stride-2 downsampling."""
    return nn.Sequential(nn.Conv2d(3, 4, 4, stride=4), nn.Conv2d(4, 4, 3, padding=1), nn.Conv2d(4, 6, 2, stride=2))


def test_even_kernels_default_to_shift_and_say_so():
    model = _even_and_odd()
    converted, report = to_crossd(model, init="center", return_report=True)
    assert [layer.mode for layer in converted] == ["shift", "rotate", "shift"]
    assert set(report.notes) == {"0", "2"} and all("shift mode (even_kernels)" in n for n in report.notes.values())
    _zero_heads(converted)
    image = torch.randn(2, 3, 16, 16)
    with torch.no_grad():  # angle 0 of a centre-initialised shift layer is still the 2D kernel
        torch.testing.assert_close(converted.eval()(image), model(image), rtol=1e-4, atol=1e-5)


def test_even_kernels_plain_stay_conv2d_and_inflate_in_3d():
    from crossd import to_3d

    model = _even_and_odd()
    converted, report = to_crossd(model, even_kernels="plain", return_report=True)
    assert [type(m).__name__ for m in converted] == ["Conv2d", "CrossDConv", "Conv2d"]
    assert "a plain Conv2d" in report.notes["0"] and set(report.converted) == {"1"}
    model3d, report3d = to_3d(converted, init="crossd", return_report=True)
    assert "built with init='i3d'" in report3d.notes["0"] and set(report3d.notes) == {"0", "2"}
    torch.testing.assert_close(model3d[0].weight, model[0].weight[:, :, None].repeat(1, 1, 4, 1, 1) / 4)
    assert torch.equal(model3d[1].weight, converted[1].weight.detach())
    with pytest.raises(ValueError, match="init 'crossd' needs a Cross-D layer"):  # no Cross-D layer at all
        to_3d(model, init="crossd")


def test_even_kernels_error_and_bad_policies():
    with pytest.raises(ValueError, match=r"^model 0: mode 'rotate' needs an odd kernel size.*even_kernels 'shift'"):
        to_crossd(_even_and_odd(), even_kernels="error")
    with pytest.raises(ValueError, match=r"^even_kernels must be one of \('shift', 'plain', 'error'\), got 'odd'$"):
        to_crossd(_even_and_odd(), even_kernels="odd")
    with pytest.raises(ValueError, match="mode must be one of .*, got 'rotated'"):
        to_crossd(_even_and_odd(), mode="rotated")


def test_granularity_reaches_every_layer_and_is_checked():
    model = to_crossd(nn.Sequential(nn.Conv2d(3, 4, 3), nn.Conv2d(4, 4, 1)), mode="project", granularity=4)
    assert [m.granularity for m in model] == [4, 4]
    with pytest.raises(SettingsError, match="granularity must be") as err:
        to_crossd(nn.Sequential(nn.Conv2d(1, 1, 3)), granularity=0)
    assert err.value.field == "granularity"
