"""TensorFlow-style ``"SAME"`` padding computed from the input size, for images and volumes alike.

timm's ``Conv2dSame``/``MaxPool2dSame``/``AvgPool2dSame`` (the ``tf_*`` models) pad in ``forward``, for two
axes; :class:`PadSame` pads every spatial axis of whatever it is given, so one wrapper serves the Cross-D
model (images) and the 3D model (volumes).
"""

from __future__ import annotations

import math

import torch.nn.functional as F
from torch import Tensor, nn

from crossd.ops.conv import same_padding, triple


class PadSame(nn.Module):
    """``layer`` after ``"SAME"`` padding of every spatial axis of its input ``(N, C, *spatial)``.

    Args:
        layer: a convolution or pool with ``padding=0`` (``CrossDConv``, ``Conv3d``, ``MaxPool3d``, ...).
        kernel_size, stride, dilation: per-axis ``(d, h, w)`` values; an image uses the last two.
        value: the padding value (``-inf`` for max pooling).
    """

    def __init__(self, layer: nn.Module, kernel_size, stride, dilation, value: float = 0.0):
        super().__init__()
        self.layer = layer
        self.kernel_size, self.stride, self.dilation = triple(kernel_size), triple(stride), triple(dilation)
        self.value = value

    def forward(self, x: Tensor) -> Tensor:
        spatial = x.dim() - 2
        sizes = (x.shape[2:], self.kernel_size[-spatial:], self.stride[-spatial:], self.dilation[-spatial:])
        axes = zip(*sizes, strict=True)
        pads = [same_padding(*axis) for axis in axes]
        flat = [p for before_after in reversed(pads) for p in before_after]  # F.pad wants the last axis first
        return self.layer(F.pad(x, flat, value=self.value))

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, dilation={self.dilation}, value={self.value}"


_SAME_PADDED: list[type[nn.Module]] = []


def register_same_padded(*types: type[nn.Module]) -> None:
    """Register 2D conv and pool classes that pad ``"SAME"`` in ``forward`` (timm's ``Conv2dSame``, ...): the
    converters wrap them in :class:`PadSame` (:mod:`crossd.convert.timm_layers` registers timm's)."""
    _SAME_PADDED.extend(t for t in types if t not in _SAME_PADDED)


def same_padded_types() -> tuple[type, ...]:
    """The registered dynamically ``"SAME"``-padded conv and pool classes (``()`` without timm)."""
    return tuple(_SAME_PADDED)


def wrap_same(old: nn.Module, new: nn.Module) -> PadSame:
    """``new`` (the converted ``old``, with ``padding=0``) behind the ``"SAME"`` padding ``old`` computed."""
    value = -math.inf if isinstance(old, nn.MaxPool2d) else 0.0
    dilation = getattr(old, "dilation", 1)
    return PadSame(new, old.kernel_size, old.stride, dilation, value)
