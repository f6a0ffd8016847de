"""ACS convolution (Yang et al., 2021): a 2D kernel run along the axial, coronal and sagittal planes."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from crossd.errors import SettingsError


def acs_split(out_channels: int) -> tuple[int, int, int]:
    """Output channels per view ``(axial, coronal, sagittal)``; the first views take the remainder."""
    base, rest = divmod(out_channels, 3)
    return (base + (rest > 0), base + (rest > 1), base)


def acs_views_agree(kernel_size: int, padding: int, dilation: int) -> bool:
    """Whether the three views give one output size: only with the "same" padding ``dilation * (K - 1) / 2``
    (each view pads only its kernel's two axes)."""
    return 2 * padding == dilation * (kernel_size - 1)


class ACSConv3d(nn.Module):
    """A 3D convolution with a 2D kernel ``(Co, Ci/groups, K, K)`` whose output channels are split in three.

    Channels ``[0, a)`` use the kernel in the ``(h, w)`` plane (axial, kernel ``(1, K, K)``), ``[a, a+c)`` in the
    ``(d, w)`` plane (coronal, ``(K, 1, K)``) and the rest in the ``(d, h)`` plane (sagittal, ``(K, K, 1)``),
    each with padding and dilation only along the kernel's two axes, so ``padding`` must be
    ``dilation * (K - 1) / 2`` (:func:`acs_views_agree`; the default ``None`` means that value). Input
    ``(B, Ci, D, H, W)``.

    With ``groups > 1`` every output channel keeps its own group of input channels (channel ``o`` reads group
    ``o // (Co / groups)``, as in ``Conv3d``), whatever view it falls in.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int | tuple[int, int, int] = 1,
        padding: int | None = None,
        dilation: int = 1,
        groups: int = 1,
        bias: bool = True,
    ):
        super().__init__()
        padding = dilation * (kernel_size - 1) // 2 if padding is None else padding
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size, self.padding, self.dilation = kernel_size, padding, dilation
        self.stride = (stride,) * 3 if isinstance(stride, int) else tuple(stride)
        if not acs_views_agree(kernel_size, padding, dilation):
            raise SettingsError(
                f"ACSConv3d needs padding = dilation * (kernel_size - 1) / 2, got padding {padding} for kernel_size "
                f"{kernel_size}, dilation {dilation}: otherwise its three views give different output sizes "
                "(crossd.to_3d(init='acs') puts such a layer's views in one Conv3d)",
                field="padding",
            )
        if in_channels % groups or out_channels % groups:
            raise SettingsError(
                f"{groups} must divide in_channels ({in_channels}) and out_channels ({out_channels})", field="groups"
            )
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
            pad = [p, p, p]
            dil = [d, d, d]
            pad[view], dil[view] = 0, 1
            outs.append(self._view(x, start, n, view, tuple(pad), tuple(dil)))
            start += n
        out = torch.cat(outs, dim=1)
        return out if self.bias is None else out + self.bias[None, :, None, None, None]

    def _view(self, x: Tensor, start: int, n: int, view: int, pad: tuple, dil: tuple) -> Tensor:
        """Output channels ``[start, start + n)`` with their kernels in ``view``'s plane: a grouped ``conv3d`` over
        the whole groups those channels belong to, of which the channels asked for are kept."""
        per_out, per_in = self.out_channels // self.groups, self.in_channels // self.groups
        block = per_out if self.groups > 1 else 1  # a grouped convolution computes whole groups
        low, high = start // block * block, -(-(start + n) // block) * block
        first, last = low // per_out, (high - 1) // per_out + 1
        kernel = self.weight[low:high].unsqueeze(2 + view)
        out = F.conv3d(x[:, first * per_in : last * per_in], kernel, None, self.stride, pad, dil, last - first)
        return out[:, start - low : start - low + n]

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
            f"padding={self.padding}, groups={self.groups}, split={acs_split(self.out_channels)}"
        )
