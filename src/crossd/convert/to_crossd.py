"""``to_crossd``: turn every ``nn.Conv2d`` of a 2D model into a :class:`~crossd.nn.CrossDConv`."""

from __future__ import annotations

import copy

import torch
from torch import nn

from crossd.convert.inits import get_init, init_names
from crossd.convert.kernels import crossd_kernel_from_2d
from crossd.convert.report import ConversionReport, check_forward, own_forward
from crossd.convert.same_padding import same_padded_types, wrap_same
from crossd.convert.walk import replace_modules
from crossd.errors import SettingsError
from crossd.nn.crossd_conv import CrossDConv
from crossd.ops.groups import Granularity, check_granularity
from crossd.ops.slicing import MODES, check_mode

CROSSD_INITS = init_names("to_crossd")
EVEN_KERNEL_POLICIES = ("shift", "plain", "error")


def mode_for_kernel(mode: str, kernel_size: int, even_kernels: str) -> str | None:
    """The Cross-D mode a ``Conv2d`` with this kernel size gets: ``mode`` if it can hold the kernel; else by the
    ``even_kernels`` policy ``"shift"`` (the ``shift`` mode, defined for every size) or ``"plain"`` (``None``:
    keep the ``Conv2d``); ``"error"`` raises the mode's own :class:`~crossd.errors.SettingsError`."""
    try:
        check_mode(mode, kernel_size)
        return mode
    except SettingsError:
        if even_kernels == "error":
            raise
    return "shift" if even_kernels == "shift" else None


def conv2d_to_crossd(
    conv: nn.Conv2d, mode: str = "rotate", init: str = "random", name: str = "conv", granularity: Granularity = "sample"
) -> CrossDConv:
    """One ``Conv2d`` as a ``CrossDConv`` with the same hyper-parameters (read from its attributes)."""
    if conv.kernel_size[0] != conv.kernel_size[1]:
        raise SettingsError(f"{name}: Cross-D needs square kernels, got kernel_size={conv.kernel_size}", field="model")
    if conv.padding_mode != "zeros":
        raise SettingsError(
            f"{name}: Cross-D supports padding_mode='zeros' only, got {conv.padding_mode!r}", field="model"
        )
    new = CrossDConv(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size[0],
        stride=conv.stride,
        padding=conv.padding,
        dilation=conv.dilation,
        groups=conv.groups,
        bias=conv.bias is not None,
        mode=mode,
        granularity=granularity,
    ).to(device=conv.weight.device, dtype=conv.weight.dtype)
    kernel = get_init(init, "to_crossd").kernel
    if kernel is not None:
        with torch.no_grad():
            new.weight.copy_(crossd_kernel_from_2d(conv.weight.detach(), kernel, mode))
            if conv.bias is not None:
                new.bias.copy_(conv.bias)
    return new


def to_crossd(
    model: nn.Module,
    mode: str = "rotate",
    init: str = "random",
    even_kernels: str = "shift",
    inplace: bool = False,
    example_input: torch.Tensor | None = None,
    return_report: bool = False,
    granularity: Granularity = "sample",
) -> nn.Module | tuple[nn.Module, ConversionReport]:
    """Replace every ``nn.Conv2d`` with a ``CrossDConv`` keeping its hyper-parameters.

    timm's ``Conv2dSame`` becomes :class:`~crossd.convert.same_padding.PadSame` around a ``CrossDConv`` (its
    "SAME" padding computed from the input, for images and later volumes alike). A ``Conv2d`` subclass with a
    ``forward`` of its own (e.g. timm's ``StdConv2d``) is converted but named in the report's ``unconverted``.
    Everything else stays as it is: norms, pools and activations are already 2D. ``ConvTranspose2d`` is left a
    2D layer on purpose (a Cross-D transposed convolution does not exist); it is listed in the report's
    ``notes``, and :func:`crossd.to_3d` later turns it into a ``ConvTranspose3d``.

    Args:
        model: any 2D model (torchvision ResNet, DenseNet, VGG, ConvNeXt, EfficientNet, MONAI 2D U-Net, ...).
        mode: ``"rotate"``, ``"project"`` (both odd kernels only) or ``"shift"``.
        init: ``"random"`` (fresh 3D kernels), ``"center"`` (each 2D kernel in the slice used at angle 0, zeros
            elsewhere: the model equals itself when every head outputs angle 0), ``"inflate"`` (I3D style).
        even_kernels: what happens to a layer whose kernel ``mode`` cannot hold (an even kernel in ``rotate``
            mode, e.g. ConvNeXt's 4x4 stem and 2x2 downsampling): ``"shift"`` (default) makes it a ``shift``-mode
            Cross-D layer; ``"plain"`` keeps the ``Conv2d`` (``to_3d(init="crossd")`` then inflates it I3D
            style); ``"error"`` raises. Every layer it applied to is listed in the report's ``notes``.
        inplace: change ``model`` itself instead of a deep copy.
        example_input: a small image batch ``(N, C, H, W)``; when given, the converted model is run on it (eval
            mode, no gradients) and the module whose forward fails is reported in a warning.
        return_report: also return the :class:`~crossd.convert.report.ConversionReport`.
        granularity: planes per 2D batch of every new layer: ``"sample"``, ``"batch"`` or an integer ``G``
            (contiguous groups of ``ceil(B / G)`` samples, per process under ``torchrun``; see
            :class:`~crossd.nn.CrossDConv`).

    Returns:
        The converted model (an ordinary ``nn.Module`` of the same class), and the report when ``return_report``.
    """
    get_init(init, "to_crossd")
    if mode not in MODES:
        raise SettingsError(f"must be one of {MODES}, got {mode!r}", field="mode")
    if even_kernels not in EVEN_KERNEL_POLICIES:
        raise SettingsError(f"must be one of {EVEN_KERNEL_POLICIES}, got {even_kernels!r}", field="even_kernels")
    check_granularity(granularity)
    model = model if inplace else copy.deepcopy(model)
    report = ConversionReport()
    same_padded = same_padded_types()

    def rule(name: str, module: nn.Module) -> nn.Module | None:
        if isinstance(module, nn.Conv2d):
            where = name or "model"
            try:
                layer_mode = mode_for_kernel(mode, module.kernel_size[0], even_kernels)
            except SettingsError as exc:
                raise SettingsError(f"{where}: {exc} (or even_kernels 'shift' or 'plain')", field="model") from None
            kind = type(module).__name__
            if layer_mode != mode:
                kept = f"{layer_mode} mode" if layer_mode else "a plain Conv2d"
                report.notes[name] = f"{kind} kernel {module.kernel_size} cannot be {mode!r}: {kept} (even_kernels)"
            if layer_mode is None:
                return None
            new = conv2d_to_crossd(module, layer_mode, init, where, granularity).train(module.training)
            if (dropped := own_forward(module, nn.Conv2d, same_padded)) is not None:
                report.add_unconverted({name: dropped})
            if isinstance(module, same_padded):
                report.converted[name] = f"{kind} -> PadSame(CrossDConv)"
                return wrap_same(module, new)
            report.converted[name] = f"{kind} -> CrossDConv"
            return new
        if isinstance(module, nn.ConvTranspose2d):
            report.notes[name] = "ConvTranspose2d left 2D (no Cross-D transposed convolution)"
        return None

    model = replace_modules(model, rule)
    if example_input is not None:
        report.add_unconverted(check_forward(model, example_input))
    report.warn("to_crossd")
    return (model, report) if return_report else model
