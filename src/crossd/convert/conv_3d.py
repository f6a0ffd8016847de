"""The 3D layer a kernel init builds for one 2D convolution (``Conv2d``, ``CrossDConv``, ``ConvTranspose2d``).

Each builder takes the 2D layer and a :class:`LayerContext` and returns the new layer with, when the layer could
not be built the usual way, a note for the conversion report. :mod:`crossd.convert.inits` attaches them to the
inits; :func:`crossd.to_3d` calls them.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor, nn

from crossd.convert.kernels import KernelFn, flat_kernel, planar_kernel, shift_align
from crossd.errors import SettingsError
from crossd.nn.acs_conv import ACSConv3d, acs_views_agree
from crossd.nn.crossd_conv import CrossDConv
from crossd.ops.conv import triple

AXES = ("d", "h", "w")


@dataclass(frozen=True)
class LayerContext:
    """What a builder may need besides the layer.

    Attributes:
        name: the layer's qualified name (for messages and notes).
        align: roll ``shift``-mode Cross-D kernels so their centre slice is the angle-0 kernel (``init="crossd"``).
        axis: the volume axis (``"d"``, ``"h"`` or ``"w"``) that flat (2.5D) kernels have size 1 along.
        same_padded: the layer is (or sits inside) a ``"SAME"``-padding wrapper that pads all three axes.
        pools_downsample: the network down-samples with pools (outside residual shortcuts), which 2.5D
            transposed convolutions then undo along ``axis`` (:func:`pools_downsample`).
    """

    name: str
    align: bool = False
    axis: str = "d"
    same_padded: bool = False
    pools_downsample: bool = True


Built = tuple[nn.Module, "str | None"]
ConvBuilder = Callable[[nn.Module, LayerContext], Built]


class Geometry(NamedTuple):
    """Per-axis ``(d, h, w)`` hyper-parameters of a 3D convolution (``padding`` may stay ``"same"``/``"valid"``)."""

    kernel_size: tuple
    stride: tuple
    padding: tuple | str
    dilation: tuple


def check_axis(axis: str) -> str:
    """``axis`` if it is one of :data:`AXES`, else a :class:`~crossd.errors.SettingsError`."""
    if axis not in AXES:
        raise SettingsError(f"must be one of {', '.join(AXES)}, got {axis!r}", field="axis")
    return axis


def planar(conv: nn.Module) -> Tensor:
    """The 2D kernel of a ``Conv2d``, or the one a ``CrossDConv`` uses at angle 0: ``(Co, Ci/groups, K, K)``."""
    return planar_kernel(conv) if isinstance(conv, CrossDConv) else conv.weight.detach()


def geometry(conv: nn.Module) -> Geometry:
    """The :class:`Geometry` of a ``Conv2d``/``CrossDConv`` as 3D triples (depth copies height)."""
    if isinstance(conv, CrossDConv):
        return Geometry(conv.kernel_size, conv.stride, conv.padding, conv.dilation)
    padding = conv.padding if isinstance(conv.padding, str) else triple(conv.padding)
    return Geometry(triple(conv.kernel_size), triple(conv.stride), padding, triple(conv.dilation))


def flat(values: tuple | str, axis: str, value: int) -> tuple | str:
    """A 3D triple whose in-plane pair (its last two entries) goes to the axes other than ``axis``, which gets
    ``value``: ``(kd, kh, kw), "h", 1 -> (kh, 1, kw)``. Strings (``"same"``, ``"valid"``) are returned as they are."""
    if isinstance(values, str):
        return values
    pair = list(values[-2:])
    pair.insert(AXES.index(axis), value)
    return tuple(pair)


def flat_geometry(conv: nn.Module, axis: str) -> Geometry:
    """The geometry of a 2.5D layer: the 2D layer's in-plane values on the two axes other than ``axis``; along
    ``axis`` kernel 1, stride 1, padding 0 and dilation 1 (every slice is convolved; only pools reduce ``axis``)."""
    fills = (1, 1, 0, 1)  # kernel size, stride, padding, dilation along `axis`
    return Geometry(*(flat(values, axis, fill) for values, fill in zip(geometry(conv), fills, strict=True)))


SHORTCUT_NAMES = ("downsample", "shortcut")


def in_shortcut(name: str) -> bool:
    """Whether the qualified module ``name`` lies in a residual shortcut branch, as torchvision, timm and MONAI
    name them (a component ``downsample`` or ``shortcut``)."""
    return any(part in SHORTCUT_NAMES for part in name.split("."))


def pools_downsample(model: nn.Module) -> bool:
    """Whether ``model`` has a max or average pool of stride > 1 outside residual shortcuts: in 2.5D only those
    reduce the flat axis (convolutions stride in-plane only), so only then do transposed convolutions up-sample
    it."""
    return any(
        isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)) and m.stride not in (1, (1, 1)) and not in_shortcut(name)
        for name, m in model.named_modules()
    )


def flat_pool(pool: nn.MaxPool3d | nn.AvgPool3d, axis: str) -> nn.MaxPool3d | nn.AvgPool3d:
    """``pool`` with kernel 1, stride 1, padding 0 (and dilation 1) along ``axis``: a 2.5D network's pool in a
    residual shortcut (ResNet-D's average-pool shortcut), which must keep the slices as the strided 2.5D
    convolution beside it does."""
    new = copy.copy(pool)
    fills = {"kernel_size": 1, "stride": 1, "padding": 0, "dilation": 1}
    for attr, fill in fills.items():
        if hasattr(new, attr):
            setattr(new, attr, flat(triple(getattr(new, attr)), axis, fill))
    return new


def _filled(new: nn.Module, conv: nn.Module, kernel: Tensor | None) -> nn.Module:
    """``new`` on ``conv``'s device and dtype, holding ``kernel`` and ``conv``'s bias (a fresh init if ``kernel``
    is ``None``)."""
    new = new.to(device=conv.weight.device, dtype=conv.weight.dtype)
    if kernel is not None:
        with torch.no_grad():
            new.weight.copy_(kernel)
            if conv.bias is not None:
                new.bias.copy_(conv.bias)
    return new


def _conv3d(conv: nn.Module, g: Geometry, kernel: Tensor | None) -> nn.Conv3d:
    """A ``Conv3d`` of ``conv``'s channels, groups, bias and padding mode with geometry ``g``; ``kernel`` and
    ``conv``'s bias copied in unless ``kernel`` is ``None`` (a fresh init)."""
    bias = conv.bias is not None
    padding_mode = getattr(conv, "padding_mode", "zeros")
    new = nn.Conv3d(
        conv.in_channels,
        conv.out_channels,
        g.kernel_size,
        g.stride,
        g.padding,
        g.dilation,
        conv.groups,
        bias,
        padding_mode,
    )
    return _filled(new, conv, kernel)


def crossd_conv(conv: nn.Module, ctx: LayerContext) -> Built:
    """A Cross-D layer's stored 3D kernel in a ``Conv3d`` (rolled by ``(1, 1, 1)`` for ``shift`` with ``align``)."""
    if not isinstance(conv, CrossDConv):
        raise SettingsError(
            f"'crossd' needs a Cross-D layer, found {type(conv).__name__} at {ctx.name}; "
            "convert a 2D model with 'i3d', 'center' or 'acs'",
            field="init",
        )
    weight = conv.weight.detach()
    kernel = shift_align(weight) if ctx.align and conv.mode == "shift" else weight
    return _conv3d(conv, geometry(conv), kernel), None


def planar_conv(kernel: KernelFn | None) -> ConvBuilder:
    """A builder of a ``Conv3d`` whose kernel is ``kernel`` of the 2D (angle-0) kernel, or a fresh one for
    ``None``."""

    def build(conv: nn.Module, ctx: LayerContext) -> Built:
        g = geometry(conv)
        if kernel is None:
            return _conv3d(conv, g, None), None
        shape = (conv.out_channels, conv.in_channels // conv.groups, *g.kernel_size)
        return _conv3d(conv, g, kernel(planar(conv), shape)), None

    return build


def flat_conv(conv: nn.Module, ctx: LayerContext) -> Built:
    """2.5D: a ``Conv3d`` of :func:`flat_geometry` along ``ctx.axis`` holding the 2D (angle-0) kernel
    (:func:`~crossd.convert.kernels.flat_kernel`): every slice across ``ctx.axis`` is convolved as the 2D layer
    convolves an image (a strided layer strides in-plane only)."""
    return _conv3d(conv, flat_geometry(conv, ctx.axis), flat_kernel(planar(conv), ctx.axis)), None


def _acs_views_agree(g: Geometry) -> bool:
    """Whether ``ACSConv3d`` can hold a layer of geometry ``g``: equal padding and dilation on every axis that
    keep the three views' output sizes."""
    if isinstance(g.padding, str) or len({*g.padding}) != 1 or len({*g.dilation}) != 1:
        return False
    return acs_views_agree(g.kernel_size[0], g.padding[0], g.dilation[0])


def acs_conv(kernel: KernelFn) -> ConvBuilder:
    """A builder of ``ACSConv3d`` holding the 2D kernel, or of one ``Conv3d`` holding ``kernel`` (ACS's views as
    one 3D kernel) for grouped layers (one convolution instead of three over overlapping groups), ``"SAME"``-padded
    ones (padded on all three axes, a 1-wide view axis would not fit) and ones whose padding is not
    ``dilation * (K - 1) / 2`` (``ACSConv3d``'s views would differ in size)."""

    def build(conv: nn.Module, ctx: LayerContext) -> Built:
        g = geometry(conv)
        if len(set(g.kernel_size)) != 1:
            raise SettingsError(f"{ctx.name}: ACS needs square kernels, got {g.kernel_size}", field="model")
        if conv.groups > 1 or ctx.same_padded or not _acs_views_agree(g):
            shape = (conv.out_channels, conv.in_channels // conv.groups, *g.kernel_size)
            note = "grouped, SAME-padded or not 'same' padding: ACS views as one Conv3d (kernels in central planes)"
            return _conv3d(conv, g, kernel(planar(conv), shape)), note
        bias = conv.bias is not None
        new = ACSConv3d(
            conv.in_channels,
            conv.out_channels,
            g.kernel_size[0],
            g.stride,
            g.padding[0],
            g.dilation[0],
            conv.groups,
            bias,
        ).to(device=conv.weight.device, dtype=conv.weight.dtype)
        with torch.no_grad():
            new.weight.copy_(planar(conv))
            if bias:
                new.bias.copy_(conv.bias)
        return new, None

    return build


def _transposed3d(conv: nn.ConvTranspose2d, values: list[tuple], kernel: Tensor | None) -> nn.ConvTranspose3d:
    """A ``ConvTranspose3d`` of ``conv``'s channels, groups, bias and padding mode with per-axis ``values``
    ``[kernel_size, stride, padding, output_padding, dilation]``; ``kernel`` and the bias copied unless ``None``."""
    kernel_size, stride, padding, output_padding, dilation = values
    bias = conv.bias is not None
    new = nn.ConvTranspose3d(
        conv.in_channels,
        conv.out_channels,
        kernel_size,
        stride,
        padding,
        output_padding,
        conv.groups,
        bias,
        dilation,
        conv.padding_mode,
    )
    return _filled(new, conv, kernel)


def _transposed_values(conv: nn.ConvTranspose2d) -> list[tuple]:
    return [triple(v) for v in (conv.kernel_size, conv.stride, conv.padding, conv.output_padding, conv.dilation)]


def transposed_conv(kernel: KernelFn | None) -> ConvBuilder:
    """A builder of a ``ConvTranspose3d`` with the hyper-parameters of a ``ConvTranspose2d`` (depth copies
    height) whose kernel ``(Ci, Co/groups, Kd, K, K)`` is ``kernel`` of the 2D one, or fresh for ``None``."""

    def build(conv: nn.ConvTranspose2d, ctx: LayerContext) -> Built:
        values = _transposed_values(conv)
        if kernel is None:
            return _transposed3d(conv, values, None), None
        shape = (conv.in_channels, conv.out_channels // conv.groups, *values[0])
        return _transposed3d(conv, values, kernel(conv.weight.detach(), shape)), None

    return build


def flat_transposed_conv(conv: nn.ConvTranspose2d, ctx: LayerContext) -> Built:
    """2.5D: a ``ConvTranspose3d`` that convolves each slice across ``ctx.axis`` as the 2D layer does. Along
    ``ctx.axis`` it undoes a pool: when the network down-samples with pools (``ctx.pools_downsample``, a U-Net such
    as MONAI's ``BasicUNet``) it writes each slice to ``s`` consecutive output slices (kernel ``s``, stride ``s``, no
    padding; ``s`` its stride there, depth copying height: nearest-neighbour up-sampling, every output slice from
    one input slice); when it down-samples with strided convolutions only (which keep every slice in 2.5D, as
    MONAI's ``UNet``), the kernel is flat (``s = 1``)."""
    values = _transposed_values(conv)
    s = values[1][AXES.index(ctx.axis)] if ctx.pools_downsample else 1
    values = [flat(v, ctx.axis, fill) for v, fill in zip(values, (s, s, 0, 0, 1), strict=True)]
    index = 2 + AXES.index(ctx.axis)
    kernel = flat_kernel(conv.weight.detach(), ctx.axis).repeat_interleave(s, dim=index)
    return _transposed3d(conv, values, kernel), None
