"""``to_3d``: turn a 2D or Cross-D model into a 3D one, choosing where the 3D kernels come from."""

from __future__ import annotations

import copy

import torch
from torch import nn

from crossd.convert.conv_3d import LayerContext, check_axis, flat_pool, in_shortcut, pools_downsample
from crossd.convert.forward_twins import swap_forwards
from crossd.convert.inits import KernelInit, get_init, init_names
from crossd.convert.really_3d import check_really_3d
from crossd.convert.report import ConversionReport, own_forward, scan_2d_layers
from crossd.convert.same_padding import PadSame, same_padded_types, wrap_same
from crossd.convert.twins import layer_to_3d
from crossd.convert.walk import replace_modules
from crossd.nn.crossd_conv import CrossDConv

INITS_3D = init_names("to_3d")


def _pad_for_layers(model: nn.Module) -> None:
    """Make every ``"SAME"`` padding pad for the ``Conv3d`` it holds (a 2.5D kernel is flat along one axis, so that
    axis needs no padding); other layers keep the 2D layer's values on all three axes."""
    for module in model.modules():
        if isinstance(module, PadSame) and isinstance(module.layer, nn.Conv3d):
            layer = module.layer
            module.kernel_size, module.stride, module.dilation = layer.kernel_size, layer.stride, layer.dilation


def _broadcast_parameters_to_3d(model: nn.Module, report: ConversionReport) -> None:
    """Give channel-broadcast tensors ``(C, 1, 1)`` (e.g. ConvNeXt's ``layer_scale``) a depth axis: ``(C, 1, 1, 1)``."""
    for name, module in model.named_modules():
        for attr, tensor in [*module.named_parameters(recurse=False), *module.named_buffers(recurse=False)]:
            if tensor is None or tensor.dim() != 3 or tuple(tensor.shape[1:]) != (1, 1):
                continue
            new = tensor.detach().unsqueeze(-1)
            if isinstance(tensor, nn.Parameter):
                setattr(module, attr, nn.Parameter(new, requires_grad=tensor.requires_grad))
            else:
                module.register_buffer(attr, new)
            qualified = f"{name}.{attr}" if name else attr
            report.converted[qualified] = f"{tuple(tensor.shape)} -> {tuple(new.shape)} (channel broadcast)"


def to_3d(
    model: nn.Module,
    init: str = "crossd",
    align: bool = False,
    inplace: bool = False,
    example_input: torch.Tensor | None = None,
    return_report: bool = False,
    axis: str = "d",
) -> nn.Module | tuple[nn.Module, ConversionReport]:
    """Convert a 2D or Cross-D model into a 3D model for volumes ``(N, C, D, H, W)``.

    ``Conv2d``/``CrossDConv`` become ``Conv3d`` (``ACSConv3d`` for ``init="acs"``); ``ConvTranspose2d`` becomes
    ``ConvTranspose3d`` (kernel by ``init``; ``"crossd"``/``"acs"`` fall back to ``"i3d"`` there; each init's
    builders are in its :class:`~crossd.convert.inits.KernelInit`); norms, pools,
    padding, up-sampling, dropout and channels-last permutes become their 3D twins
    (:func:`crossd.convert.twins.layer_to_3d`); channel-broadcast parameters ``(C, 1, 1)`` get a depth axis.
    ``GroupNorm``, ``LayerNorm`` and activations are dimension-agnostic and stay. Rotation heads are dropped.
    Known models whose own ``forward`` is 2D-only get a 3D forward twin, by exact type
    (:mod:`crossd.convert.forward_twins`: torchvision DenseNet, MobileNetV2, VGG/AlexNet classifiers; timm's
    ConvNeXt blocks, squeeze-excite and pools; layer and forward twins share the registry of
    :mod:`crossd.convert.twins`); timm's ``"SAME"``-padded layers keep their padding
    (:class:`~crossd.convert.same_padding.PadSame`). Each is listed in the report.

    What cannot be converted -- a 2D-only layer it does not know, a ``forward`` that calls ``F.*2d`` or
    ``interpolate(mode="bilinear")`` -- is named (by a static scan, before any forward pass) in a
    :class:`~crossd.convert.report.ConversionWarning` and in the report, never skipped silently. With
    ``example_input`` the model is also run once under :func:`~crossd.convert.really_3d.check_really_3d`: every
    module that calls an image operation (``conv2d``, a 2D pool, a two-axis mean, ...) or whose forward fails is
    named, and ``report.really_3d`` holds the verdict (``None`` without ``example_input``: the converter cannot
    guess a valid input size).

    Args:
        model: a 2D model, or a Cross-D model from :func:`crossd.to_crossd`.
        init: where the 3D kernels come from: ``"crossd"`` (the stored 3D kernel; Cross-D layers only -- plain
            ``Conv2d`` layers a Cross-D model kept, e.g. with ``even_kernels="plain"``, use ``"i3d"``, noted),
            ``"i3d"`` (2D kernel repeated over depth / K), ``"center"`` (2D kernel in the central slice),
            ``"acs"`` (ACS convolution of the 2D kernel; for grouped and ``"SAME"``-padded layers a ``Conv3d`` holding
            :func:`~crossd.convert.kernels.acs_kernel`), ``"random"`` (fresh ``Conv3d`` init), ``"2.5d"`` (2.5D:
            the 2D kernel as a 3D kernel of size 1 along ``axis``, ``(Co, Ci/g, 1, K, K)`` for ``"d"``, with stride 1,
            padding 0 and dilation 1 along it: every slice is convolved in-plane and slices mix only through the
            pools, which stay 3D (ACSConv's ``Conv2_5d`` keeps the stride on the flat axis); a pool in a residual
            shortcut (a module named ``downsample`` or ``shortcut``, ResNet-D's) keeps every slice too, as the
            strided convolution beside it; a transposed convolution writes each slice to ``stride`` slices along
            ``axis``, undoing a pool, or is flat there when the network down-samples with strided convolutions
            only).
            For Cross-D layers the 2D kernel is the one they use at angle 0. The registered names are
            :func:`crossd.convert.inits.init_names` ``("to_3d")``.
        align: with ``init="crossd"`` on ``shift`` layers, use ``roll(W, (1, 1, 1))`` so the 3D centre slice is
            the kernel trained at angle 0.
        inplace: change ``model`` itself instead of a deep copy.
        example_input: a small volume ``(N, C, D, H, W)``, best with ``D > 1`` and ``D != H``; when given, the
            converted model is run on it once (eval mode, no gradients) for the really-3D verdict, and the module
            whose forward fails is reported.
        return_report: also return the :class:`~crossd.convert.report.ConversionReport`.
        axis: with ``init="2.5d"``, the volume axis the kernels are flat along: ``"d"`` (depth; each ``(H, W)``
            slice convolved as the 2D network does), ``"h"`` or ``"w"``; other inits ignore it.

    Returns:
        The converted model (an ordinary ``nn.Module``), and the report when ``return_report``.
    """
    kernel_init = get_init(init, "to_3d")
    check_axis(axis)
    model = model if inplace else copy.deepcopy(model)
    report = ConversionReport()
    swap_forwards(model, report)
    same_padded = same_padded_types()
    planar_fallback = kernel_init.needs_crossd and any(isinstance(m, CrossDConv) for m in model.modules())
    padded_inside = {f"{n}.layer" for n, m in model.named_modules() if isinstance(m, PadSame)}
    pooled = pools_downsample(model)

    def conv_init(name: str, module: nn.Module) -> KernelInit:
        if planar_fallback and not isinstance(module, CrossDConv):
            kind = type(module).__name__
            report.notes[name] = (
                f"{kind} is not a Cross-D layer (no 3D kernel); built with init={kernel_init.fallback!r}"
            )
            return get_init(kernel_init.fallback)
        return kernel_init

    def conv_to_3d(name: str, module: nn.Module) -> nn.Module:
        context = LayerContext(name or "model", align, axis, name in padded_inside or isinstance(module, same_padded))
        new, note = conv_init(name, module).conv(module, context)
        if note is not None:
            report.notes[name] = note
        return new

    def transposed_to_3d(name: str, module: nn.ConvTranspose2d) -> nn.Module:
        used = kernel_init if kernel_init.transposed is not None else get_init(kernel_init.fallback)
        if used is not kernel_init:
            report.notes[name] = (
                f"ConvTranspose2d has no {init!r} kernel; ConvTranspose3d built with init={used.name!r}"
            )
        return used.transposed(module, LayerContext(name, align, axis, pools_downsample=pooled))[0]

    def rule(name: str, module: nn.Module) -> nn.Module | None:
        new = None
        if isinstance(module, same_padded):
            inner = conv_to_3d(name, module) if isinstance(module, nn.Conv2d) else layer_to_3d(module)
            new = wrap_same(module, inner)
        elif isinstance(module, (nn.Conv2d, CrossDConv)):
            new = conv_to_3d(name, module)
            if isinstance(module, nn.Conv2d) and (dropped := own_forward(module, nn.Conv2d)) is not None:
                report.add_unconverted({name: dropped})
        elif isinstance(module, nn.ConvTranspose2d):
            new = transposed_to_3d(name, module)
        else:
            new = layer_to_3d(module)
            if kernel_init.uses_axis and isinstance(new, (nn.MaxPool3d, nn.AvgPool3d)) and in_shortcut(name):
                new = flat_pool(new, axis)
        if new is not None:
            report.converted[name] = f"{type(module).__name__} -> {type(new).__name__}"
            new.train(module.training)
        return new

    model = replace_modules(model, rule)
    _pad_for_layers(model)
    _broadcast_parameters_to_3d(model, report)
    report.add_unconverted(scan_2d_layers(model))
    if example_input is not None:
        found = check_really_3d(model, example_input)
        report.really_3d = not found
        report.add_unconverted(found)
    report.warn("to_3d")
    return (model, report) if return_report else model
