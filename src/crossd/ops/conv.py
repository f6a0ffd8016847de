"""Cross-D 2D convolution: per-sample sliced kernels, computed by one of two exact formulations.

For per-sample slice operators ``M (B, K^2, K^3)`` (``crossd.ops.slicing.slice_operator``) the output is
``conv2d(x[b], W.flatten(2) @ M[b]^T)``. Two ways compute it, with identical results up to rounding:

- ``"weight"``: build the per-sample 2D kernels and run one grouped convolution over the whole batch. Cheap
  when images are large and channels few. A custom autograd function recomputes the kernels in backward
  instead of storing ``(B, Co, Ci, K, K)`` per layer.
- ``"input"``: unfold the input, mix its ``K^2`` taps into ``K^3`` per sample with ``M``, then one shared GEMM
  against ``W`` reshaped to ``(Co, Ci*K^3)``. Cheap when channels are many and images small.

``path="auto"`` picks by the cost model in :func:`choose_path`. A single operator (``M`` of batch 1) means one
rotation for the whole batch and runs a plain ``conv2d``.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

Path = Literal["auto", "weight", "input"]
PATHS = ("auto", "weight", "input")

# Relative cost of one multiply-add in each path's kernels on CPU (grouped/batched convolutions run far below
# the peak of one large GEMM). Calibrated with ``benchmarks/bench_ops.py``; see benchmarks/RESULTS.md.
WEIGHT_PATH_EFFICIENCY = 1.0
INPUT_PATH_EFFICIENCY = 1.0


def _pair(value: int | tuple[int, ...]) -> tuple[int, int]:
    """The in-plane ``(h, w)`` entries of a per-axis hyper-parameter given as int, ``(h, w)`` or ``(d, h, w)``."""
    if isinstance(value, int):
        return (value, value)
    return (value[-2], value[-1])


def same_padding(kernel_size: int, dilation: int) -> tuple[int, int]:
    """Left and right padding that keep the size at stride 1 (the extra pixel goes right, as in PyTorch)."""
    total = dilation * (kernel_size - 1)
    return total // 2, total - total // 2


def resolve_padding(
    x: Tensor, kernel_size: int, padding: str | int | tuple[int, ...], dilation: tuple[int, int], stride
) -> tuple[Tensor, tuple[int, int]]:
    """Turn ``padding`` into symmetric ``(ph, pw)``, padding ``x`` explicitly where "same" is asymmetric."""
    if padding == "valid":
        return x, (0, 0)
    if padding != "same":
        return x, _pair(padding)
    if _pair(stride) != (1, 1):
        raise ValueError("padding='same' is only supported with stride 1")
    (top, bottom), (left, right) = (same_padding(kernel_size, d) for d in dilation)
    if top == bottom and left == right:
        return x, (top, left)
    return F.pad(x, (left, right, top, bottom)), (0, 0)


def choose_path(
    batch: int, in_channels: int, out_channels: int, groups: int, kernel_size: int, out_pixels: int
) -> Literal["weight", "input"]:
    """Pick the cheaper exact formulation by counting multiply-adds of each (forward pass).

    weight side: ``B Co Ci/g K^2 K^3`` to build kernels + ``B Co Ci/g K^2 L`` to convolve;
    input side: ``B Ci K^2 K^3 L`` to mix taps + ``B Co Ci/g K^3 L`` for the shared GEMM.
    """
    k2, k3 = kernel_size**2, kernel_size**3
    cig = in_channels // groups
    weight_cost = batch * out_channels * cig * k2 * (k3 + out_pixels) / WEIGHT_PATH_EFFICIENCY
    input_cost = batch * k3 * out_pixels * (in_channels * k2 + out_channels * cig) / INPUT_PATH_EFFICIENCY
    return "weight" if weight_cost <= input_cost else "input"


def _sliced_kernels(weight: Tensor, op: Tensor) -> Tensor:
    """``(B, Co, Ci/g, K, K)`` kernels from ``weight (Co, Ci/g, K, K, K)`` and ``op (B, K^2, K^3)``."""
    co, cig, k = weight.shape[:3]
    flat = weight.reshape(co * cig, k**3)
    return torch.einsum("pn,bkn->bpk", flat, op).reshape(-1, co, cig, k, k)


def _autocast_dtype(x: Tensor) -> torch.dtype | None:
    device = x.device.type
    if torch.is_autocast_enabled(device):
        return torch.get_autocast_dtype(device)
    return None


class _WeightSideConv(torch.autograd.Function):
    """Grouped convolution with per-sample kernels that are rebuilt in backward, never stored."""

    @staticmethod
    def forward(ctx, x, weight, op, stride, padding, dilation, groups):  # noqa: D102
        compute = _autocast_dtype(x) or x.dtype
        with torch.autocast(x.device.type, enabled=False):
            out = _weight_side_forward(
                x.to(compute), weight.to(compute), op.to(compute), stride, padding, dilation, groups
            )
        ctx.save_for_backward(x, weight, op)
        ctx.conf = (stride, padding, dilation, groups, compute)
        return out

    @staticmethod
    def backward(ctx, grad_out):  # noqa: D102
        x, weight, op = ctx.saved_tensors
        stride, padding, dilation, groups, compute = ctx.conf
        b, ci = x.shape[:2]
        co, cig, k = weight.shape[:3]
        with torch.autocast(x.device.type, enabled=False):
            kernels = _sliced_kernels(weight.to(compute), op.to(compute))
            grad_x, grad_k, _ = torch.ops.aten.convolution_backward(
                grad_out.to(compute).reshape(1, b * co, *grad_out.shape[2:]),
                x.to(compute).reshape(1, b * ci, *x.shape[2:]),
                kernels.reshape(b * co, cig, k, k),
                None,
                list(stride),
                list(padding),
                list(dilation),
                False,
                [0, 0],
                b * groups,
                [ctx.needs_input_grad[0], ctx.needs_input_grad[1] or ctx.needs_input_grad[2], False],
            )
        grad_input = grad_weight = grad_op = None
        if grad_x is not None:
            grad_input = grad_x.reshape(x.shape).to(x.dtype)
        if grad_k is not None:
            grad_k = grad_k.reshape(b, co * cig, k * k).to(weight.dtype)
            if ctx.needs_input_grad[1]:
                grad_weight = torch.einsum("bpk,bkn->pn", grad_k, op.to(weight.dtype)).reshape(weight.shape)
            if ctx.needs_input_grad[2]:
                flat = weight.reshape(co * cig, k**3)
                grad_op = torch.einsum("bpk,pn->bkn", grad_k, flat).to(op.dtype)
        return grad_input, grad_weight, grad_op, None, None, None, None


def _weight_side_forward(x, weight, op, stride, padding, dilation, groups):
    b, ci = x.shape[:2]
    co, cig, k = weight.shape[:3]
    kernels = _sliced_kernels(weight, op).reshape(b * co, cig, k, k)
    out = F.conv2d(x.reshape(1, b * ci, *x.shape[2:]), kernels, None, stride, padding, dilation, b * groups)
    return out.reshape(b, co, *out.shape[2:])


def _input_side(x: Tensor, weight: Tensor, op: Tensor, stride, padding, dilation, groups) -> Tensor:
    b, ci, h, w = x.shape
    co, cig, k = weight.shape[:3]
    ho = (h + 2 * padding[0] - dilation[0] * (k - 1) - 1) // stride[0] + 1
    wo = (w + 2 * padding[1] - dilation[1] * (k - 1) - 1) // stride[1] + 1
    taps = F.unfold(x, k, dilation, padding, stride).reshape(b, groups, cig, k * k, ho * wo)
    mixed = torch.einsum("bkn,bgckl->bgcnl", op.to(taps.dtype), taps).reshape(b, groups, cig * k**3, ho * wo)
    shared = weight.reshape(groups, co // groups, cig * k**3).to(mixed.dtype)
    out = torch.einsum("gon,bgnl->bgol", shared, mixed)
    return out.reshape(b, co, ho, wo)


def crossd_conv2d(
    x: Tensor,
    weight: Tensor,
    op: Tensor,
    bias: Tensor | None = None,
    stride: int | tuple[int, ...] = 1,
    padding: str | int | tuple[int, ...] = 0,
    dilation: int | tuple[int, ...] = 1,
    groups: int = 1,
    path: Path = "auto",
) -> Tensor:
    """Convolve each sample with its own slice of a 3D kernel.

    Args:
        x: input ``(B, Ci, H, W)``.
        weight: 3D kernel ``(Co, Ci/groups, K, K, K)``.
        op: slice operators ``(B, K^2, K^3)`` (one per sample) or ``(1, K^2, K^3)`` (one for the batch).
        bias: optional ``(Co,)``, added after the convolution.
        stride, padding, dilation: as ``conv2d`` (int, ``(h, w)`` or ``(d, h, w)`` whose last two are used;
            padding may be ``"same"`` or ``"valid"``).
        groups: as ``conv2d``.
        path: ``"weight"``, ``"input"`` or ``"auto"`` (cost model, :func:`choose_path`).

    Returns:
        ``(B, Co, Ho, Wo)``.
    """
    if path not in PATHS:
        raise ValueError(f"unknown path {path!r}; expected one of {PATHS}")
    k = weight.shape[-1]
    stride, dilation = _pair(stride), _pair(dilation)
    x, pad = resolve_padding(x, k, padding, dilation, stride)
    if op.shape[0] == 1:
        kernel = _sliced_kernels(weight, op.to(weight.dtype))[0]
        return F.conv2d(x, kernel, bias, stride, pad, dilation, groups)
    b, ci, h, w = x.shape
    if path == "auto":
        ho = (h + 2 * pad[0] - dilation[0] * (k - 1) - 1) // stride[0] + 1
        wo = (w + 2 * pad[1] - dilation[1] * (k - 1) - 1) // stride[1] + 1
        path = choose_path(b, ci, weight.shape[0], groups, k, max(ho * wo, 1))
    if path == "weight":
        out = _WeightSideConv.apply(x, weight, op, stride, pad, dilation, groups)
    else:
        out = _input_side(x, weight, op, stride, pad, dilation, groups)
    if bias is not None:
        out = out + bias.to(out.dtype)[None, :, None, None]
    return out
