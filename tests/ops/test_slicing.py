"""The kernel slice against the slow FFT oracle (tests/reference.py), and its exact special cases.

Tolerances: float64 results agree with the oracle to 1e-10 absolute (observed ~1e-14); float32 to 1e-5 relative.
"""

import math

import pytest
import torch

from crossd.ops import kernel_slice, slice_operator
from crossd.ops.rotation import first_order_rotation, rodrigues_rotation
from reference import fft_slice

CASES = [("shift", k) for k in (1, 2, 3, 4, 5, 7)] + [("rotate", k) for k in (1, 3, 5, 7)]


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


@pytest.mark.parametrize("mode,k", [("shift", 3), ("rotate", 3), ("rotate", 7)])
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


@pytest.mark.parametrize("mode,k", [("shift", 3), ("shift", 2), ("rotate", 3), ("rotate", 5)])
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
        ({"mode": "spin", "k": 3}, "unknown Cross-D mode"),
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
