"""timm's layers in 3D: each twin checked against the 2D layer on a one-slice volume, or against the 3D definition."""

import pytest
import torch
from torch import nn

from crossd import to_3d, to_crossd
from crossd.convert import ConversionWarning, check_really_3d

timm = pytest.importorskip("timm")
layers = pytest.importorskip("timm.layers")
convnext = pytest.importorskip("timm.models.convnext")

pytestmark = pytest.mark.usefixtures("one_thread")


def _random_statistics(model: nn.Module) -> nn.Module:
    """Non-trivial BatchNorm statistics, so a dropped activation or a wrong norm shows in the output."""
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.normal_(0, 0.2)
            module.running_var.uniform_(0.5, 1.5)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.normal_(0, 0.2)
    return model.eval()


def _assert_one_slice_is_2d(model: nn.Module, image: torch.Tensor) -> nn.Module:
    """``to_3d(init="center")`` on the volume ``image[:, :, None]`` (D = 1) must give the 2D output exactly."""
    model3d = to_3d(model, init="center").eval()
    with torch.no_grad():
        expected, out = model(image), model3d(image[:, :, None])
    out = out[:, :, 0] if out.dim() == 5 else out
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-4)
    return model3d


@pytest.mark.parametrize(
    "name", ["resnet18", "efficientnet_b0", "tf_efficientnet_b0", "regnety_002", "mobilenetv3_small_100"]
)
def test_centre_init_on_one_slice_is_the_2d_network(name):
    """Squeeze-excite twins, BatchNormAct3d's activation, SAME padding and the pools all show in the logits."""
    model = _random_statistics(timm.create_model(name, num_classes=3))
    _assert_one_slice_is_2d(model, torch.randn(2, 3, 32, 32))


@pytest.mark.parametrize("conv_mlp", [False, True])  # channels-last LayerNorm + Linear, or LayerNorm2d + 1x1 convs
def test_convnext_block_both_layouts(conv_mlp):
    block = convnext.ConvNeXtBlock(16, conv_mlp=conv_mlp, ls_init_value=0.5).eval()
    block.gamma.data.uniform_(0.5, 1.5)
    model3d = _assert_one_slice_is_2d(block, torch.randn(2, 16, 9, 9))
    assert type(model3d).__name__ == "ConvNeXtBlock3d"
    assert check_really_3d(model3d, torch.randn(1, 16, 3, 5, 4)) == {}


def test_batch_norm_act_keeps_its_activation_and_statistics():
    norm = _random_statistics(nn.Sequential(layers.BatchNormAct2d(4, act_layer=nn.SiLU)))
    model3d = to_3d(norm, init="i3d").eval()
    assert type(model3d[0]).__name__ == "BatchNormAct3d" and isinstance(model3d[0].act, nn.SiLU)
    x = torch.randn(2, 4, 3, 5, 6)
    bn = norm[0]
    expected = nn.functional.silu(
        (x - bn.running_mean[:, None, None, None])
        / (bn.running_var[:, None, None, None] + bn.eps).sqrt()
        * bn.weight[:, None, None, None]
        + bn.bias[:, None, None, None]
    )
    with torch.no_grad():
        torch.testing.assert_close(model3d(x), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("pool_type", ["fast", "avg", "max", "avgmax", "catavgmax", "fastavgmax", "fastcatavgmax"])
@pytest.mark.parametrize("flatten", [False, True])
def test_global_pools_reduce_all_three_axes(pool_type, flatten):
    pool = layers.SelectAdaptivePool2d(pool_type=pool_type, flatten=flatten)
    model3d = to_3d(nn.Sequential(pool), init="i3d")
    x = torch.randn(2, 3, 4, 5, 6)
    mean, top = x.mean((2, 3, 4), keepdim=True), x.amax((2, 3, 4), keepdim=True)
    expected = {"avg": mean, "max": top, "avgmax": (mean + top) / 2, "catavgmax": torch.cat([mean, top], 1)}
    key = pool_type.removeprefix("fast") or "avg"
    want = expected[key].flatten(1) if flatten else expected[key]
    torch.testing.assert_close(model3d(x), want)
    assert check_really_3d(model3d, x) == {}


def test_mixed_conv_and_drop_path_keep_their_forward():
    mixed = layers.MixedConv2d(6, 6, kernel_size=[3, 5, 7], stride=1, padding="", dilation=1, depthwise=True)
    assert type(_assert_one_slice_is_2d(mixed.eval(), torch.randn(1, 6, 11, 11))).__name__ == "MixedConv3d"
    drop = layers.DropPath(0.5).train()
    x = torch.ones(64, 2, 3, 4, 5)
    out = drop(x)
    per_sample = out.flatten(1)
    assert set(per_sample.unique().tolist()) <= {0.0, 2.0}  # one keep/drop decision per sample
    assert (per_sample == per_sample[:, :1]).all()


def test_cond_conv_is_named_not_silently_kept():
    model = nn.Sequential(layers.CondConv2d(4, 4, 3, padding=1, num_experts=2))
    with pytest.warns(ConversionWarning, match="CondConv2d"):
        _, report = to_3d(model, init="i3d", return_report=True)
    assert "CondConv2d is a 2D layer" in report.unconverted["0"]


def test_conv_subclasses_with_their_own_forward_are_named():
    """timm's StdConv2d standardises its weight in forward(): a plain Conv3d/CrossDConv would silently drop it."""
    model = nn.Sequential(layers.StdConv2d(3, 4, 3, padding=1))
    for convert in (to_crossd, lambda m, **kw: to_3d(m, init="i3d", **kw)):
        with pytest.warns(ConversionWarning, match="StdConv2d has its own forward"):
            _, report = convert(model, return_report=True)
        assert set(report.unconverted) == {"0"}
