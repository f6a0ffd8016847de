"""ACS convolution (Yang et al., 2021): a 2D kernel run along the axial, coronal and sagittal planes."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def acs_split(out_channels: int) -> tuple[int, int, int]:
    """Output channels per view ``(axial, coronal, sagittal)``; the first views take the remainder."""
    base, rest = divmod(out_channels, 3)
    return (base + (rest > 0), base + (rest > 1), base)


class ACSConv3d(nn.Module):
    """A 3D convolution with a 2D kernel ``(Co, Ci/groups, K, K)`` whose output channels are split in three.

    Channels ``[0, a)`` use the kernel in the ``(h, w)`` plane (axial, kernel ``(1, K, K)``), ``[a, a+c)`` in the
    ``(d, w)`` plane (coronal, ``(K, 1, K)``) and the rest in the ``(d, h)`` plane (sagittal, ``(K, K, 1)``),
    each with padding and dilation only along the kernel's two axes. Input ``(B, Ci, D, H, W)``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int | tuple[int, int, int] = 1,
        padding: int = 0,
        dilation: int = 1,
        groups: int = 1,
        bias: bool = True,
    ):
        super().__init__()
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size, self.padding, self.dilation = kernel_size, padding, dilation
        self.stride = (stride,) * 3 if isinstance(stride, int) else tuple(stride)
        if groups > 1 and any(n % groups for n in acs_split(out_channels) if n):
            raise ValueError(f"ACS needs every view's output channels {acs_split(out_channels)} divisible by groups")
        self.weight = nn.Parameter(nn.Conv2d(in_channels, out_channels, kernel_size, groups=groups).weight.data)
        self.bias = nn.Parameter(nn.init.zeros_(self.weight.new_empty(out_channels))) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 5:
            raise ValueError(f"ACSConv3d expects (B, C, D, H, W), got shape {tuple(x.shape)}")
        p, d = self.padding, self.dilation
        outs, start = [], 0
        for view, n in enumerate(acs_split(self.out_channels)):
            if n == 0:
                continue
            kernel = self.weight[start : start + n].unsqueeze(2 + view)
            pad = [p, p, p]
            dil = [d, d, d]
            pad[view], dil[view] = 0, 1
            outs.append(F.conv3d(x, kernel, None, self.stride, tuple(pad), tuple(dil), self.groups))
            start += n
        out = torch.cat(outs, dim=1)
        return out if self.bias is None else out + self.bias[None, :, None, None, None]

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
            f"padding={self.padding}, split={acs_split(self.out_channels)}"
        )
