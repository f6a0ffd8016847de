"""``ACSConv3d`` against a per-channel reference written from the definition (float64, tolerance 1e-12)."""

import pytest
import torch
import torch.nn.functional as F

from crossd import ACSConv3d
from crossd.convert.kernels import acs_kernel


def _reference(layer: ACSConv3d, x: torch.Tensor) -> torch.Tensor:
    """One output channel at a time: channel ``o`` reads its group's inputs, its 2D kernel lies in its view's
    plane (axial for the first third of the channels, then coronal, then sagittal, remainders first)."""
    co, g = layer.out_channels, layer.groups
    per_out, per_in = co // g, layer.in_channels // g
    third, rest = divmod(co, 3)
    bounds = [third + (rest > 0), 2 * third + (rest > 0) + (rest > 1)]
    outs = []
    for o in range(co):
        view = sum(o >= b for b in bounds)
        pad, dil = [layer.padding] * 3, [layer.dilation] * 3
        pad[view], dil[view] = 0, 1
        group = o // per_out
        kernel = layer.weight[o : o + 1].unsqueeze(2 + view)
        inputs = x[:, group * per_in : (group + 1) * per_in]
        outs.append(F.conv3d(inputs, kernel, None, layer.stride, pad, dil))
    out = torch.cat(outs, dim=1)
    return out + layer.bias[None, :, None, None, None]


@pytest.mark.parametrize(
    ("ci", "co", "groups", "stride", "padding", "dilation"),
    [(3, 5, 1, 1, 1, 1), (4, 6, 2, 1, 1, 1), (6, 12, 3, 2, 1, 1), (6, 6, 6, 1, 2, 2), (4, 8, 4, 1, 1, 1)],
    ids=["dense", "groups2", "groups3-stride2", "depthwise-dilated", "groups4"],
)
def test_acs_conv_matches_the_per_channel_reference(ci, co, groups, stride, padding, dilation):
    torch.manual_seed(0)
    layer = ACSConv3d(ci, co, 3, stride, padding, dilation, groups).double()
    with torch.no_grad():
        layer.bias.normal_()
    x = torch.randn(2, ci, 6, 7, 8, dtype=torch.float64)
    torch.testing.assert_close(layer(x), _reference(layer, x), rtol=0, atol=1e-12)
    # ACS is also one Conv3d with each kernel in the central plane of its view
    expected = F.conv3d(x, acs_kernel(layer.weight), layer.bias, stride, padding, dilation, groups)
    torch.testing.assert_close(layer(x), expected, rtol=0, atol=1e-12)


def test_acs_conv_bad_input():
    with pytest.raises(ValueError, match="views give different output sizes"):
        ACSConv3d(2, 3, 3, padding=0)
    with pytest.raises(ValueError, match="groups 4 must divide in_channels"):
        ACSConv3d(4, 6, 3, groups=4)
    assert ACSConv3d(2, 3, 5, dilation=2).padding == 4  # the default padding keeps the views' sizes
    with pytest.raises(ValueError, match=r"expects \(B, C, D, H, W\)"):
        ACSConv3d(2, 3, 3)(torch.randn(1, 2, 5, 5))
