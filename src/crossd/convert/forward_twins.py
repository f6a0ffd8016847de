"""Known models whose own ``forward`` does 2D-only work, and their 3D twins, chosen by exact type.

A *forward twin* is a subclass of the 2D class that only overrides ``forward`` (or the method ``forward``
calls); :func:`swap_forwards` sets it as the module's class, so parameters, children and ``state_dict`` keys
are untouched. Exact types are matched, so a user's subclass with its own ``forward`` is never overridden (the
static scan reports it instead).

torchvision:

- ``DenseNet`` pools with ``F.adaptive_avg_pool2d`` in ``forward`` -> :class:`DenseNet3d` pools all three axes.
- ``MobileNetV2`` does the same in ``_forward_impl`` -> :class:`MobileNetV23d`.
- ``VGG`` and ``AlexNet`` pool to a 7x7 (6x6) map that the first classifier ``Linear`` is sized for. Their
  ``avgpool`` becomes ``AdaptiveAvgPool3d((1, 7, 7))``: depth is averaged away and the classifier keeps its
  weights. This equals inflating that ``Linear`` over a 7-deep depth axis the I3D way (its weights repeated
  over depth and divided by 7) after ``AdaptiveAvgPool3d((7, 7, 7))`` whenever the depth is a multiple of 7,
  at a seventh of the parameters, and gives the 2D logits on a depth-constant volume.

Forward twins are registered with :func:`crossd.convert.twins.register_twin`; timm's
(:mod:`crossd.convert.timm_layers`) join when timm is installed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models import VGG, AlexNet, DenseNet, MobileNetV2

from crossd.convert.report import ConversionReport
from crossd.convert.twins import forward_twin, register_twin


@register_twin(DenseNet)
class DenseNet3d(DenseNet):
    """torchvision's ``DenseNet`` on volumes: global average pooling over depth, height and width."""

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.features(x))
        return self.classifier(torch.flatten(F.adaptive_avg_pool3d(out, 1), 1))


@register_twin(MobileNetV2)
class MobileNetV23d(MobileNetV2):
    """torchvision's ``MobileNetV2`` on volumes: global average pooling over depth, height and width."""

    def _forward_impl(self, x: Tensor) -> Tensor:
        out = F.adaptive_avg_pool3d(self.features(x), 1)
        return self.classifier(torch.flatten(out, 1))


_DEPTH_POOLED = (VGG, AlexNet)  # models whose `avgpool` feeds a classifier sized for its (h, w) map


def _pool_depth_away(model: nn.Module, name: str, report: ConversionReport) -> None:
    pool = model.avgpool
    if not isinstance(pool, nn.AdaptiveAvgPool2d):
        return
    h, w = (pool.output_size, pool.output_size) if isinstance(pool.output_size, int) else pool.output_size
    model.avgpool = nn.AdaptiveAvgPool3d((1, h, w))
    where = f"{name}.avgpool" if name else "avgpool"
    report.converted[where] = f"AdaptiveAvgPool2d(({h}, {w})) -> AdaptiveAvgPool3d((1, {h}, {w}))"
    report.notes[where] = (
        f"depth averaged away so the classifier sized for a {h}x{w} map keeps its weights (= its first Linear "
        f"inflated over {h} depth bins, I3D style, when the depth is a multiple of {h})"
    )


def swap_forwards(model: nn.Module, report: ConversionReport) -> None:
    """Give every module of a known 2D type its 3D forward twin (in place), and record it in ``report``."""
    for name, module in list(model.named_modules()):
        if type(module) in _DEPTH_POOLED:
            _pool_depth_away(module, name, report)
        twin = forward_twin(module)
        if twin is not None:
            module.__class__ = twin
            report.converted[name] = f"{twin.__base__.__name__}.forward -> {twin.__name__} (3D forward)"
