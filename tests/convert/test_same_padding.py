"""PadSame: TensorFlow "SAME" padding on images (against timm's own layers) and on volumes (slice by slice)."""

import math

import pytest
import torch
from torch import nn

from crossd import CrossDConv, to_3d, to_crossd
from crossd.convert import PadSame
from crossd.convert.same_padding import same_padding

timm_layers = pytest.importorskip("timm.layers")


@pytest.mark.parametrize(
    ("size", "kernel", "stride", "dilation"), [(7, 3, 2, 1), (8, 3, 2, 1), (9, 5, 2, 2), (6, 1, 1, 1)]
)
def test_output_is_ceil_of_size_over_stride(size, kernel, stride, dilation):
    before, after = same_padding(size, kernel, stride, dilation)
    out = (size + before + after - dilation * (kernel - 1) - 1) // stride + 1
    assert out == math.ceil(size / stride) and 0 <= after - before <= 1


@pytest.mark.parametrize("stride", [1, 2])
def test_images_match_timm_conv2d_same(stride):
    conv = timm_layers.Conv2dSame(3, 4, 3, stride=stride).eval()
    crossd, report = to_crossd(nn.Sequential(conv), init="center", return_report=True)
    assert isinstance(crossd[0], PadSame) and isinstance(crossd[0].layer, CrossDConv)
    assert report.converted["0"] == "Conv2dSame -> PadSame(CrossDConv)"
    for head in (crossd[0].layer.rotation_head[3].weight, crossd[0].layer.rotation_head[3].bias):
        nn.init.zeros_(head)  # angle 0: the centre-initialised layer is the 2D kernel
    image = torch.randn(2, 3, 9, 10)
    with torch.no_grad():
        torch.testing.assert_close(crossd.eval()(image), conv(image), rtol=1e-4, atol=1e-5)


def test_max_pool_same_pads_with_minus_infinity():
    pool = pytest.importorskip("timm.layers.pool2d_same").MaxPool2dSame(3, stride=2)
    image = -torch.rand(1, 2, 6, 7) - 1  # all negative: a zero pad would win the max
    model3d = to_3d(nn.Sequential(pool), init="i3d")
    volume = image[:, :, None].repeat(1, 1, 5, 1, 1)
    out = model3d(volume)
    assert isinstance(model3d[0], PadSame) and isinstance(model3d[0].layer, nn.MaxPool3d)
    assert out.shape[2:] == (3, 3, 4)
    torch.testing.assert_close(out[:, :, 1], pool(image))


@pytest.mark.parametrize("stride", [1, 2])
def test_volumes_pad_depth_like_tf(stride):
    """A centre-initialised 3D kernel reads one input slice per output slice: the one TF "SAME" puts there."""
    conv = timm_layers.Conv2dSame(2, 3, 3, stride=stride).eval()
    model3d = to_3d(nn.Sequential(conv), init="center")
    assert isinstance(model3d[0], PadSame) and isinstance(model3d[0].layer, nn.Conv3d)
    volume = torch.randn(1, 2, 7, 8, 9)
    with torch.no_grad():
        out = model3d(volume)
        before, _ = same_padding(7, 3, stride, 1)
        assert out.shape[2] == math.ceil(7 / stride)
        for j in range(out.shape[2]):
            d = j * stride - before + 1  # the centre tap of output slice j
            torch.testing.assert_close(out[:, :, j], conv(volume[:, :, d]))
