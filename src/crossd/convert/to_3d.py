"""``to_3d``: turn a 2D or Cross-D model into a 3D one, choosing where the 3D kernels come from."""

from __future__ import annotations

import copy

import torch
from torch import nn

from crossd.convert.kernels import center_kernel, inflate_kernel, planar_kernel, shift_align
from crossd.convert.walk import replace_modules, triple
from crossd.nn.acs_conv import ACSConv3d
from crossd.nn.crossd_conv import CrossDConv

INITS_3D = ("crossd", "i3d", "center", "acs", "random")


def _planar(conv: nn.Module) -> torch.Tensor:
    return planar_kernel(conv) if isinstance(conv, CrossDConv) else conv.weight.detach()


def _conv_to_3d(conv: nn.Module, name: str, init: str, align: bool) -> nn.Module:
    if isinstance(conv, CrossDConv):
        kernel_size, stride, padding, dilation = conv.kernel_size, conv.stride, conv.padding, conv.dilation
        padding_mode = "zeros"
    else:
        kernel_size, stride, dilation = triple(conv.kernel_size), triple(conv.stride), triple(conv.dilation)
        padding = conv.padding if isinstance(conv.padding, str) else triple(conv.padding)
        padding_mode = conv.padding_mode
    bias = conv.bias is not None
    device, dtype = conv.weight.device, conv.weight.dtype
    if init == "acs":
        if len(set(kernel_size)) != 1 or isinstance(padding, str) or len(set(padding)) != 1:
            raise ValueError(f"{name}: ACS needs square kernels and equal padding, got {kernel_size}, {padding}")
        new = ACSConv3d(
            conv.in_channels,
            conv.out_channels,
            kernel_size[0],
            stride,
            padding[0],
            dilation[0],
            conv.groups,
            bias,
        ).to(device=device, dtype=dtype)
        with torch.no_grad():
            new.weight.copy_(_planar(conv))
            if bias:
                new.bias.copy_(conv.bias)
        return new
    new = nn.Conv3d(
        conv.in_channels,
        conv.out_channels,
        kernel_size,
        stride,
        padding,
        dilation,
        conv.groups,
        bias,
        padding_mode,
    ).to(device=device, dtype=dtype)
    if init == "random":
        return new
    if init == "crossd":
        if not isinstance(conv, CrossDConv):
            raise ValueError(
                f"{name}: init='crossd' needs a Cross-D layer, found {type(conv).__name__}; "
                "convert a 2D model with init='i3d', 'center' or 'acs'"
            )
        weight = conv.weight.detach()
        kernel = shift_align(weight) if align and conv.mode == "shift" else weight
    else:
        build = inflate_kernel if init == "i3d" else center_kernel
        kernel = build(_planar(conv), kernel_size[0])
    with torch.no_grad():
        new.weight.copy_(kernel)
        if bias:
            new.bias.copy_(conv.bias)
    return new


def _norm_to_3d(norm: nn.Module, cls: type[nn.Module]) -> nn.Module:
    """A 3D BatchNorm/InstanceNorm with the same settings, statistics and affine parameters."""
    new = cls(norm.num_features, norm.eps, norm.momentum, norm.affine, norm.track_running_stats)
    new.load_state_dict(norm.state_dict())
    tensors = [*norm.parameters(), *norm.buffers()]
    return new.to(tensors[0].device) if tensors else new


def _layer_to_3d(module: nn.Module) -> nn.Module | None:
    """The 3D twin of a non-convolution 2D layer, or ``None`` if it is not one."""
    if isinstance(module, nn.BatchNorm2d) and not isinstance(module, nn.SyncBatchNorm):
        return _norm_to_3d(module, nn.BatchNorm3d)
    if isinstance(module, nn.InstanceNorm2d):
        return _norm_to_3d(module, nn.InstanceNorm3d)
    if isinstance(module, nn.MaxPool2d):
        return nn.MaxPool3d(
            triple(module.kernel_size),
            triple(module.stride),
            triple(module.padding),
            triple(module.dilation),
            module.return_indices,
            module.ceil_mode,
        )
    if isinstance(module, nn.AvgPool2d):
        return nn.AvgPool3d(
            triple(module.kernel_size),
            triple(module.stride),
            triple(module.padding),
            module.ceil_mode,
            module.count_include_pad,
            module.divisor_override,
        )
    if isinstance(module, nn.AdaptiveAvgPool2d):
        return nn.AdaptiveAvgPool3d(triple(module.output_size))
    if isinstance(module, nn.AdaptiveMaxPool2d):
        return nn.AdaptiveMaxPool3d(triple(module.output_size), module.return_indices)
    if isinstance(module, nn.Dropout2d):
        return nn.Dropout3d(module.p, module.inplace)
    return None


def to_3d(model: nn.Module, init: str = "crossd", align: bool = False, inplace: bool = False) -> nn.Module:
    """Convert a 2D or Cross-D model into a 3D model for volumes ``(B, C, D, H, W)``.

    ``Conv2d``/``CrossDConv`` become ``Conv3d`` (``ACSConv3d`` for ``init="acs"``); ``BatchNorm2d`` becomes
    ``BatchNorm3d`` with statistics and affine parameters copied; max/avg/adaptive pools, ``InstanceNorm2d`` and
    ``Dropout2d`` become their 3D twins. Rotation heads are dropped.

    Args:
        model: a 2D model, or a Cross-D model from :func:`crossd.to_crossd`.
        init: where the 3D kernels come from: ``"crossd"`` (the stored 3D kernel; Cross-D layers only),
            ``"i3d"`` (2D kernel repeated over depth / K), ``"center"`` (2D kernel in the central slice),
            ``"acs"`` (ACS convolution of the 2D kernel), ``"random"`` (fresh ``Conv3d`` init). For Cross-D
            layers the 2D kernel is the one they use at angle 0.
        align: with ``init="crossd"`` on ``shift`` layers, use ``roll(W, (1, 1, 1))`` so the 3D centre slice is
            the kernel trained at angle 0.
        inplace: change ``model`` itself instead of a deep copy.
    """
    if init not in INITS_3D:
        raise ValueError(f"unknown init {init!r}; expected one of {INITS_3D}")
    model = model if inplace else copy.deepcopy(model)

    def rule(name: str, module: nn.Module) -> nn.Module | None:
        if isinstance(module, (nn.Conv2d, CrossDConv)):
            return _conv_to_3d(module, name or "model", init, align)
        return _layer_to_3d(module)

    return replace_modules(model, rule)
