"""3D twins of timm's layers, chosen by type (never by layer name), registered with
:func:`crossd.convert.twins.register_twin`. Imports timm: :mod:`crossd.convert` imports it when timm is installed.

Two kinds of twin:

- *Forward twins*: a subclass whose only change is a 3D ``forward``; the module's class is
  swapped, so parameters, buffers, children and ``state_dict`` keys stay as they are. ``ConvNeXtBlock``
  (channels-last permutes and the ``gamma`` reshape), the squeeze-excite blocks (``SEModule``,
  ``EffectiveSEModule``, EfficientNet's ``SqueezeExcite``: a mean over all three spatial axes), the
  avg+max adaptive pools, and, renamed only, ``SelectAdaptivePool2d`` and ``MixedConv2d`` (dimension-agnostic
  forwards over children that become 3D).
- *Layer twins*: ``BatchNormAct2d`` -> :class:`BatchNormAct3d` (keeps its
  activation and drop layer), ``LayerNorm2d``/``LayerNorm2dFp32`` -> :class:`~crossd.convert.LayerNorm3d`, and
  the fast global pools (their reduced axes widened to the volume's). ``Conv2dSame``, ``MaxPool2dSame`` and
  ``AvgPool2dSame`` are registered as ``"SAME"``-padded layers of :mod:`crossd.convert.same_padding`.

Dimension-agnostic timm layers need no twin: ``DropPath`` (a per-sample mask of shape ``(N, 1, ..., 1)``),
activations, ``ConvMlp``
(1x1 convolutions), ``NormMlpClassifierHead``'s ``Linear`` layers. ``CondConv2d`` (one kernel per expert,
convolved in ``forward``) has no twin and is reported by name.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.layers import (
    AvgPool2dSame,
    BatchNormAct2d,
    Conv2dSame,
    EffectiveSEModule,
    LayerNorm2d,
    MixedConv2d,
    SelectAdaptivePool2d,
    SEModule,
)
from timm.layers.adaptive_avgmax_pool import (
    AdaptiveAvgMaxPool2d,
    AdaptiveCatAvgMaxPool2d,
    FastAdaptiveAvgMaxPool,
    FastAdaptiveAvgPool,
    FastAdaptiveCatAvgMaxPool,
    FastAdaptiveMaxPool,
)
from timm.layers.norm import LayerNorm2dFp32
from timm.layers.pool2d_same import MaxPool2dSame
from timm.models._efficientnet_blocks import SqueezeExcite
from timm.models.convnext import ConvNeXtBlock
from torch import Tensor, nn

from crossd.convert.layers_3d import copy_state, layer_norm_to_3d
from crossd.convert.same_padding import register_same_padded
from crossd.convert.twins import register_twin
from crossd.ops.conv import triple

_SPATIAL = (2, 3, 4)


@register_twin(ConvNeXtBlock)
class ConvNeXtBlock3d(ConvNeXtBlock):
    """timm's ``ConvNeXtBlock`` on volumes ``(N, C, D, H, W)``: channels-last is ``(N, D, H, W, C)``."""

    def forward(self, x: Tensor) -> Tensor:
        shortcut = x
        x = self.conv_dw(x)
        if self.use_conv_mlp:
            x = self.mlp(self.norm(x))
        else:
            x = self.mlp(self.norm(x.permute(0, 2, 3, 4, 1))).permute(0, 4, 1, 2, 3)
        if self.gamma is not None:
            x = x.mul(self.gamma.reshape(1, -1, 1, 1, 1))
        return self.drop_path(x) + self.shortcut(shortcut)


@register_twin(SEModule)
class SEModule3d(SEModule):
    """timm's ``SEModule`` squeezing over all three spatial axes of ``(N, C, D, H, W)``."""

    def forward(self, x: Tensor) -> Tensor:
        x_se = x.mean(_SPATIAL, keepdim=True)
        if self.add_maxpool:
            x_se = 0.5 * x_se + 0.5 * x.amax(_SPATIAL, keepdim=True)
        x_se = self.fc2(self.act(self.bn(self.fc1(x_se))))
        return x * self.gate(x_se)


@register_twin(EffectiveSEModule)
class EffectiveSEModule3d(EffectiveSEModule):
    """timm's ``EffectiveSEModule`` squeezing over all three spatial axes of ``(N, C, D, H, W)``."""

    def forward(self, x: Tensor) -> Tensor:
        x_se = x.mean(_SPATIAL, keepdim=True)
        if self.add_maxpool:
            x_se = 0.5 * x_se + 0.5 * x.amax(_SPATIAL, keepdim=True)
        return x * self.gate(self.fc(x_se))


@register_twin(SqueezeExcite)
class SqueezeExcite3d(SqueezeExcite):
    """timm EfficientNet's ``SqueezeExcite`` squeezing over all three spatial axes of ``(N, C, D, H, W)``."""

    def forward(self, x: Tensor) -> Tensor:
        x_se = self.conv_expand(self.act1(self.conv_reduce(x.mean(_SPATIAL, keepdim=True))))
        return x * self.gate(x_se)


@register_twin(AdaptiveAvgMaxPool2d)
class AdaptiveAvgMaxPool3d(AdaptiveAvgMaxPool2d):
    """Mean of adaptive average and max pooling of a volume to ``output_size`` (an int or ``(d, h, w)``)."""

    def forward(self, x: Tensor) -> Tensor:
        size = triple(self.output_size)
        return 0.5 * (F.adaptive_avg_pool3d(x, size) + F.adaptive_max_pool3d(x, size))


@register_twin(AdaptiveCatAvgMaxPool2d)
class AdaptiveCatAvgMaxPool3d(AdaptiveCatAvgMaxPool2d):
    """Adaptive average and max pooling of a volume, concatenated over channels."""

    def forward(self, x: Tensor) -> Tensor:
        size = triple(self.output_size)
        return torch.cat((F.adaptive_avg_pool3d(x, size), F.adaptive_max_pool3d(x, size)), 1)


@register_twin(SelectAdaptivePool2d)
class SelectAdaptivePool3d(SelectAdaptivePool2d):
    """timm's ``SelectAdaptivePool2d`` whose pool and flatten children have been made 3D (same ``forward``)."""


@register_twin(MixedConv2d)
class MixedConv3d(MixedConv2d):
    """timm's ``MixedConv2d`` whose convolutions have been made 3D (same, channel-splitting ``forward``)."""


@register_twin(BatchNormAct2d)
class BatchNormAct3d(nn.BatchNorm3d):
    """``BatchNorm3d`` followed by the drop and activation layers of a timm ``BatchNormAct2d``."""

    def __init__(self, norm: BatchNormAct2d):
        super().__init__(norm.num_features, norm.eps, norm.momentum, norm.affine, norm.track_running_stats)
        copy_state(norm, self)
        self.drop, self.act = norm.drop, norm.act

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.drop(super().forward(x)))


# Reduced axes of the fast global pools: images (NCHW, NHWC) -> volumes (NCDHW, NDHWC); the channel axis moves.
_FAST_POOL_AXES = {(2, 3): ((2, 3, 4), 1), (1, 2): ((1, 2, 3), 4)}
_FAST_POOLS = (FastAdaptiveAvgPool, FastAdaptiveMaxPool, FastAdaptiveAvgMaxPool, FastAdaptiveCatAvgMaxPool)


@register_twin(*_FAST_POOLS)
def _fast_pool_to_3d(pool: nn.Module) -> nn.Module:
    attr = "dim_reduce" if isinstance(pool, FastAdaptiveCatAvgMaxPool) else "dim"
    axes, channel = _FAST_POOL_AXES[tuple(getattr(pool, attr))]
    new = type(pool)(pool.flatten)
    setattr(new, attr, axes)
    if isinstance(pool, FastAdaptiveCatAvgMaxPool) and not pool.flatten:
        new.dim_cat = channel
    return new


register_twin(LayerNorm2d, LayerNorm2dFp32)(layer_norm_to_3d)
register_same_padded(Conv2dSame, MaxPool2dSame, AvgPool2dSame)
