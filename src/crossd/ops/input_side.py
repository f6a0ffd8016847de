"""The input-side Cross-D convolution: mix each sample's unfolded taps ``K^2 -> K^3``, then one shared GEMM.

For slice operators ``M (B, K^2, K^3)`` and a 3D kernel ``W (Co, Ci/g, K, K, K)``::

    taps[b, k, l, c]  = x[b, c] at kernel tap k of output pixel l         (B, K^2, L, Ci)
    mixed[b, l, c, n] = sum_k taps[b, k, l, c] M[b, k, n]                   (B, L, Ci, K^3)
    out[b, l, o]      = sum_{c, n} mixed[b, l, c, n] W[o, c, n]            (B, L, Co)

The taps are tap-major and channels-last (each tap a contiguous shifted ``(L, Ci)`` image: folding back is
``K^2`` strided additions, and the small-inner-dimension batched matmuls run 2-3x faster than with tap-minor
taps), so the mixing is one batched matmul and the contraction with ``W`` one GEMM
``(B L, Ci K^3) @ (Ci K^3, Co)`` against ``W`` as stored; the output is returned as a channels-last
``(B, Co, Ho, Wo)`` view, without a copy. The ``K^3``-expanded input is never stored for backward: the autograd
function keeps ``x``, ``W`` and ``M`` and recomputes ``taps`` and ``mixed``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable


def output_size(size: int, kernel_size: int, stride: int, padding: int, dilation: int) -> int:
    """Output length of a convolution along one axis."""
    return (size + 2 * padding - dilation * (kernel_size - 1) - 1) // stride + 1


def output_shape(size: tuple[int, int], kernel_size: int, stride, padding, dilation) -> tuple[int, int]:
    """``(Ho, Wo)`` of a convolution of an ``(H, W)`` image; ``stride``, ``padding``, ``dilation`` are ``(h, w)``."""
    h, w = size
    return (
        output_size(h, kernel_size, stride[0], padding[0], dilation[0]),
        output_size(w, kernel_size, stride[1], padding[1], dilation[1]),
    )


def unfold_taps(x: Tensor, kernel_size: int, stride, padding, dilation) -> Tensor:
    """Taps ``(B, K^2, Ho*Wo*Ci)`` of ``x (B, Ci, H, W)``: rows ``(ky, kx)``, columns ``(ho, wo, c)``."""
    b, ci, h, w = x.shape
    ho, wo = output_shape((h, w), kernel_size, stride, padding, dilation)
    padded = F.pad(x, (padding[1], padding[1], padding[0], padding[0])).permute(0, 2, 3, 1).contiguous()
    sb, sh, sw, sc = padded.stride()
    view = padded.as_strided(
        (b, kernel_size, kernel_size, ho, wo, ci),
        (sb, dilation[0] * sh, dilation[1] * sw, stride[0] * sh, stride[1] * sw, sc),
    )
    return view.reshape(b, kernel_size * kernel_size, ho * wo * ci)


def fold_taps(taps: Tensor, shape, kernel_size: int, stride, padding, dilation) -> Tensor:
    """Adjoint of :func:`unfold_taps`: sum taps ``(B, K^2, Ho*Wo*Ci)`` back into ``(B, Ci, H, W)``."""
    b, ci, h, w = shape
    ho, wo = output_shape((h, w), kernel_size, stride, padding, dilation)
    taps = taps.reshape(b, kernel_size, kernel_size, ho, wo, ci)
    out = taps.new_zeros(b, h + 2 * padding[0], w + 2 * padding[1], ci)
    for ky in range(kernel_size):
        for kx in range(kernel_size):
            y0, x0 = ky * dilation[0], kx * dilation[1]
            rows = slice(y0, y0 + stride[0] * (ho - 1) + 1, stride[0])
            cols = slice(x0, x0 + stride[1] * (wo - 1) + 1, stride[1])
            out[:, rows, cols] += taps[:, ky, kx]
    return out[:, padding[0] : padding[0] + h, padding[1] : padding[1] + w].permute(0, 3, 1, 2)


def _group_mm(a: Tensor, b: Tensor) -> Tensor:
    """Block-diagonal product: ``a (N, G*P)`` times ``b (G, P, Q)`` -> ``(N, G*Q)``, group ``i`` with block ``i``."""
    groups, p, q = b.shape
    if groups == 1:
        return a @ b[0]
    n = a.shape[0]
    return torch.bmm(a.reshape(n, groups, p).transpose(0, 1), b).transpose(0, 1).reshape(n, groups * q)


def _group_weight_grad(g: Tensor, mixed: Tensor, groups: int) -> Tensor:
    """``grad W (Co, Ci/g K^3)`` from ``g (N, Co)`` and ``mixed (N, Ci K^3)``: per group ``g_i^T @ mixed_i``."""
    if groups == 1:
        return g.t() @ mixed
    n = g.shape[0]
    gi = g.reshape(n, groups, -1).permute(1, 2, 0)  # (G, Co/g, N)
    mi = mixed.reshape(n, groups, -1).transpose(0, 1)  # (G, N, Ci/g K^3)
    return torch.bmm(gi, mi).reshape(g.shape[1], -1)


def _mix(taps: Tensor, op: Tensor, in_channels: int) -> Tensor:
    """``mixed (B*L, Ci*K^3)`` from taps ``(B, K^2, L*Ci)`` and ``op (B, K^2, K^3)``."""
    return torch.bmm(taps.transpose(1, 2), op).reshape(-1, in_channels * op.shape[-1])


class InputSideConv(torch.autograd.Function):
    """Input-side Cross-D convolution that recomputes the ``K^3``-expanded input in backward.

    ``apply(x (B, Ci, H, W), weight (Co, Ci/g, K, K, K), op (B, K^2, K^3), stride, padding, dilation, groups)``
    returns ``(B, Co, Ho, Wo)`` (channels-last memory). ``stride``, ``padding``, ``dilation`` are ``(h, w)``.
    """

    @staticmethod
    def forward(ctx, x, weight, op, stride, padding, dilation, groups):  # noqa: D102
        compute = compute_dtype(x)
        with torch.autocast(x.device.type, enabled=False):
            xc, wc, opc = x.to(compute), weight.to(compute), op.to(compute)
            out = _forward(xc, wc, opc, stride, padding, dilation, groups)
        ctx.save_for_backward(x, weight, op)
        ctx.conf = (stride, padding, dilation, groups, compute)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):  # noqa: D102
        x, weight, op = ctx.saved_tensors
        stride, padding, dilation, groups, compute = ctx.conf
        b, ci = x.shape[:2]
        co, k = weight.shape[0], weight.shape[-1]
        need_x, need_w, need_op = ctx.needs_input_grad[:3]
        with torch.autocast(x.device.type, enabled=False):
            xc, wc, opc = x.to(compute), weight.to(compute), op.to(compute)
            g = grad_out.to(compute).permute(0, 2, 3, 1).reshape(-1, co)  # (B L, Co)
            taps = unfold_taps(xc, k, stride, padding, dilation)
            grad_x = grad_w = grad_op = None
            if need_w:
                mixed = _mix(taps, opc, ci)
                grad_w = _group_weight_grad(g, mixed, groups).reshape(weight.shape).to(weight.dtype)
                del mixed
            if need_x or need_op:
                grad_mixed = _group_mm(g, wc.reshape(groups, co // groups, -1))  # (B L, Ci K^3)
                grad_mixed = grad_mixed.reshape(b, -1, k**3)
                if need_op:
                    grad_op = torch.bmm(taps, grad_mixed).to(op.dtype)
                if need_x:
                    grad_taps = torch.bmm(opc, grad_mixed.transpose(1, 2))  # (B, K^2, L Ci)
                    grad_x = fold_taps(grad_taps, x.shape, k, stride, padding, dilation).to(x.dtype)
        return grad_x, grad_w, grad_op, None, None, None, None


def _forward(x: Tensor, weight: Tensor, op: Tensor, stride, padding, dilation, groups: int) -> Tensor:
    b, _, h, w = x.shape
    co, k = weight.shape[0], weight.shape[-1]
    ho, wo = output_shape((h, w), k, stride, padding, dilation)
    mixed = _mix(unfold_taps(x, k, stride, padding, dilation), op, x.shape[1])  # (B L, Ci K^3)
    out = _group_mm(mixed, weight.reshape(groups, co // groups, -1).transpose(1, 2))  # (B L, Co)
    return out.reshape(b, ho, wo, co).permute(0, 3, 1, 2)


def compute_dtype(x: Tensor) -> torch.dtype:
    """The dtype to compute in: autocast's when it is on for ``x``'s device and ``x`` is float32 (autocast leaves
    float64 alone, as it does for ``conv2d``), else ``x``'s own."""
    device = x.device.type
    if torch.is_autocast_enabled(device) and x.dtype == torch.float32:
        return torch.get_autocast_dtype(device)
    return x.dtype
