"""The weight-side Cross-D convolution: per-sample 2D kernels and one grouped convolution over the batch.

The batch is folded into the channels, ``x (B, Ci, H, W) -> (1, B*Ci, H, W)``, and convolved with the stacked
per-sample kernels ``(B*Co, Ci/g, K, K)`` in ``B*g`` groups. The folded tensors are laid out channels-last
(``(H, W, B*Ci)`` in memory), which CPU convolution libraries run several times faster than the contiguous layout
for grouped convolutions. The per-sample kernels are never stored for backward: the autograd function keeps
``x``, ``W`` and ``M`` and rebuilds them.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from crossd.ops.input_side import compute_dtype


def sliced_kernels(weight: Tensor, op: Tensor) -> Tensor:
    """Per-sample kernels ``(B*Co, Ci/g, K, K)`` (channels-last memory) from ``weight (Co, Ci/g, K, K, K)`` and
    ``op (B, K^2, K^3)``, by one GEMM ``(B K^2, K^3) @ (K^3, Co Ci/g)``."""
    co, cig, k = weight.shape[:3]
    b = op.shape[0]
    kern = op.reshape(b * k * k, k**3) @ weight.reshape(co * cig, k**3).t()  # (B K^2, Co Ci/g)
    kern = kern.reshape(b, k * k, co, cig).transpose(1, 2).contiguous()  # (B, Co, K^2, Ci/g)
    return kern.reshape(b * co, k, k, cig).permute(0, 3, 1, 2)


def kernel_grads(grad_k: Tensor, weight: Tensor, op: Tensor, need_w: bool, need_op: bool):
    """Gradients of ``weight`` and ``op`` from the per-sample kernels' gradient ``grad_k (B*Co, Ci/g, K, K)``."""
    co, cig, k = weight.shape[:3]
    b = op.shape[0]
    gk = grad_k.reshape(b, co, cig, k * k).permute(0, 3, 1, 2).reshape(b * k * k, co * cig)  # (B K^2, Co Ci/g)
    grad_w = (gk.t() @ op.reshape(b * k * k, k**3)).reshape(weight.shape) if need_w else None
    grad_op = (gk @ weight.reshape(co * cig, k**3)).reshape(op.shape) if need_op else None
    return grad_w, grad_op


def fold_batch(x: Tensor) -> Tensor:
    """``(B, C, H, W) -> (1, B*C, H, W)`` with channels-last memory ``(H, W, B*C)`` (one copy)."""
    b, c, h, w = x.shape
    return x.permute(2, 3, 0, 1).reshape(h, w, b * c).permute(2, 0, 1).unsqueeze(0)


def unfold_batch(y: Tensor, batch: int) -> Tensor:
    """Inverse of :func:`fold_batch`: ``(1, B*C, H, W) -> (B, C, H, W)``, channels-last memory."""
    _, bc, h, w = y.shape
    nhwc = y[0].permute(1, 2, 0).reshape(h, w, batch, bc // batch).permute(2, 0, 1, 3)  # (B, H, W, C)
    return nhwc.contiguous().permute(0, 3, 1, 2)


def _conf(stride, padding, dilation) -> tuple[list[int], list[int], list[int]]:
    return list(stride), list(padding), list(dilation)


class WeightSideConv(torch.autograd.Function):
    """Grouped convolution with per-sample kernels that are rebuilt in backward, never stored.

    ``apply(x (B, Ci, H, W), weight (Co, Ci/g, K, K, K), op (B, K^2, K^3), stride, padding, dilation, groups)``
    returns ``(B, Co, Ho, Wo)`` (channels-last memory). ``stride``, ``padding``, ``dilation`` are ``(h, w)``.
    """

    @staticmethod
    def forward(ctx, x, weight, op, stride, padding, dilation, groups):  # noqa: D102
        compute = compute_dtype(x)
        b = x.shape[0]
        co, cig, k = weight.shape[:3]
        with torch.autocast(x.device.type, enabled=False):
            out = torch.ops.aten.convolution(
                fold_batch(x.to(compute)),
                sliced_kernels(weight.to(compute), op.to(compute)),
                None,
                *_conf(stride, padding, dilation),
                False,
                [0, 0],
                b * groups,
            )
        ctx.save_for_backward(x, weight, op)
        ctx.conf = (stride, padding, dilation, groups, compute)
        return unfold_batch(out, b)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):  # noqa: D102
        x, weight, op = ctx.saved_tensors
        stride, padding, dilation, groups, compute = ctx.conf
        b = x.shape[0]
        co, cig, k = weight.shape[:3]
        need_x, need_w, need_op = ctx.needs_input_grad[:3]
        with torch.autocast(x.device.type, enabled=False):
            opc, wc = op.to(compute), weight.to(compute)
            grad_x, grad_k, _ = torch.ops.aten.convolution_backward(
                fold_batch(grad_out.to(compute)),
                fold_batch(x.to(compute)),
                sliced_kernels(wc, opc),
                None,
                *_conf(stride, padding, dilation),
                False,
                [0, 0],
                b * groups,
                [need_x, need_w or need_op, False],
            )
        grad_input = grad_weight = grad_op = None
        if grad_x is not None:
            grad_input = unfold_batch(grad_x, b).to(x.dtype)
        if grad_k is not None:
            grad_weight, grad_op = kernel_grads(grad_k, wc, opc, need_w, need_op)
            grad_weight = None if grad_weight is None else grad_weight.to(weight.dtype)
            grad_op = None if grad_op is None else grad_op.to(op.dtype)
        return grad_input, grad_weight, grad_op, None, None, None, None
