"""Rotation maths of the Cross-D modes: axis-angle rotations and the plane samplers.

Axes are ordered ``(d, h, w)``, the last three dimensions of a 3D kernel ``(Co, Ci, K, K, K)``.
"""

from __future__ import annotations

import itertools
import math

import torch
from torch import Tensor

MAX_ANGLE = math.pi / 4
"""The rotation head maps its angle logit through ``tanh`` into ``[-MAX_ANGLE, MAX_ANGLE]``."""


def normalize_axis(axis: Tensor, eps: float = 1e-8) -> Tensor:
    """Unit rotation axes ``(B, 3)`` from raw axes ``(B, 3)``: ``k = a / (|a| + eps)`` (the published rule)."""
    return axis / (axis.norm(dim=-1, keepdim=True) + eps)


def skew(axis: Tensor) -> Tensor:
    """Cross-product matrices ``[k]x`` ``(B, 3, 3)`` of vectors ``(B, 3)``, so that ``[k]x v = k x v``."""
    k0, k1, k2 = axis.unbind(-1)
    zero = torch.zeros_like(k0)
    rows = (
        torch.stack((zero, -k2, k1), dim=-1),
        torch.stack((k2, zero, -k0), dim=-1),
        torch.stack((-k1, k0, zero), dim=-1),
    )
    return torch.stack(rows, dim=-2)


def first_order_rotation(axis: Tensor, angle: Tensor) -> Tensor:
    """The published layer's ``R = I + angle [k]x`` ``(B, 3, 3)`` (not orthogonal); ``axis`` unit ``(B, 3)``."""
    eye = torch.eye(3, dtype=axis.dtype, device=axis.device)
    return eye + angle[:, None, None] * skew(axis)


def rodrigues_rotation(axis: Tensor, angle: Tensor) -> Tensor:
    """The exact rotation ``R = exp(angle [k]x)`` ``(B, 3, 3)`` by Rodrigues' formula; ``axis`` unit ``(B, 3)``."""
    eye = torch.eye(3, dtype=axis.dtype, device=axis.device)
    k = skew(axis)
    sin = torch.sin(angle)[:, None, None]
    cos = torch.cos(angle)[:, None, None]
    return eye + sin * k + (1.0 - cos) * (k @ k)


def head_to_axis_angle(v: Tensor) -> tuple[Tensor, Tensor]:
    """Split pooled head outputs ``(B, 4)`` into axes ``(B, 3)`` and angles ``(B,)`` in radians.

    The axis is returned as predicted, ``v[:, :3]``: the slice operator normalises it exactly once with the
    published rule ``k = a / (|a| + 1e-8)`` (normalising twice would move results by ~1e-8). The angle is
    ``tanh(v[:, 3]) * pi / 4``, as in the published layer.
    """
    return v[:, :3], torch.tanh(v[:, 3]) * MAX_ANGLE


def random_rotation(batch: int, dtype: torch.dtype = torch.float32, device=None, generator=None) -> Tensor:
    """Rotations ``(B, 3, 3)`` drawn uniformly from SO(3) (normalised Gaussian quaternions)."""
    q = torch.randn(batch, 4, dtype=dtype, device=device, generator=generator)
    w, x, y, z = torch.nn.functional.normalize(q, dim=-1).unbind(-1)
    rows = (
        torch.stack((1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)), dim=-1),
        torch.stack((2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)), dim=-1),
        torch.stack((2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)), dim=-1),
    )
    return torch.stack(rows, dim=-2)


def grid_rotations(dtype: torch.dtype = torch.float32, device=None) -> Tensor:
    """The 24 proper rotations of the cube ``(24, 3, 3)``: signed permutation matrices with determinant +1.

    Column 0 of each (the plane's normal, where the plane is spanned by columns 1 and 2) is one of the six grid
    directions ``+-d, +-h, +-w``: the three anatomical views (axial, coronal, sagittal; see docs/conventions.md),
    each seen from both sides, and for each of the six the four in-plane quarter turns. Ordered by normal
    ``+d, -d, +h, -h, +w, -w``.
    """
    mats = []
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((1.0, -1.0), repeat=3):
            m = torch.zeros(3, 3, dtype=torch.float64)
            m[list(perm), [0, 1, 2]] = torch.tensor(signs, dtype=torch.float64)
            if torch.linalg.det(m) > 0:
                mats.append(m)
    normal_order = [(0, 1.0), (0, -1.0), (1, 1.0), (1, -1.0), (2, 1.0), (2, -1.0)]
    mats.sort(key=lambda m: normal_order.index((int(m[:, 0].abs().argmax()), float(m[:, 0].sum()))))
    return torch.stack(mats).to(dtype=dtype, device=device)


def random_grid_rotation(batch: int, dtype: torch.dtype = torch.float32, device=None, generator=None) -> Tensor:
    """Rotations ``(B, 3, 3)`` drawn uniformly from the 24 of :func:`grid_rotations`."""
    pick = torch.randint(24, (batch,), generator=generator)  # on the CPU, like the generator
    return grid_rotations(dtype)[pick].to(device)


PLANE_SAMPLERS = {"random": random_rotation, "grid": random_grid_rotation}
"""Plane samplers by name (``plane_sampling`` of :class:`crossd.nn.CrossDConv`): ``sampler(batch, dtype, device)``
returns rotations ``(B, 3, 3)`` that turn the plane before the head's axis-angle rotation."""
