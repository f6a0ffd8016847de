"""The per-sample rotation predictor of a Cross-D layer, computed by one fused, memory-light autograd function.

The head is ``Conv1x1(Ci -> 16) -> BatchNorm2d(16) -> ReLU -> Conv1x1(16 -> 4)`` and spatial-softmax pooling, at
the layer's full input resolution. Run as four modules it writes and re-reads a 16-channel map of the input's size
about a dozen times in forward and backward (oneDNN's 1x1 convolutions with 3 or 16 channels are slow, and autograd
keeps every intermediate). Where the input has fewer channels than the hidden map (the stem: 3 channels at full
resolution), :class:`FusedHead` computes the same numbers on a channels-last ``(B*H*W, Ci)`` view with ``F.linear``:

- the BatchNorm batch statistics of the first 1x1 convolution follow from the input's channel mean ``mu`` and
  covariance ``S``: ``mean = W1 mu + b1``, ``var_j = W1_j S W1_j^T``; the normalisation is folded into the first
  linear map, so forward writes the 16-channel map once (``relu(W1' x + c)``) and keeps nothing of that size;
- backward runs BatchNorm's backward in closed form from the saved ``x``, the hidden map after ReLU and the
  4-channel map.

With more input channels oneDNN's 1x1 convolutions are efficient and the modules run in turn (measured, 1 thread,
batch 16: at 3 channels 112² the fused head takes 1.3x the stem convolution's forward+backward instead of 2.9x;
at 64 channels 28² it would take 0.39x instead of 0.20x; ``benchmarks/RESULTS.md``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from crossd.ops.rotation import head_to_axis_angle


def _rows(x: Tensor) -> Tensor:
    """``(B, C, H, W) -> (B*H*W, C)``: a view for channels-last inputs, one copy otherwise."""
    return x.permute(0, 2, 3, 1).reshape(-1, x.shape[1])


def _pool(r: Tensor, batch: int) -> tuple[Tensor, Tensor, Tensor]:
    """Spatial-softmax pooling of ``r (B*L, 4)``: ``v (B, 4) = sum_u softmax_u(r) r``, the softmax and ``r``, both
    as ``(B, 4, L)``."""
    r = r.view(batch, -1, r.shape[-1]).transpose(1, 2).contiguous()
    p = torch.softmax(r, dim=-1)
    return (p * r).sum(-1), p, r


def _moments(rows: Tensor) -> tuple[Tensor, Tensor]:
    """Mean ``(C,)`` and biased covariance ``(C, C)`` of ``rows (N, C)``."""
    mu = rows.mean(0)
    return mu, torch.addr(rows.t() @ rows, mu, mu, beta=1 / rows.shape[0], alpha=-1)


class FusedHead(torch.autograd.Function):
    """``apply(x (B, Ci, H, W), w1 (16, Ci), b1, gamma, beta, w2 (4, 16), b2, mean, var, eps)`` -> ``v (B, 4)``.

    ``mean``/``var`` ``(16,)`` are the BatchNorm statistics to normalise with; ``None`` means the batch's own
    (training), computed from the input's channel moments and returned as the second and third outputs (no
    gradient) so the caller can update running statistics. Computes in float32 or the inputs' wider dtype.

    Backward never forms BatchNorm's input or its gradient at full resolution: with ``h = W1 x + b1``,
    ``G = dpre^T x`` and ``S = sum dpre`` (``dpre`` the gradient at BatchNorm's output), ``d gamma_j = istd_j
    (W1_j . G_j + S_j (b1_j - mean_j))``, and the batch statistics' share of ``dx`` and ``dW1`` is a ``(Ci, Ci)``
    or ``(16, Ci)`` correction built from the input's moments.
    """

    @staticmethod
    def forward(ctx, x, w1, b1, gamma, beta, w2, b2, mean, var, eps):  # noqa: D102
        dtype = torch.promote_types(x.dtype, w1.dtype)
        with torch.autocast(x.device.type, enabled=False):
            rows = _rows(x.to(dtype))
            batch_stats = mean is None
            if batch_stats:
                mu, cov = _moments(rows)
                mean = w1 @ mu + b1
                var = ((w1 @ cov) * w1).sum(1).clamp_min(0)
            istd = (var + eps).rsqrt()
            scale = gamma * istd
            shift = b1 - mean
            act = F.linear(rows, w1 * scale[:, None], shift * scale + beta).relu_()
            v, p, r = _pool(F.linear(act, w2, b2), x.shape[0])
        ctx.save_for_backward(x, w1, gamma, w2, shift, istd, act, v, p, r)
        ctx.batch_stats = batch_stats
        ctx.mark_non_differentiable(mean, var)
        return v.to(x.dtype), mean, var

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_v, _grad_mean, _grad_var):  # noqa: D102
        x, w1, gamma, w2, shift, istd, act, v, p, r = ctx.saved_tensors
        dtype = torch.promote_types(x.dtype, w1.dtype)
        with torch.autocast(x.device.type, enabled=False):
            rows = _rows(x.to(dtype))
            n, batch = rows.shape[0], x.shape[0]
            scale = gamma * istd
            w1s = w1 * scale[:, None]
            grad_r = (p * (1 + r - v[..., None]) * grad_v.to(dtype)[..., None]).transpose(1, 2).reshape(n, -1)
            grad_w2, grad_b2 = grad_r.t() @ act, grad_r.sum(0)
            grad_pre = torch.ops.aten.threshold_backward(grad_r @ w2, act, 0)  # (N, 16)
            grad_beta = grad_pre.sum(0)
            g = grad_pre.t() @ rows  # (16, Ci)
            grad_gamma = ((g * w1).sum(1) + grad_beta * shift) * istd  # sum_u dpre_u (h_u - mean) istd
            grad_b1 = grad_beta * scale  # s S
            grad_w1 = g * scale[:, None]
            coef = scale * istd * grad_gamma  # (16,)
            if ctx.batch_stats:  # BatchNorm's backward through the batch mean and variance
                mu, cov = _moments(rows)
                grad_w1 -= torch.outer(grad_b1, mu) + coef[:, None] * (w1 @ cov)
            grad_x = None
            if ctx.needs_input_grad[0]:
                rows_grad = grad_pre @ w1s
                if ctx.batch_stats:  # dx_u -= W1^T (s S) / n + W1^T diag(coef / n) W1 (x_u - mu)
                    mix = w1.t() @ (w1 * (coef / n)[:, None])  # (Ci, Ci)
                    rows_grad = torch.addmm(rows_grad, rows, mix, alpha=-1)
                    rows_grad += mu @ mix - grad_b1 @ w1 / n
                grad_x = rows_grad.view(batch, x.shape[2], x.shape[3], -1).permute(0, 3, 1, 2).to(x.dtype)
        if ctx.batch_stats:
            grad_b1 = torch.zeros_like(grad_b1)  # the batch mean removes b1 from BatchNorm's output
        return grad_x, grad_w1, grad_b1, grad_gamma, grad_beta, grad_w2, grad_b2, None, None, None


class RotationHead(nn.Sequential):
    """``Conv1x1(Ci -> 16) -> BatchNorm2d(16) -> ReLU -> Conv1x1(16 -> 4)`` and spatial-softmax pooling.

    Its children are numbered ``0, 1, 3`` like the published layer's ``rotation_params`` so checkpoints map
    one to one. ``forward(x (B, Ci, H, W))`` returns the pooled head output ``v (B, 4)``; :meth:`axis_angle`
    turns it into axes ``(B, 3)`` (unnormalised; the slice operator normalises) and angles ``(B,)`` in
    ``[-pi/4, pi/4]``. With fewer input channels than hidden ones the computation is :class:`FusedHead`
    (BatchNorm's running statistics are updated as ``nn.BatchNorm2d`` does); otherwise, or if a child has been
    replaced by another kind of module, the children run in turn.
    """

    def __init__(self, in_channels: int, hidden_channels: int = 16):
        super().__init__(
            nn.Conv2d(in_channels, hidden_channels, 1),
            nn.BatchNorm2d(hidden_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden_channels, 4, 1),
        )

    def forward(self, x: Tensor) -> Tensor:
        if not self._fusable():
            r = super().forward(x).flatten(2)  # (B, 4, H*W)
            return (r * torch.softmax(r, dim=-1)).sum(-1)
        conv1, bn, _, conv2 = self
        batch_stats = bn.training or not bn.track_running_stats
        stats = (None, None) if batch_stats else (bn.running_mean, bn.running_var)
        v, mean, var = FusedHead.apply(
            x, conv1.weight.flatten(1), conv1.bias, bn.weight, bn.bias, conv2.weight.flatten(1), conv2.bias,
            *stats, bn.eps,
        )  # fmt: skip
        if bn.training and bn.track_running_stats:
            _update_running_stats(bn, mean, var, x.numel() // x.shape[1])
        return v

    def _fusable(self) -> bool:
        conv1, bn, relu, conv2 = self
        return (
            type(conv1) is nn.Conv2d
            and type(bn) is nn.BatchNorm2d
            and type(relu) is nn.ReLU
            and type(conv2) is nn.Conv2d
            and conv1.in_channels < conv1.out_channels
            and bn.affine
            and conv1.bias is not None
            and conv2.bias is not None
        )

    @staticmethod
    def axis_angle(v: Tensor) -> tuple[Tensor, Tensor]:
        """Axes ``(B, 3)`` (as predicted) and angles ``(B,)`` from pooled outputs ``(B, 4)``."""
        return head_to_axis_angle(v)


@torch.no_grad()
def _update_running_stats(bn: nn.BatchNorm2d, mean: Tensor, var: Tensor, count: int) -> None:
    """What ``nn.BatchNorm2d`` does in training: exponential (or, with ``momentum=None``, cumulative) averages of
    the batch mean and the unbiased batch variance, and one more ``num_batches_tracked``."""
    bn.num_batches_tracked += 1
    momentum = bn.momentum if bn.momentum is not None else 1.0 / float(bn.num_batches_tracked)
    bn.running_mean.lerp_(mean.to(bn.running_mean.dtype), momentum)
    bn.running_var.lerp_((var * count / max(count - 1, 1)).to(bn.running_var.dtype), momentum)
