"""Plane-group Cross-D convolutions: contiguous groups of samples, each group convolved with its own 2D kernel.

With ``n`` slice operators for a batch of ``B`` samples (groups of ``s = ceil(B / n)`` samples, the last may be
smaller; :mod:`crossd.ops.groups`) a layer is ``n`` ordinary convolutions over ``s`` samples each, the same
multiply-adds as one plain convolution plus building ``n`` 2D kernels. Two exact formulations:

- ``"stacked"``: the full groups are stacked into the channels, ``x (n*s, Ci, H, W) -> (s, n*Ci, H, W)``, and
  convolved in one grouped convolution with the ``n`` kernels ``(n*Co, Ci/g, K, K)`` in ``n*g`` groups (a smaller
  last group is one more ``conv2d``). One library call; oneDNN runs it about as fast as a plain convolution when
  each group has many channels, and slowly with few (the 3-channel stem).
- ``"loop"``: one ``conv2d`` per group on a view of the batch. ``n`` library calls on ``s`` samples each.

Both use PyTorch's own autograd; the ``n`` kernels ``(n, Co, Ci/g, K, K)`` are small and kept for backward.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def _conv(x: Tensor, kernel: Tensor, stride, padding, dilation, groups: int) -> Tensor:
    return F.conv2d(x, kernel, None, stride, padding, dilation, groups)


def loop_conv2d(x: Tensor, kernels: Tensor, stride, padding, dilation, groups: int) -> Tensor:
    """``conv2d`` of each contiguous group of ``x (B, Ci, H, W)`` with its kernel of ``kernels
    (n, Co, Ci/g, K, K)``; returns ``(B, Co, Ho, Wo)``. ``stride``, ``padding``, ``dilation`` are ``(h, w)``."""
    size = -(-x.shape[0] // kernels.shape[0])
    outs = [_conv(part, kernels[i], stride, padding, dilation, groups) for i, part in enumerate(x.split(size))]
    return torch.cat(outs)


def stacked_conv2d(x: Tensor, kernels: Tensor, stride, padding, dilation, groups: int) -> Tensor:
    """The same as :func:`loop_conv2d`, with the full groups stacked into the channels of one grouped
    convolution ``(s, n*Ci, H, W) * (n*Co, Ci/g, K, K)`` (``n*g`` groups) and a smaller last group on its own."""
    b, ci, h, w = x.shape
    n, co = kernels.shape[:2]
    size = -(-b // n)
    full = b // size
    stacked = x[: full * size].reshape(full, size, ci, h, w).transpose(0, 1).reshape(size, full * ci, h, w)
    out = _conv(stacked, kernels[:full].flatten(0, 1), stride, padding, dilation, full * groups)
    ho, wo = out.shape[-2:]
    out = out.reshape(size, full, co, ho, wo).transpose(0, 1).reshape(full * size, co, ho, wo)
    if full == n:
        return out
    return torch.cat((out, _conv(x[full * size :], kernels[full], stride, padding, dilation, groups)))


GROUP_CONVS = {"stacked": stacked_conv2d, "loop": loop_conv2d}
