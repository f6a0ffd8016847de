"""The Cross-D kernel slice: a per-sample linear map from a 3D kernel to a 2D kernel.

``rotate`` and ``shift`` sample a trigonometric interpolant of the 3D kernel ``W (Co, Ci, K, K, K)`` at ``K x K`` points
``q (B, K, K, 3)`` given in voxel coordinates ``(d, h, w)``::

    W2[b, :, :, y, x] = sum_n W[:, :, n] * prod_a D_K(q[b, y, x, a] - n_a)

with the periodic sinc ``D_K(t) = (1/K) sum_{f in fftfreq(K)} exp(2 pi i f t)``. The modes only differ in the
sample points (see ``shared/design/operator.md``):

- ``rotate``: the plane through the kernel centre spanned by the rotated in-plane axes,
  ``q = R (0, y - c, x - c) + c`` with ``R = exp(angle [k]x)``.
- ``shift`` (the published formula): the phase ramp ``exp(-2 pi i (R f) . 1)`` is a circular translation by
  ``s = R^T (1, 1, 1)``, ``R = I + angle [k]x``, followed by the middle depth slice: ``q = (c, y, x) - s``.

For odd ``K`` the interpolant is real. For even ``K`` (``shift`` only) the published layer keeps the real part of
a complex result; since ``W`` is real that is the real part of the product of the three complex factors.

``project`` (Fourier slice) uses the same rotation as ``rotate`` and returns the kernel's **projection** along the
rotated normal ``R[:, 0]``: the central plane (spanned by ``e1, e2 = R[:, 1], R[:, 2]``) of the spectrum's
trigonometric interpolant ``What(xi) = sum_n W[n] exp(-2 pi i xi . (n - c) / K)``, sampled at the ``K x K`` 2D
frequencies ``u e1 + v e2`` and inverted by a 2D DFT. The product of exponentials factorises, so::

    W2[b, :, :, y, x] = sum_n W[:, :, n] * D_K(y - c - e1 . (n - c)) * D_K(x - c - e2 . (n - c))

every voxel is deposited at its projected in-plane position with the 2D periodic sinc. At ``R = I`` this is
``W.sum(depth)``; at the 24 rotations of the cube grid it is the sum along the grid axis the normal lies on.
The scale is the **sum** (not the mean): an I3D-inflated kernel ``repeat(w2) / K`` projects back to ``w2``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from crossd.errors import SettingsError
from crossd.ops.rotation import first_order_rotation, normalize_axis, rodrigues_rotation

MODES = ("shift", "rotate", "project")
ROTATING_MODES = ("rotate", "project")
"""Modes that turn the plane by an exact rotation (and so accept ``base_rotation`` and plane sampling)."""


def check_mode(mode: str, kernel_size: int) -> None:
    """Raise :class:`~crossd.errors.SettingsError` for an unknown mode, or a kernel size that the mode does not
    support."""
    if mode not in MODES:
        raise SettingsError(f"must be one of {MODES}, got {mode!r}", field="mode")
    if kernel_size < 1:
        raise SettingsError(f"must be positive, got {kernel_size}", field="kernel_size")
    if mode in ROTATING_MODES and kernel_size % 2 == 0:
        raise SettingsError(
            f"{mode!r} needs an odd kernel size (a centre voxel to rotate about), got {kernel_size}; "
            "use mode 'shift' for even kernels",
            field="mode",
        )


def periodic_sinc(t: Tensor, kernel_size: int) -> Tensor:
    """``D_K(t) = (1/K) sum_f exp(2 pi i f t)`` over ``f = fftfreq(K)``; real for odd ``K``, complex for even.

    ``D_K`` is ``K``-periodic and ``D_K(j) = 1`` if ``j = 0 (mod K)`` else ``0`` for integer ``j``.
    """
    freqs = torch.fft.fftfreq(kernel_size, dtype=t.dtype, device=t.device)
    phase = 2 * math.pi * t[..., None] * freqs
    if kernel_size % 2:
        return torch.cos(phase).mean(-1)
    return torch.complex(torch.cos(phase), torch.sin(phase)).mean(-1)


def _plane_grid(kernel_size: int, dtype: torch.dtype, device: torch.device) -> tuple[Tensor, Tensor]:
    """In-plane voxel indices ``(K, K)`` for rows ``y`` and columns ``x``."""
    idx = torch.arange(kernel_size, dtype=dtype, device=device)
    return torch.meshgrid(idx, idx, indexing="ij")


def _check_axis_angle(axis: Tensor, angle: Tensor) -> None:
    """``TypeError``/``ValueError`` unless ``axis (B, 3)`` and ``angle (B,)`` are tensors of matching batch."""
    if not isinstance(axis, Tensor) or not isinstance(angle, Tensor):
        raise TypeError(
            "axis and angle must be tensors (B, 3) and (B,) here; kernel_slice also takes an axis index and a number"
        )
    if axis.dim() != 2 or axis.shape[1] != 3 or angle.shape != axis.shape[:1]:
        raise ValueError(
            f"axis must have shape (B, 3) and angle (B,), got {tuple(axis.shape)} and {tuple(angle.shape)}"
        )


def plane_rotation(axis: Tensor, angle: Tensor, base_rotation: Tensor | None = None) -> Tensor:
    """The exact rotations ``(B, 3, 3)`` of the ``rotate`` and ``project`` modes: ``R(axis, angle) @ base``.

    The axis is normalised exactly (``F.normalize``) so that ``R`` is orthogonal to rounding; ``base_rotation``
    ``(B, 3, 3)`` or ``(1, 3, 3)`` (optional) turns the plane before the axis-angle rotation.
    """
    rot = rodrigues_rotation(F.normalize(axis, dim=-1, eps=1e-12), angle)  # (B, 3, 3)
    return rot if base_rotation is None else rot @ base_rotation.to(rot.dtype)


def sample_points(
    axis: Tensor, angle: Tensor, kernel_size: int, mode: str, base_rotation: Tensor | None = None
) -> Tensor:
    """Voxel coordinates ``(B, K, K, 3)`` at which the 2D kernel samples the 3D one (``rotate``, ``shift``).

    Args:
        axis: rotation axes ``(B, 3)`` in ``(d, h, w)`` order; normalised here.
        angle: rotation angles ``(B,)`` in radians.
        kernel_size: ``K``.
        mode: ``"shift"`` or ``"rotate"`` (``"project"`` sums along a line per tap and has no sample points).
        base_rotation: optional rotations ``(B, 3, 3)`` applied to the plane before the axis-angle one
            (``rotate`` only): the plane is ``R(axis, angle) @ base_rotation @ (0, y - c, x - c)``.
    """
    check_mode(mode, kernel_size)
    _check_axis_angle(axis, angle)
    if mode == "project":
        raise ValueError("mode 'project' has no sample points (each tap sums a line); use slice_operator")
    c = kernel_size // 2
    y, x = _plane_grid(kernel_size, axis.dtype, axis.device)
    if mode == "rotate":
        plane = torch.stack((torch.zeros_like(y), y - c, x - c), dim=-1)  # (K, K, 3)
        return torch.einsum("bij,yxj->byxi", plane_rotation(axis, angle, base_rotation), plane) + c
    if base_rotation is not None:
        raise ValueError(
            "base_rotation needs mode 'rotate' or 'project' (mode 'shift' translates the kernel, it does not rotate it)"
        )
    shift = first_order_rotation(normalize_axis(axis), angle).transpose(1, 2).sum(-1)  # R^T (1, 1, 1): (B, 3)
    grid = torch.stack((torch.full_like(y, c), y, x), dim=-1)  # (K, K, 3)
    return grid - shift[:, None, None, :]


def projection_operator(rotation: Tensor, kernel_size: int) -> Tensor:
    """The ``project`` map ``M (B, K*K, K*K*K)`` for rotations ``(B, 3, 3)`` (odd ``K``): voxel ``n`` deposits
    ``D_K(y - c - e1 . (n - c)) D_K(x - c - e2 . (n - c))`` on tap ``(y, x)``, ``e1, e2 = R[:, 1], R[:, 2]``."""
    k, c = kernel_size, kernel_size // 2
    idx = torch.arange(k, dtype=rotation.dtype, device=rotation.device) - c
    voxels = torch.stack(torch.meshgrid(idx, idx, idx, indexing="ij"), dim=-1).reshape(k**3, 3)  # (K^3, 3)
    projected = voxels @ rotation[:, :, 1:]  # (B, K^3, 2): in-plane coordinates of every voxel
    weights = periodic_sinc(idx[:, None] - projected[:, None].movedim(-1, 0), k)  # (2, B, K, K^3)
    return torch.einsum("bym,bxm->byxm", weights[0], weights[1]).reshape(-1, k * k, k**3)


def slice_operator(
    axis: Tensor, angle: Tensor, kernel_size: int, mode: str, base_rotation: Tensor | None = None
) -> Tensor:
    """The per-sample linear map ``M (B, K*K, K*K*K)`` with ``W2 = W.flatten(2) @ M^T``.

    Rows index the 2D kernel taps ``(y, x)`` row-major, columns the 3D voxels ``(d, h, w)`` row-major.
    ``base_rotation`` as in :func:`plane_rotation` (``rotate`` and ``project`` only).
    """
    check_mode(mode, kernel_size)
    _check_axis_angle(axis, angle)
    if mode == "project":
        return projection_operator(plane_rotation(axis, angle, base_rotation), kernel_size)
    q = sample_points(axis, angle, kernel_size, mode, base_rotation)  # (B, K, K, 3)
    n = torch.arange(kernel_size, dtype=q.dtype, device=q.device)
    weights = periodic_sinc(q[..., None] - n, kernel_size)  # (B, K, K, 3, K)
    wd, wh, ww = weights.unbind(-2)
    op = torch.einsum("byxd,byxh,byxw->byxdhw", wd, wh, ww)
    if op.is_complex():
        op = op.real
    batch = q.shape[0]
    return op.reshape(batch, kernel_size**2, kernel_size**3)


AXIS_NAMES = ("d", "h", "w")


def as_axes(axis: Tensor | int | Sequence[float], dtype: torch.dtype, device: torch.device) -> Tensor:
    """Rotation axes ``(B, 3)`` from a tensor ``(B, 3)`` or ``(3,)``, a sequence of 3 numbers, or a kernel axis
    index ``0, 1, 2`` (``d, h, w``: a rotation about that grid axis)."""
    if isinstance(axis, int) and not isinstance(axis, bool):
        if axis not in (0, 1, 2):
            raise ValueError(f"an integer axis names a kernel axis 0, 1 or 2 {AXIS_NAMES}, got {axis}")
        return F.one_hot(torch.tensor([axis], device=device), 3).to(dtype)
    if not isinstance(axis, Tensor):
        if not isinstance(axis, Sequence) or len(axis) != 3 or not all(isinstance(a, (int, float)) for a in axis):
            raise TypeError(
                "axis must be a tensor (B, 3) or (3,), three numbers, or a kernel axis index 0, 1 or 2, "
                f"got {type(axis).__name__} {axis!r}"
            )
        axis = torch.tensor([list(axis)], dtype=dtype, device=device)
    if axis.dim() == 1:
        axis = axis[None]
    if axis.dim() != 2 or axis.shape[1] != 3:
        raise ValueError(f"axis must have shape (B, 3) or (3,), got {tuple(axis.shape)}")
    return axis.to(dtype)


def as_angles(angle: Tensor | float, dtype: torch.dtype, device: torch.device) -> Tensor:
    """Angles ``(B,)`` in radians from a tensor ``(B,)`` or ``()``, or a number."""
    if isinstance(angle, bool) or not isinstance(angle, (Tensor, int, float)):
        raise TypeError(f"angle must be a number or a tensor (B,) in radians, got {type(angle).__name__}")
    angle = angle.to(dtype) if isinstance(angle, Tensor) else torch.tensor(float(angle), dtype=dtype, device=device)
    if angle.dim() > 1:
        raise ValueError(f"angle must be a number or have shape (B,), got {tuple(angle.shape)}")
    return angle.reshape(-1)


def kernel_slice(
    weight: Tensor, axis: Tensor | int | Sequence[float], angle: Tensor | float, mode: str = "rotate"
) -> Tensor:
    """Per-sample 2D kernels cut from a 3D kernel by the Cross-D operator.

    Args:
        weight: 3D kernel ``(Co, Ci, K, K, K)``.
        axis: rotation axes ``(B, 3)`` in ``(d, h, w)`` order (normalised inside); also one axis ``(3,)`` or
            three numbers, or ``0``, ``1``, ``2`` for a rotation about the kernel's ``d``, ``h`` or ``w`` axis.
        angle: rotation angles ``(B,)`` in radians, or one angle (a number or a 0-dim tensor).
            A single axis or angle is shared by every sample of the other.
        mode: ``"rotate"`` (true rotation, central-plane slice), ``"project"`` (true rotation, sum along the
            rotated normal by the Fourier slice theorem; ``W.sum(depth)`` at angle 0) or ``"shift"`` (the
            published formula).

    Returns:
        2D kernels ``(B, Co, Ci, K, K)``. Differentiable in ``weight``, ``axis`` and ``angle``.
    """
    if (
        not isinstance(weight, Tensor)
        or weight.dim() != 5
        or not (weight.shape[2] == weight.shape[3] == weight.shape[4])
    ):
        shape = tuple(weight.shape) if isinstance(weight, Tensor) else type(weight).__name__
        raise ValueError(f"weight must be a cubic 3D kernel tensor (Co, Ci, K, K, K), got {shape}")
    axis = as_axes(axis, weight.dtype, weight.device)
    angle = as_angles(angle, weight.dtype, weight.device)
    batch = max(axis.shape[0], angle.shape[0])
    if axis.shape[0] not in (1, batch) or angle.shape[0] not in (1, batch):
        raise ValueError(
            f"angle must have shape ({axis.shape[0]},) or be a scalar to match axis {tuple(axis.shape)}, "
            f"got {tuple(angle.shape)}"
        )
    op = slice_operator(axis.expand(batch, 3), angle.expand(batch), weight.shape[-1], mode)  # (B, K^2, K^3)
    return apply_slice_operator(weight, op).contiguous()


def apply_slice_operator(weight: Tensor, op: Tensor) -> Tensor:
    """2D kernels ``(B, Co, Ci, K, K)`` from ``weight (Co, Ci, K, K, K)`` and operators ``op (B, K^2, K^3)``.

    One GEMM ``(Co Ci, K^3) @ (K^3, B K^2)``: it reads the 3D kernel once for all ``B`` operators (a batched
    product reads it once per operator, and took twice as long for one operator at ResNet-18's 256 and 512
    channels). The result is a view ``(B, Co, Ci, K, K)`` of that ``(Co, Ci, B, K, K)`` product.
    """
    co, ci, k = weight.shape[:3]
    b = op.shape[0]
    out = weight.reshape(co * ci, k**3) @ op.to(weight.dtype).reshape(b * k * k, k**3).t()
    return out.reshape(co, ci, b, k, k).permute(2, 0, 1, 3, 4)
