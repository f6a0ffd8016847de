"""Kernel initialisers: 3D kernels built from 2D ones, and the 2D kernel a Cross-D layer uses at angle 0.

All functions take and return plain tensors: 2D kernels ``(Co, Ci, K, K)``, 3D kernels ``(Co, Ci, K, K, K)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from crossd.nn.acs_conv import acs_split
from crossd.nn.crossd_conv import CrossDConv

KernelFn = Callable[[Tensor, Sequence[int]], "Tensor | None"]
"""How an init places a 2D kernel in a 3D one: ``(2D kernel (Co, Ci, Kh, Kw), 3D kernel shape (Co, Ci, Kd, Kh,
Kw)) -> 3D kernel``, or ``None`` when it cannot make a kernel of that shape (:mod:`crossd.convert.inits`)."""


def center_kernel(kernel2d: Tensor, depth: int | None = None) -> Tensor:
    """The 2D kernel in the central depth slice, zeros elsewhere: ``(Co, Ci, K, K) -> (Co, Ci, Kd, K, K)``."""
    depth = kernel2d.shape[-2] if depth is None else depth
    out = kernel2d.new_zeros(*kernel2d.shape[:2], depth, *kernel2d.shape[2:])
    out[:, :, depth // 2] = kernel2d
    return out


def inflate_kernel(kernel2d: Tensor, depth: int | None = None) -> Tensor:
    """I3D inflation: the 2D kernel repeated over depth and divided by it, so constant-in-depth inputs
    give the 2D response: ``(Co, Ci, K, K) -> (Co, Ci, Kd, K, K)``."""
    depth = kernel2d.shape[-2] if depth is None else depth
    return kernel2d.unsqueeze(2).repeat(1, 1, depth, 1, 1) / depth


def acs_kernel(kernel2d: Tensor) -> Tensor:
    """ACS as one 3D kernel: output channels split over the three views as :func:`crossd.nn.acs_conv.acs_split`
    (axial, coronal, sagittal), each channel's 2D kernel in the central plane of its view, zeros elsewhere:
    ``(Co, Ci, K, K) -> (Co, Ci, K, K, K)``. With padding ``dilation * (K - 1) / 2`` a ``Conv3d`` with it equals
    ``ACSConv3d``; unlike it, it serves grouped convolutions too."""
    k = kernel2d.shape[-1]
    out = kernel2d.new_zeros(*kernel2d.shape[:2], k, k, k)
    start = 0
    for view, n in enumerate(acs_split(kernel2d.shape[0])):
        index = [slice(start, start + n), slice(None), slice(None), slice(None), slice(None)]
        index[2 + view] = k // 2
        out[tuple(index)] = kernel2d[start : start + n]
        start += n
    return out


def shift_align(kernel3d: Tensor) -> Tensor:
    """``roll(W, (1, 1, 1))``: a ``shift``-mode kernel moved so its central slice is the one used at angle 0."""
    return torch.roll(kernel3d, shifts=(1, 1, 1), dims=(-3, -2, -1))


def shift_unalign(kernel3d: Tensor) -> Tensor:
    """Inverse of :func:`shift_align`."""
    return torch.roll(kernel3d, shifts=(-1, -1, -1), dims=(-3, -2, -1))


def planar_kernel(conv: CrossDConv) -> Tensor:
    """The 2D kernel ``(Co, Ci/groups, K, K)`` that a Cross-D layer convolves with at angle 0.

    ``rotate``: the central depth slice ``W[:, :, c]``; ``shift``: ``roll(W, (1, 1, 1))[:, :, c]``;
    ``project``: the depth sum ``W.sum(2)``.
    """
    weight = conv.weight.detach()
    if conv.mode == "project":
        return weight.sum(2)
    if conv.mode == "shift":
        weight = shift_align(weight)
    return weight[:, :, weight.shape[2] // 2].clone()


def flat_kernel(kernel2d: Tensor, axis: str = "d") -> Tensor:
    """2.5D: the 2D kernel as a 3D kernel of size 1 along ``axis``, its two axes on the other two:
    ``(Co, Ci, Kh, Kw) -> (Co, Ci, 1, Kh, Kw)`` for ``"d"``, ``(Co, Ci, Kh, 1, Kw)`` for ``"h"``,
    ``(Co, Ci, Kh, Kw, 1)`` for ``"w"``."""
    return kernel2d.unsqueeze(2 + "dhw".index(axis))


def crossd_kernel_from_2d(kernel2d: Tensor, kernel: KernelFn, mode: str) -> Tensor | None:
    """A Cross-D 3D kernel ``(Co, Ci, K, K, K)`` whose angle-0 slice relates to a given 2D kernel as ``kernel``
    places it in a 3D one (e.g. :func:`center_kernel`: angle 0 reproduces ``kernel2d`` exactly, in every mode,
    zeros off the plane; :func:`inflate_kernel`: ``kernel2d / K`` in every depth slice), placed for ``mode``;
    ``None`` when ``kernel`` makes no cubic kernel."""
    k = kernel2d.shape[-2]
    kernel3d = kernel(kernel2d, (*kernel2d.shape[:2], k, k, k))
    return shift_unalign(kernel3d) if mode == "shift" and kernel3d is not None else kernel3d
