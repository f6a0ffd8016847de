"""CrossDConv: 2D forward against the per-sample FFT oracle, 3D forward as conv3d, errors, repr."""

import pytest
import torch
import torch.nn.functional as F

from crossd import CrossDConv
from crossd.errors import SettingsError
from crossd.nn.crossd_conv import set_plane_sampling
from crossd.ops import kernel_slice
from crossd.ops.rotation import grid_rotations, random_grid_rotation, random_rotation
from crossd.ops.slicing import apply_slice_operator, slice_operator
from reference import reference_conv2d


def _oracle(layer, x):
    axis, angle = layer.rotation(x)
    return reference_conv2d(
        x,
        layer.weight,
        axis,
        angle,
        layer.mode,
        layer.stride[1:],
        layer.padding[1:],
        layer.dilation[1:],
        layer.groups,
        layer.bias,
    )


@pytest.mark.parametrize("mode", ["rotate", "shift", "project"])
@pytest.mark.parametrize(
    "kwargs",
    [
        dict(kernel_size=3, padding=1),
        dict(kernel_size=5, stride=2, padding=2, bias=True),
        dict(kernel_size=3, dilation=2, padding=2, groups=2),
        dict(kernel_size=1),
        dict(kernel_size=7, stride=2, padding=3),
    ],
)
def test_2d_forward_matches_oracle(mode, kwargs):
    layer = CrossDConv(4, 6, mode=mode, **kwargs).double().eval()
    x = torch.randn(3, 4, 11, 11, dtype=torch.float64)
    torch.testing.assert_close(layer(x), _oracle(layer, x), rtol=0, atol=1e-10)


def test_2d_forward_float32_and_training_mode():
    layer = CrossDConv(4, 6, 3, padding=1)
    x = torch.randn(2, 4, 9, 9)
    out = layer(x)  # training mode: head BatchNorm uses batch statistics
    expected = _oracle(layer.double(), x.double())
    assert ((out.double() - expected).abs().max() / expected.abs().max()).item() < 1e-5


def test_same_padding_keeps_size():
    layer = CrossDConv(2, 3, 3, padding="same").eval()
    assert layer(torch.randn(2, 2, 10, 12)).shape == (2, 3, 10, 12)
    assert layer(torch.randn(2, 2, 6, 10, 12)).shape == (2, 3, 6, 10, 12)


def test_3d_forward_is_conv3d():
    layer = CrossDConv(4, 6, 3, stride=2, padding=1, dilation=1, groups=2, bias=True)
    x = torch.randn(2, 4, 9, 10, 11)
    torch.testing.assert_close(layer(x), F.conv3d(x, layer.weight, layer.bias, 2, 1, 1, 2))


def test_gradients_reach_weight_and_head():
    layer = CrossDConv(3, 4, 3, padding=1)
    layer(torch.randn(2, 3, 8, 8)).square().mean().backward()
    assert layer.weight.grad.abs().sum() > 0
    assert layer.rotation_head[3].weight.grad.abs().sum() > 0


def test_batch_granularity_is_one_plain_conv():
    layer = CrossDConv(3, 4, 3, padding=1, granularity="batch").eval()
    x = torch.randn(4, 3, 8, 8)
    axis, angle = layer.rotation(x)
    assert axis.shape == (1, 3)
    kernel = reference_conv2d  # the oracle applied to each sample with the shared rotation
    expected = kernel(x, layer.weight, axis.expand(4, 3), angle.expand(4), "rotate", padding=1)
    torch.testing.assert_close(layer(x), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("shape", [(3, 8, 8), (1, 3, 4, 4, 4, 4)])
def test_wrong_rank_is_a_clear_error(shape):
    with pytest.raises(ValueError, match=r"expects a 2D batch \(B, C, H, W\) or a 3D batch"):
        CrossDConv(3, 4, 3)(torch.randn(*shape))


def test_channel_mismatch_is_a_clear_error():
    with pytest.raises(ValueError, match="expects 3 input channels, got 5"):
        CrossDConv(3, 4, 3)(torch.randn(1, 5, 8, 8))


def test_unsupported_configurations():
    with pytest.raises(ValueError, match="odd kernel size"):
        CrossDConv(3, 4, 4, mode="rotate")
    with pytest.raises(ValueError, match="cubic kernel"):
        CrossDConv(3, 4, (3, 3, 5))
    with pytest.raises(ValueError, match="groups 2 must divide in_channels"):
        CrossDConv(3, 4, 3, groups=2)
    assert CrossDConv(3, 4, 4, mode="shift")(torch.randn(2, 3, 8, 8)).shape == (2, 4, 5, 5)


def test_extra_repr_shows_mode_and_shapes():
    text = repr(CrossDConv(8, 16, 3, stride=2, padding=1, mode="shift"))
    assert "mode='shift'" in text and "weight=(16, 8, 3, 3, 3)" in text and "stride=(2, 2, 2)" in text


def test_random_plane_sampling_trains_every_voxel_and_leaves_eval_alone():
    layer = CrossDConv(2, 2, 3, padding=1, plane_sampling="random")
    x = torch.randn(16, 2, 8, 8)
    layer.eval()
    torch.testing.assert_close(layer(x), _oracle(layer, x))  # evaluation: the head's plane only
    layer.train()
    layer(x).square().sum().backward()
    assert (layer.weight.grad.abs() > 0).all(), "random planes reach the off-plane voxels too"
    head_only = CrossDConv(2, 2, 3, padding=1)
    with torch.no_grad():
        head_only.rotation_head[3].weight.zero_()
        head_only.rotation_head[3].bias.zero_()
    head_only(x).square().sum().backward()
    grad = head_only.weight.grad.abs()
    # at angle 0 only the central slice learns (float32 sinc weights at integer offsets are ~1e-7, not 0)
    assert grad[:, :, [0, 2]].max() < 1e-4 * grad[:, :, 1].max()
    with pytest.raises(ValueError, match="plane_sampling"):
        CrossDConv(2, 2, 3, mode="shift", plane_sampling="random")


def _angle_zero_heads(layer):
    with torch.no_grad():
        layer.rotation_head[3].weight.zero_()
        layer.rotation_head[3].bias.zero_()
    return layer


def _grid_kernels(layer):
    """The 2D kernels ``(24, Co, Ci, K, K)`` of the 24 grid rotations (heads at angle 0)."""
    zero = torch.zeros(24, dtype=layer.weight.dtype)
    ones = torch.ones(24, 3, dtype=layer.weight.dtype)
    op = slice_operator(ones, zero, layer.kernel_size[0], layer.mode, grid_rotations(layer.weight.dtype))
    return apply_slice_operator(layer.weight, op)


@pytest.mark.parametrize("mode", ["rotate", "project"])
def test_grid_plane_sampling_per_sample_uses_one_of_the_24_rotations_each(mode):
    layer = _angle_zero_heads(CrossDConv(2, 3, 3, padding=1, mode=mode, plane_sampling="grid")).double()
    x = torch.randn(12, 2, 6, 6, dtype=torch.float64)
    out = layer(x)
    kernels = _grid_kernels(layer)
    candidates = torch.stack([F.conv2d(x, k, padding=1) for k in kernels], dim=1)  # (B, 24, Co, H, W)
    err = (candidates - out[:, None]).abs().flatten(2).amax(-1)  # (B, 24)
    assert (err.min(1).values < 1e-10).all(), "every sample used one of the grid rotations"
    assert len(set(err.argmin(1).tolist())) > 1, "samples draw their rotations independently"


@pytest.mark.parametrize("sampling", ["grid", "random"])
def test_plane_sampling_per_batch_uses_one_rotation_for_the_whole_batch(sampling):
    layer = CrossDConv(2, 3, 3, padding=1, mode="project", plane_sampling=sampling, granularity="batch").double()
    x = torch.randn(8, 2, 6, 6, dtype=torch.float64)
    torch.manual_seed(3)
    out = layer(x)
    axis, angle = layer.rotation(x)
    assert axis.shape == (1, 3)
    torch.manual_seed(3)
    if sampling == "random":
        base = random_rotation(1, torch.float64)
        op = slice_operator(axis, angle, 3, "project", base)
        torch.testing.assert_close(out, F.conv2d(x, apply_slice_operator(layer.weight, op)[0], padding=1))
    else:
        _angle_zero_heads(layer)
        out = layer(x)
        err = torch.stack([(F.conv2d(x, k, padding=1) - out).abs().max() for k in _grid_kernels(layer)])
        assert err.min() < 1e-10


def test_project_trains_every_voxel_at_angle_zero_and_eval_uses_the_head():
    """Unlike the central-plane slice, the projection sends gradient to every voxel even at angle 0."""
    layer = _angle_zero_heads(CrossDConv(2, 2, 3, padding=1, mode="project"))
    x = torch.randn(4, 2, 8, 8)
    layer(x).square().sum().backward()
    assert (layer.weight.grad.abs() > 0).all()
    sampled = set_plane_sampling(CrossDConv(2, 2, 3, padding=1, mode="project"), "grid", "batch").eval()
    assert sampled.granularity == "batch"
    axis, angle = sampled.rotation(x)  # evaluation: the batch's head plane, no sampled turn
    expected = reference_conv2d(x, sampled.weight, axis.expand(4, 3), angle.expand(4), "project", padding=1)
    torch.testing.assert_close(sampled(x), expected, rtol=1e-5, atol=1e-6)


def test_project_layer_at_angle_zero_is_conv2d_with_the_depth_sum():
    layer = _angle_zero_heads(CrossDConv(3, 4, 5, padding=2, mode="project")).double().eval()
    x = torch.randn(2, 3, 9, 9, dtype=torch.float64)
    torch.testing.assert_close(layer(x), F.conv2d(x, layer.weight.sum(2), padding=2), rtol=0, atol=1e-10)
    expected = kernel_slice(layer.weight, 0, 0.0, "project")[0]
    torch.testing.assert_close(layer.weight.sum(2), expected, rtol=0, atol=1e-12)


def test_plane_sampling_errors():
    with pytest.raises(ValueError, match="plane_sampling 'grid' needs mode 'rotate' or 'project'"):
        CrossDConv(2, 2, 3, mode="shift", plane_sampling="grid")
    with pytest.raises(ValueError, match="plane_sampling must be one of"):
        CrossDConv(2, 2, 3, plane_sampling="cube")
    with pytest.raises(ValueError, match="granularity must be"):
        set_plane_sampling(CrossDConv(2, 2, 3), "grid", "pixel")


def _pair_of_layers(granularity, other, **kwargs):
    """Two layers with the same parameters, one at each granularity."""
    torch.manual_seed(0)
    a = CrossDConv(3, 4, 3, padding=1, granularity=granularity, **kwargs).double()
    b = CrossDConv(3, 4, 3, padding=1, granularity=other, **kwargs).double()
    b.load_state_dict(a.state_dict())
    return a, b


@pytest.mark.parametrize("groups, same_as", [(5, "sample"), (9, "sample"), (1, "batch")])
@pytest.mark.parametrize("sampling", ["head", "random"])
def test_granularity_g_equal_to_the_batch_is_per_sample_and_one_is_per_batch(groups, same_as, sampling):
    """``G >= B`` is ``"sample"`` and ``G = 1`` is ``"batch"``: equal outputs and gradients in float64 (to 1e-12,
    training mode, the same sampled planes under the same seed)."""
    a, b = _pair_of_layers(groups, same_as, mode="project", plane_sampling=sampling)
    x = torch.randn(5, 3, 7, 7, dtype=torch.float64)
    results = []
    for layer in (a, b):
        torch.manual_seed(1)
        out = layer(x)
        out.square().sum().backward()
        results.append((out, layer.weight.grad, layer.rotation_head[3].weight.grad))
    for got, expected in zip(*results, strict=True):
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)


def test_head_planes_are_the_head_output_averaged_over_each_contiguous_group():
    layer = CrossDConv(3, 4, 3, padding=1, granularity=3).double()
    x = torch.randn(7, 3, 6, 6, dtype=torch.float64)  # groups of 3, 3 and 1 samples
    axis, angle = layer.rotation(x)
    v = layer.rotation_head(x)
    means = torch.stack([v[0:3].mean(0), v[3:6].mean(0), v[6]])
    torch.testing.assert_close(axis, means[:, :3], rtol=0, atol=1e-14)
    torch.testing.assert_close(angle, torch.tanh(means[:, 3]) * torch.pi / 4, rtol=0, atol=1e-14)
    expected = torch.cat([F.conv2d(x[i : i + 3], kernel_slice(layer.weight, axis[j], angle[j])[0], padding=1)
                          for j, i in enumerate((0, 3, 6))])  # fmt: skip
    torch.testing.assert_close(layer(x), expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("sampling", ["random", "grid"])
def test_sampled_planes_are_one_draw_per_group(sampling):
    """Seeded: the layer draws exactly one turn per group (3 for 7 samples in groups of 3), in group order."""
    layer = CrossDConv(2, 3, 3, padding=1, mode="project", plane_sampling=sampling, granularity=3).double()
    x = torch.randn(7, 2, 6, 6, dtype=torch.float64)
    torch.manual_seed(5)
    out = layer(x)
    after = torch.rand(1)
    axis, angle = layer.rotation(x)
    torch.manual_seed(5)
    sampler = random_rotation if sampling == "random" else random_grid_rotation
    base = sampler(3, torch.float64)
    assert torch.equal(torch.rand(1), after), "one draw of 3 rotations, nothing more"
    kernels = apply_slice_operator(layer.weight, slice_operator(axis, angle, 3, "project", base))
    expected = torch.cat([F.conv2d(part, kernels[j], padding=1) for j, part in enumerate(x.split(3))])
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-12)


def test_3d_input_ignores_granularity():
    layer = CrossDConv(2, 3, 3, padding=1, granularity=2, plane_sampling="random", mode="project")
    x = torch.randn(5, 2, 4, 5, 6)
    torch.testing.assert_close(layer(x), F.conv3d(x, layer.weight, None, 1, 1), rtol=0, atol=0)


@pytest.mark.parametrize("bad", [0, -2, 2.5, True, "pixel", "4", None])
def test_bad_granularity_is_a_settings_error_naming_the_field(bad):
    with pytest.raises(SettingsError, match="granularity must be 'sample', 'batch' or a positive integer") as err:
        CrossDConv(2, 2, 3, granularity=bad)
    assert err.value.field == "granularity"
    if bad is not None:  # None leaves each layer's granularity as it is
        with pytest.raises(SettingsError, match="granularity must be"):
            set_plane_sampling(CrossDConv(2, 2, 3), "head", bad)
