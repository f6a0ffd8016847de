"""The per-sample rotation predictor of a Cross-D layer."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from crossd.ops.rotation import head_to_axis_angle


class RotationHead(nn.Sequential):
    """``Conv1x1(Ci -> 16) -> BatchNorm2d(16) -> ReLU -> Conv1x1(16 -> 4)`` and spatial-softmax pooling.

    Its children are numbered ``0, 1, 3`` like the published layer's ``rotation_params`` so checkpoints map
    one to one. ``forward(x (B, Ci, H, W))`` returns the pooled head output ``v (B, 4)``; :meth:`axis_angle`
    turns it into axes ``(B, 3)`` (unnormalised; the slice operator normalises) and angles ``(B,)`` in
    ``[-pi/4, pi/4]``.
    """

    def __init__(self, in_channels: int, hidden_channels: int = 16):
        super().__init__(
            nn.Conv2d(in_channels, hidden_channels, 1),
            nn.BatchNorm2d(hidden_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden_channels, 4, 1),
        )

    def forward(self, x: Tensor) -> Tensor:
        r = super().forward(x).flatten(2)  # (B, 4, H*W)
        return (r * torch.softmax(r, dim=-1)).sum(-1)

    @staticmethod
    def axis_angle(v: Tensor) -> tuple[Tensor, Tensor]:
        """Axes ``(B, 3)`` (as predicted) and angles ``(B,)`` from pooled outputs ``(B, 4)``."""
        return head_to_axis_angle(v)
