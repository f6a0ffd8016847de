"""``to_crossd``: turn every ``nn.Conv2d`` of a 2D model into a :class:`~crossd.nn.CrossDConv`."""

from __future__ import annotations

import copy

import torch
from torch import nn

from crossd.convert.inits import init_names
from crossd.convert.kernels import crossd_kernel_from_2d
from crossd.convert.report import ConversionReport, check_forward
from crossd.convert.walk import replace_modules
from crossd.nn.crossd_conv import CrossDConv

CROSSD_INITS = init_names("to_crossd")


def conv2d_to_crossd(conv: nn.Conv2d, mode: str = "rotate", init: str = "random", name: str = "conv") -> CrossDConv:
    """One ``Conv2d`` as a ``CrossDConv`` with the same hyper-parameters (read from its attributes)."""
    if conv.kernel_size[0] != conv.kernel_size[1]:
        raise ValueError(f"{name}: Cross-D needs square kernels, got kernel_size={conv.kernel_size}")
    if conv.padding_mode != "zeros":
        raise ValueError(f"{name}: Cross-D supports padding_mode='zeros' only, got {conv.padding_mode!r}")
    if mode == "rotate" and conv.kernel_size[0] % 2 == 0:
        raise ValueError(
            f"{name}: mode 'rotate' needs odd kernels, got kernel_size={conv.kernel_size}; use mode='shift' "
            "for models with even kernels (e.g. ConvNeXt's 4x4 stem and 2x2 downsampling)"
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
    ).to(device=conv.weight.device, dtype=conv.weight.dtype)
    if init != "random":
        with torch.no_grad():
            new.weight.copy_(crossd_kernel_from_2d(conv.weight.detach(), init, mode))
            if conv.bias is not None:
                new.bias.copy_(conv.bias)
    return new


def to_crossd(
    model: nn.Module,
    mode: str = "rotate",
    init: str = "random",
    inplace: bool = False,
    example_input: torch.Tensor | None = None,
    return_report: bool = False,
) -> nn.Module | tuple[nn.Module, ConversionReport]:
    """Replace every ``nn.Conv2d`` with a ``CrossDConv`` keeping its hyper-parameters.

    Everything else stays as it is: norms, pools and activations are already 2D. ``ConvTranspose2d`` is left a
    2D layer on purpose (a Cross-D transposed convolution does not exist); it is listed in the report's
    ``notes``, and :func:`crossd.to_3d` later turns it into a ``ConvTranspose3d``.

    Args:
        model: any 2D model (torchvision ResNet, DenseNet, VGG, ConvNeXt, EfficientNet, MONAI 2D U-Net, ...).
        mode: ``"rotate"`` (odd kernels only) or ``"shift"``.
        init: ``"random"`` (fresh 3D kernels), ``"center"`` (each 2D kernel in the slice used at angle 0, zeros
            elsewhere: the model equals itself when every head outputs angle 0), ``"inflate"`` (I3D style).
        inplace: change ``model`` itself instead of a deep copy.
        example_input: a small image batch ``(N, C, H, W)``; when given, the converted model is run on it (eval
            mode, no gradients) and the module whose forward fails is reported in a warning.
        return_report: also return the :class:`~crossd.convert.report.ConversionReport`.

    Returns:
        The converted model (an ordinary ``nn.Module`` of the same class), and the report when ``return_report``.
    """
    if init not in CROSSD_INITS:
        raise ValueError(f"unknown init {init!r}; expected one of {CROSSD_INITS}")
    model = model if inplace else copy.deepcopy(model)
    report = ConversionReport()

    def rule(name: str, module: nn.Module) -> nn.Module | None:
        if isinstance(module, nn.Conv2d):
            report.converted[name] = "Conv2d -> CrossDConv"
            return conv2d_to_crossd(module, mode, init, name or "model")
        if isinstance(module, nn.ConvTranspose2d):
            report.notes[name] = "ConvTranspose2d left 2D (no Cross-D transposed convolution)"
        return None

    model = replace_modules(model, rule)
    if example_input is not None:
        report.add_unconverted(check_forward(model, example_input))
    report.warn("to_crossd")
    return (model, report) if return_report else model
