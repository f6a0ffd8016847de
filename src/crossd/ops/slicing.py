"""The Cross-D kernel slice: a per-sample linear map from a 3D kernel to a 2D kernel.

Both modes sample a trigonometric interpolant of the 3D kernel ``W (Co, Ci, K, K, K)`` at ``K x K`` points
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
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from crossd.ops.rotation import first_order_rotation, normalize_axis, rodrigues_rotation

MODES = ("shift", "rotate")


def check_mode(mode: str, kernel_size: int) -> None:
    """Raise ``ValueError`` for an unknown mode, or a kernel size that the mode does not support."""
    if mode not in MODES:
        raise ValueError(f"unknown Cross-D mode {mode!r}; expected one of {MODES}")
    if kernel_size < 1:
        raise ValueError(f"kernel size must be positive, got {kernel_size}")
    if mode == "rotate" and kernel_size % 2 == 0:
        raise ValueError(
            f"mode 'rotate' needs an odd kernel size (a centre voxel to rotate about), got {kernel_size}; "
            "use mode='shift' for even kernels"
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


def sample_points(
    axis: Tensor, angle: Tensor, kernel_size: int, mode: str, base_rotation: Tensor | None = None
) -> Tensor:
    """Voxel coordinates ``(B, K, K, 3)`` at which the 2D kernel samples the 3D one.

    Args:
        axis: rotation axes ``(B, 3)`` in ``(d, h, w)`` order; normalised here.
        angle: rotation angles ``(B,)`` in radians.
        kernel_size: ``K``.
        mode: ``"shift"`` or ``"rotate"``.
        base_rotation: optional rotations ``(B, 3, 3)`` applied to the plane before the axis-angle one
            (``rotate`` only): the plane is ``R(axis, angle) @ base_rotation @ (0, y - c, x - c)``.
    """
    check_mode(mode, kernel_size)
    c = kernel_size // 2
    y, x = _plane_grid(kernel_size, axis.dtype, axis.device)
    if mode == "rotate":
        # an exactly unit axis, so that R is exactly orthogonal (the published k / (|k| + 1e-8) is not quite unit)
        plane = torch.stack((torch.zeros_like(y), y - c, x - c), dim=-1)  # (K, K, 3)
        rot = rodrigues_rotation(F.normalize(axis, dim=-1, eps=1e-12), angle)  # (B, 3, 3)
        if base_rotation is not None:
            rot = rot @ base_rotation.to(rot.dtype)
        return torch.einsum("bij,yxj->byxi", rot, plane) + c
    if base_rotation is not None:
        raise ValueError(
            "base_rotation needs mode 'rotate' (mode 'shift' translates the kernel, it does not rotate it)"
        )
    shift = first_order_rotation(normalize_axis(axis), angle).transpose(1, 2).sum(-1)  # R^T (1, 1, 1): (B, 3)
    grid = torch.stack((torch.full_like(y, c), y, x), dim=-1)  # (K, K, 3)
    return grid - shift[:, None, None, :]


def slice_operator(
    axis: Tensor, angle: Tensor, kernel_size: int, mode: str, base_rotation: Tensor | None = None
) -> Tensor:
    """The per-sample linear map ``M (B, K*K, K*K*K)`` with ``W2 = W.flatten(2) @ M^T``.

    Rows index the 2D kernel taps ``(y, x)`` row-major, columns the 3D voxels ``(d, h, w)`` row-major.
    ``base_rotation`` as in :func:`sample_points`.
    """
    q = sample_points(axis, angle, kernel_size, mode, base_rotation)  # (B, K, K, 3)
    n = torch.arange(kernel_size, dtype=q.dtype, device=q.device)
    weights = periodic_sinc(q[..., None] - n, kernel_size)  # (B, K, K, 3, K)
    wd, wh, ww = weights.unbind(-2)
    op = torch.einsum("byxd,byxh,byxw->byxdhw", wd, wh, ww)
    if op.is_complex():
        op = op.real
    batch = q.shape[0]
    return op.reshape(batch, kernel_size**2, kernel_size**3)


def kernel_slice(weight: Tensor, axis: Tensor, angle: Tensor, mode: str = "rotate") -> Tensor:
    """Per-sample 2D kernels cut from a 3D kernel by the Cross-D operator.

    Args:
        weight: 3D kernel ``(Co, Ci, K, K, K)``.
        axis: rotation axes ``(B, 3)`` in ``(d, h, w)`` order (normalised inside).
        angle: rotation angles ``(B,)`` in radians.
        mode: ``"rotate"`` (true rotation, central-plane slice) or ``"shift"`` (the published formula).

    Returns:
        2D kernels ``(B, Co, Ci, K, K)``. Differentiable in ``weight``, ``axis`` and ``angle``.
    """
    if weight.dim() != 5 or not (weight.shape[2] == weight.shape[3] == weight.shape[4]):
        raise ValueError(f"weight must be a cubic 3D kernel (Co, Ci, K, K, K), got shape {tuple(weight.shape)}")
    if axis.dim() != 2 or axis.shape[1] != 3:
        raise ValueError(f"axis must have shape (B, 3), got {tuple(axis.shape)}")
    if angle.shape != axis.shape[:1]:
        raise ValueError(f"angle must have shape ({axis.shape[0]},) to match axis, got {tuple(angle.shape)}")
    op = slice_operator(axis.to(weight.dtype), angle.to(weight.dtype), weight.shape[-1], mode)  # (B, K^2, K^3)
    return apply_slice_operator(weight, op)


def apply_slice_operator(weight: Tensor, op: Tensor) -> Tensor:
    """2D kernels ``(B, Co, Ci, K, K)`` from ``weight (Co, Ci, K, K, K)`` and operators ``op (B, K^2, K^3)``."""
    co, ci, k = weight.shape[:3]
    out = torch.einsum("pn,bkn->bpk", weight.reshape(co * ci, k**3), op.to(weight.dtype))
    return out.reshape(-1, co, ci, k, k)
