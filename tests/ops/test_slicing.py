"""The kernel slice against the slow FFT oracle (tests/reference.py), and its exact special cases.

Tolerances: float64 results agree with the oracle to 1e-10 absolute (observed ~1e-14); float32 to 1e-5 relative.
"""

import math

import pytest
import torch

from crossd.convert.kernels import center_kernel, inflate_kernel
from crossd.ops import kernel_slice, slice_operator
from crossd.ops.rotation import first_order_rotation, grid_rotations, random_grid_rotation, rodrigues_rotation
from reference import fft_slice

CASES = [("shift", k) for k in (1, 2, 3, 4, 5, 7)] + [(m, k) for m in ("rotate", "project") for k in (1, 3, 5, 7)]


def _random(k, batch=4, dtype=torch.float64):
    weight = torch.randn(3, 2, k, k, k, dtype=dtype)
    axis = torch.randn(batch, 3, dtype=dtype)
    angle = (torch.rand(batch, dtype=dtype) * 2 - 1) * math.pi / 4
    return weight, axis, angle


@pytest.mark.parametrize("mode,k", CASES)
def test_matches_fft_oracle_float64(mode, k):
    weight, axis, angle = _random(k)
    got = kernel_slice(weight, axis, angle, mode)
    assert got.shape == (4, 3, 2, k, k)
    torch.testing.assert_close(got, fft_slice(weight, axis, angle, mode), rtol=0, atol=1e-10)


@pytest.mark.parametrize("mode,k", [("shift", 3), ("rotate", 3), ("rotate", 7), ("project", 3), ("project", 7)])
def test_matches_fft_oracle_float32(mode, k):
    weight, axis, angle = _random(k)
    expected = fft_slice(weight, axis, angle, mode)
    got = kernel_slice(weight.float(), axis.float(), angle.float(), mode).double()
    assert ((got - expected).abs().max() / expected.abs().max()).item() < 1e-5


@pytest.mark.parametrize("k", [3, 5, 7])
def test_rotate_angle_zero_is_central_slice(k):
    weight, axis, _ = _random(k)
    got = kernel_slice(weight, axis, torch.zeros(4, dtype=weight.dtype), "rotate")
    torch.testing.assert_close(got, weight[:, :, k // 2].expand_as(got), rtol=0, atol=1e-12)


@pytest.mark.parametrize("k", [3, 5])
def test_rotate_quarter_turns_give_grid_planes(k):
    """The plane (0, y-c, x-c) rotated by 90 degrees lands on another grid plane of the kernel.

    About the h axis (0, 1, 0): (0, v, u) -> (u, v, 0), so W2[y, x] = W[x, y, c]: the (d, h) plane, transposed.
    About the w axis (0, 0, 1): (0, v, u) -> (-v, 0, u), so W2[y, x] = W[2c - y, c, x]: the (d, w) plane, d flipped.
    """
    weight = torch.randn(2, 2, k, k, k, dtype=torch.float64)
    # the head caps angles at pi/4 but the operator itself accepts any angle
    quarter = torch.full((1,), math.pi / 2, dtype=torch.float64)
    c = k // 2
    about_h = kernel_slice(weight, torch.tensor([[0.0, 1.0, 0.0]], dtype=torch.float64), quarter, "rotate")[0]
    torch.testing.assert_close(about_h, weight[:, :, :, :, c].transpose(-1, -2), rtol=0, atol=1e-12)
    about_w = kernel_slice(weight, torch.tensor([[0.0, 0.0, 1.0]], dtype=torch.float64), quarter, "rotate")[0]
    torch.testing.assert_close(about_w, weight[:, :, :, c, :].flip(-2), rtol=0, atol=1e-12)
    about_d = kernel_slice(weight, torch.tensor([[1.0, 0.0, 0.0]], dtype=torch.float64), quarter, "rotate")[0]
    # in-plane quarter turn: (0, v, u) -> (0, -u, v): W2[y, x] = W[c, 2c - x, y]
    torch.testing.assert_close(about_d, weight[:, :, c].flip(-2).transpose(-1, -2), rtol=0, atol=1e-12)


@pytest.mark.parametrize("k", [2, 3, 4, 7])
def test_shift_angle_zero_is_rolled_slice(k):
    weight, axis, _ = _random(k)
    got = kernel_slice(weight, axis, torch.zeros(4, dtype=weight.dtype), "shift")
    expected = torch.roll(weight, (1, 1, 1), (2, 3, 4))[:, :, k // 2]
    torch.testing.assert_close(got, expected.expand_as(got), rtol=0, atol=1e-12)


@pytest.mark.parametrize("mode,k", [("shift", 3), ("shift", 2), ("rotate", 3), ("rotate", 5), ("project", 3)])
def test_gradcheck(mode, k):
    weight = torch.randn(2, 2, k, k, k, dtype=torch.float64, requires_grad=True)
    axis = torch.randn(3, 3, dtype=torch.float64, requires_grad=True)
    angle = (torch.rand(3, dtype=torch.float64) - 0.5).requires_grad_()
    assert torch.autograd.gradcheck(lambda w, a, t: kernel_slice(w, a, t, mode), (weight, axis, angle))


def test_operator_shape_and_linearity():
    op = slice_operator(torch.randn(5, 3), torch.rand(5), 3, "rotate")
    assert op.shape == (5, 9, 27)
    w1, w2 = torch.randn(2, 1, 3, 3, 3), torch.randn(2, 1, 3, 3, 3)
    axis, angle = torch.randn(2, 3), torch.rand(2)
    lhs = kernel_slice(w1 + 2 * w2, axis, angle)
    torch.testing.assert_close(lhs, kernel_slice(w1, axis, angle) + 2 * kernel_slice(w2, axis, angle))


def test_rotations():
    axis = torch.nn.functional.normalize(torch.randn(4, 3, dtype=torch.float64), dim=1)
    angle = torch.rand(4, dtype=torch.float64)
    rot = rodrigues_rotation(axis, angle)
    torch.testing.assert_close(rot @ rot.transpose(1, 2), torch.eye(3, dtype=torch.float64).expand(4, 3, 3))
    torch.testing.assert_close((rot @ axis[:, :, None])[..., 0], axis)  # the axis is fixed
    approx = first_order_rotation(axis, angle)
    torch.testing.assert_close(approx, torch.eye(3, dtype=torch.float64) + (approx - approx.transpose(1, 2)) / 2)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"mode": "rotate", "k": 4}, "odd kernel size"),
        ({"mode": "project", "k": 2}, "mode 'project' needs an odd kernel size"),
        ({"mode": "spin", "k": 3}, "mode must be one of"),
    ],
)
def test_bad_mode_or_kernel(kwargs, message):
    weight = torch.randn(1, 1, kwargs["k"], kwargs["k"], kwargs["k"])
    with pytest.raises(ValueError, match=message):
        kernel_slice(weight, torch.randn(1, 3), torch.zeros(1), kwargs["mode"])


def test_bad_shapes():
    with pytest.raises(ValueError, match="cubic 3D kernel"):
        kernel_slice(torch.randn(1, 1, 3, 3), torch.randn(1, 3), torch.zeros(1))
    with pytest.raises(ValueError, match=r"axis must have shape \(B, 3\)"):
        kernel_slice(torch.randn(1, 1, 3, 3, 3), torch.randn(1, 2), torch.zeros(1))
    with pytest.raises(ValueError, match="angle must have shape"):
        kernel_slice(torch.randn(1, 1, 3, 3, 3), torch.randn(2, 3), torch.zeros(3))


def test_random_rotations_are_rotations():
    from crossd.ops.rotation import random_rotation

    rot = random_rotation(64, torch.float64)
    torch.testing.assert_close(rot @ rot.transpose(1, 2), torch.eye(3, dtype=torch.float64).expand(64, 3, 3))
    torch.testing.assert_close(torch.linalg.det(rot), torch.ones(64, dtype=torch.float64))


def test_base_rotation_composes_before_the_axis_angle():
    axis = torch.tensor([[0.0, 1.0, 0.0]], dtype=torch.float64)
    quarter = torch.full((1,), math.pi / 2, dtype=torch.float64)
    base = rodrigues_rotation(axis, quarter)
    zero = torch.zeros(1, dtype=torch.float64)
    op = slice_operator(torch.tensor([[1.0, 0.0, 0.0]], dtype=torch.float64), zero, 3, "rotate", base)
    direct = slice_operator(axis, quarter, 3, "rotate")
    torch.testing.assert_close(op, direct)


@pytest.mark.parametrize("k", [1, 3, 5, 7])
def test_project_angle_zero_is_depth_sum(k):
    weight, axis, _ = _random(k)
    got = kernel_slice(weight, axis, 0.0, "project")
    torch.testing.assert_close(got, weight.sum(2).expand_as(got), rtol=0, atol=1e-12)


@pytest.mark.parametrize("k", [3, 5])
def test_project_depth_constant_kernel_is_k_times_its_slice(k):
    """A depth-constant kernel projects to ``K x`` its slice at angle 0, and for any turn about the depth axis to
    ``K x`` the projection of that slice alone (placed in the centre plane)."""
    slice2d = torch.randn(2, 3, k, k, dtype=torch.float64)
    constant = slice2d[:, :, None].expand(-1, -1, k, -1, -1)
    torch.testing.assert_close(kernel_slice(constant, 0, 0.0, "project")[0], k * slice2d, rtol=0, atol=1e-12)
    angles = torch.tensor([0.3, -0.7, 1.2], dtype=torch.float64)
    turned = kernel_slice(constant, 0, angles, "project")
    alone = kernel_slice(center_kernel(slice2d), 0, angles, "project")
    torch.testing.assert_close(turned, k * alone, rtol=0, atol=1e-12)


@pytest.mark.parametrize("k", [3, 5])
def test_project_quarter_turns_sum_along_the_grid_axis(k):
    """Same turns as ``test_rotate_quarter_turns_give_grid_planes``: the sum along the axis mapped onto depth,
    in the axis order of the ``rotate`` slice."""
    weight = torch.randn(2, 2, k, k, k, dtype=torch.float64)
    quarter = math.pi / 2
    torch.testing.assert_close(
        kernel_slice(weight, 1, quarter, "project")[0], weight.sum(-1).transpose(-1, -2), rtol=0, atol=1e-12
    )
    torch.testing.assert_close(
        kernel_slice(weight, 2, quarter, "project")[0], weight.sum(-2).flip(-2), rtol=0, atol=1e-12
    )
    torch.testing.assert_close(
        kernel_slice(weight, 0, quarter, "project")[0], weight.sum(2).flip(-2).transpose(-1, -2), rtol=0, atol=1e-12
    )


@pytest.mark.parametrize("k", [3, 5])
def test_project_grid_rotations_sum_the_rotated_grid(k):
    """For each of the 24 cube rotations ``G`` the projection is ``sum_t W[G (t, y, x) (centred)]``: the depth sum
    of the kernel turned by ``G``, read off by integer indexing."""
    weight = torch.randn(2, 2, k, k, k, dtype=torch.float64)
    rots = grid_rotations(torch.float64)
    zero = torch.zeros(24, dtype=torch.float64)
    op = slice_operator(torch.ones(24, 3, dtype=torch.float64), zero, k, "project", rots)
    got = torch.einsum("pn,bkn->bpk", weight.reshape(4, -1), op).reshape(24, 2, 2, k, k)
    c = k // 2
    t, y, x = torch.meshgrid(*(torch.arange(k) - c,) * 3, indexing="ij")
    for g, rot in enumerate(rots.round().long()):
        d, h, w = (torch.einsum("ij,jtyx->ityx", rot, torch.stack((t, y, x))) + c).unbind(0)
        expected = weight[:, :, d, h, w].sum(2)  # (Co, Ci, K, K) after summing t
        torch.testing.assert_close(got[g], expected, rtol=0, atol=1e-12)


def test_project_of_an_inflated_kernel_is_the_2d_kernel():
    """The scale convention: the sum, so an I3D-inflated kernel (``repeat(w2) / K``) projects back to ``w2``."""
    w2 = torch.randn(4, 3, 5, 5, dtype=torch.float64)
    axis = torch.randn(6, 3, dtype=torch.float64)
    got = kernel_slice(inflate_kernel(w2), axis, 0.0, "project")
    torch.testing.assert_close(got, w2.expand_as(got), rtol=0, atol=1e-12)


def test_grid_rotations_are_the_rotation_group_of_the_cube():
    rots = grid_rotations(torch.float64)
    assert rots.shape == (24, 3, 3)
    torch.testing.assert_close(rots @ rots.transpose(1, 2), torch.eye(3, dtype=torch.float64).expand(24, 3, 3))
    torch.testing.assert_close(torch.linalg.det(rots), torch.ones(24, dtype=torch.float64))
    # closure of the three quarter turns about d, h, w, built independently with Rodrigues' formula
    quarter = rodrigues_rotation(torch.eye(3, dtype=torch.float64), torch.full((3,), math.pi / 2, dtype=torch.float64))
    group = {tuple(torch.eye(3).flatten().tolist())}
    frontier = [torch.eye(3, dtype=torch.float64)]
    while frontier:
        new = [(q @ m).round() for m in frontier for q in quarter]
        frontier = [m for m in new if tuple(m.flatten().tolist()) not in group]
        group |= {tuple(m.flatten().tolist()) for m in frontier}
    assert {tuple(m.flatten().tolist()) for m in rots} == group and len(group) == 24
    picks = random_grid_rotation(500, torch.float64)
    assert len({tuple(m.flatten().tolist()) for m in picks}) == 24


def test_python_axis_and_angle_are_accepted_and_broadcast():
    weight = torch.randn(2, 2, 3, 3, 3, dtype=torch.float64)
    about_h = torch.tensor([[0.0, 1.0, 0.0]], dtype=torch.float64)
    angles = torch.tensor([0.1, 0.5], dtype=torch.float64)
    expected = kernel_slice(weight, about_h.expand(2, 3), angles)
    torch.testing.assert_close(kernel_slice(weight, 1, angles), expected)
    torch.testing.assert_close(kernel_slice(weight, [0, 1, 0], angles), expected)
    torch.testing.assert_close(kernel_slice(weight, about_h[0], angles), expected)
    one = kernel_slice(weight, torch.randn(3, 3, dtype=torch.float64), torch.tensor(0.0, dtype=torch.float64))
    torch.testing.assert_close(one, weight[:, :, 1].expand(3, -1, -1, -1, -1), rtol=0, atol=1e-12)
    assert kernel_slice(weight, 0, 0).shape == (1, 2, 2, 3, 3)


@pytest.mark.parametrize(
    "axis,angle,error,message",
    [
        (0.5, 0.0, TypeError, "axis must be a tensor"),
        (3, 0.0, ValueError, "kernel axis 0, 1 or 2"),
        ([1.0, 0.0], 0.0, TypeError, "axis must be a tensor"),
        (0, "0", TypeError, "angle must be a number"),
        (torch.randn(2, 3), torch.zeros(3), ValueError, "angle must have shape"),
        (torch.randn(2, 3), torch.zeros(2, 1), ValueError, "angle must be a number or have shape"),
    ],
)
def test_bad_axis_or_angle(axis, angle, error, message):
    with pytest.raises(error, match=message):
        kernel_slice(torch.randn(1, 1, 3, 3, 3), axis, angle)


@pytest.mark.parametrize("k", [3, 5])
def test_project_reaches_every_voxel_equally(k):
    """Each voxel's column of the project operator has unit norm at any rotation (Parseval for the periodic sinc),
    so a 2D loss sends every voxel the same share of its gradient energy; the central slice does not."""
    axis, angle = torch.randn(8, 3, dtype=torch.float64), torch.rand(8, dtype=torch.float64) * math.pi
    op = slice_operator(axis, angle, k, "project")
    torch.testing.assert_close(op.square().sum(1), torch.ones(8, k**3, dtype=torch.float64), rtol=0, atol=1e-12)
    central = slice_operator(axis, torch.zeros(8, dtype=torch.float64), k, "rotate").square().sum(1)
    assert central.min() < 1e-20 and central.max() == pytest.approx(1.0)


def test_slice_operator_names_what_it_needs():
    with pytest.raises(TypeError, match="axis and angle must be tensors"):
        slice_operator(0, 0.1, 3, "rotate")
    with pytest.raises(ValueError, match=r"axis must have shape \(B, 3\) and angle \(B,\)"):
        slice_operator(torch.randn(2, 3), torch.zeros(3), 3, "project")
