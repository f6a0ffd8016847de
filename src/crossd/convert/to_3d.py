"""``to_3d``: turn a 2D or Cross-D model into a 3D one, choosing where the 3D kernels come from."""

from __future__ import annotations

import copy

import torch
from torch import nn

from crossd.convert.forward_twins import swap_forwards
from crossd.convert.inits import init_names
from crossd.convert.kernels import acs_kernel, center_kernel, inflate_kernel, planar_kernel, shift_align
from crossd.convert.layers_3d import layer_to_3d
from crossd.convert.really_3d import check_really_3d
from crossd.convert.report import ConversionReport, own_forward, scan_2d_layers
from crossd.convert.same_padding import PadSame, same_padded_types, wrap_same
from crossd.convert.walk import replace_modules
from crossd.errors import SettingsError
from crossd.nn.acs_conv import ACSConv3d, acs_views_agree
from crossd.nn.crossd_conv import CrossDConv
from crossd.ops.conv import triple

INITS_3D = init_names("to_3d")


def _planar(conv: nn.Module) -> torch.Tensor:
    return planar_kernel(conv) if isinstance(conv, CrossDConv) else conv.weight.detach()


def _geometry(conv: nn.Module) -> tuple:
    """``(kernel_size, stride, padding, dilation, padding_mode)`` of a ``Conv2d``/``CrossDConv`` as 3D triples
    (``padding`` may stay ``"same"``/``"valid"``)."""
    if isinstance(conv, CrossDConv):
        return conv.kernel_size, conv.stride, conv.padding, conv.dilation, "zeros"
    padding = conv.padding if isinstance(conv.padding, str) else triple(conv.padding)
    return triple(conv.kernel_size), triple(conv.stride), padding, triple(conv.dilation), conv.padding_mode


def _acs_views_agree(conv: nn.Module) -> bool:
    """Whether ``ACSConv3d`` can hold ``conv``: equal padding and dilation that keep the three views' sizes."""
    kernel_size, _, padding, dilation, _ = _geometry(conv)
    if isinstance(padding, str) or len({*padding}) != 1 or len({*dilation}) != 1:
        return False
    return acs_views_agree(kernel_size[0], padding[0], dilation[0])


def _conv_to_3d(conv: nn.Module, name: str, init: str, align: bool, acs_conv3d: bool = False) -> nn.Module:
    """The 3D layer for one ``Conv2d``/``CrossDConv``; ``acs_conv3d``: ACS as a ``Conv3d`` (see ``to_3d``)."""
    kernel_size, stride, padding, dilation, padding_mode = _geometry(conv)
    bias = conv.bias is not None
    device, dtype = conv.weight.device, conv.weight.dtype
    if init == "acs" and len(set(kernel_size)) != 1:
        raise SettingsError(f"{name}: ACS needs square kernels, got {kernel_size}", field="model")
    if init == "acs" and not acs_conv3d:
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
            raise SettingsError(
                f"'crossd' needs a Cross-D layer, found {type(conv).__name__} at {name}; "
                "convert a 2D model with 'i3d', 'center' or 'acs'",
                field="init",
            )
        weight = conv.weight.detach()
        kernel = shift_align(weight) if align and conv.mode == "shift" else weight
    elif init == "acs":
        kernel = acs_kernel(_planar(conv))
    else:
        build = inflate_kernel if init == "i3d" else center_kernel
        kernel = build(_planar(conv), kernel_size[0])
    with torch.no_grad():
        new.weight.copy_(kernel)
        if bias:
            new.bias.copy_(conv.bias)
    return new


def _transposed_to_3d(conv: nn.ConvTranspose2d, init: str) -> tuple[nn.ConvTranspose3d, str]:
    """A ``ConvTranspose3d`` with the same hyper-parameters; its kernel ``(Ci, Co/groups, K, K, K)`` built by
    ``init`` (``"crossd"``/``"acs"`` have no transposed form and use ``"i3d"``). Returns the layer and the init."""
    used = "i3d" if init in ("crossd", "acs") else init
    kernel_size = triple(conv.kernel_size)
    new = nn.ConvTranspose3d(
        conv.in_channels,
        conv.out_channels,
        kernel_size,
        triple(conv.stride),
        triple(conv.padding),
        triple(conv.output_padding),
        conv.groups,
        conv.bias is not None,
        triple(conv.dilation),
        conv.padding_mode,
    ).to(device=conv.weight.device, dtype=conv.weight.dtype)
    if used != "random":
        build = inflate_kernel if used == "i3d" else center_kernel
        with torch.no_grad():
            new.weight.copy_(build(conv.weight.detach(), kernel_size[0]))
            if conv.bias is not None:
                new.bias.copy_(conv.bias)
    return new, used


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
) -> nn.Module | tuple[nn.Module, ConversionReport]:
    """Convert a 2D or Cross-D model into a 3D model for volumes ``(N, C, D, H, W)``.

    ``Conv2d``/``CrossDConv`` become ``Conv3d`` (``ACSConv3d`` for ``init="acs"``); ``ConvTranspose2d`` becomes
    ``ConvTranspose3d`` (kernel by ``init``; ``"crossd"``/``"acs"`` fall back to ``"i3d"`` there); norms, pools,
    padding, up-sampling, dropout and channels-last permutes become their 3D twins
    (:func:`crossd.convert.layers_3d.layer_to_3d`); channel-broadcast parameters ``(C, 1, 1)`` get a depth axis.
    ``GroupNorm``, ``LayerNorm`` and activations are dimension-agnostic and stay. Rotation heads are dropped.
    Known models whose own ``forward`` is 2D-only get a 3D forward twin, by exact type
    (:mod:`crossd.convert.forward_twins`: torchvision DenseNet, MobileNetV2, VGG/AlexNet classifiers; timm's
    ConvNeXt blocks, squeeze-excite and pools); timm's ``"SAME"``-padded layers keep their padding
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
            :func:`~crossd.convert.kernels.acs_kernel`), ``"random"`` (fresh ``Conv3d`` init). For Cross-D
            layers the 2D kernel is the one they use at angle 0.
        align: with ``init="crossd"`` on ``shift`` layers, use ``roll(W, (1, 1, 1))`` so the 3D centre slice is
            the kernel trained at angle 0.
        inplace: change ``model`` itself instead of a deep copy.
        example_input: a small volume ``(N, C, D, H, W)``, best with ``D > 1`` and ``D != H``; when given, the
            converted model is run on it once (eval mode, no gradients) for the really-3D verdict, and the module
            whose forward fails is reported.
        return_report: also return the :class:`~crossd.convert.report.ConversionReport`.

    Returns:
        The converted model (an ordinary ``nn.Module``), and the report when ``return_report``.
    """
    if init not in INITS_3D:
        raise SettingsError(f"must be one of {INITS_3D}, got {init!r}", field="init")
    model = model if inplace else copy.deepcopy(model)
    report = ConversionReport()
    swap_forwards(model, report)
    same_padded = same_padded_types()
    planar_fallback = init == "crossd" and any(isinstance(m, CrossDConv) for m in model.modules())
    padded_inside = {f"{n}.layer" for n, m in model.named_modules() if isinstance(m, PadSame)}

    def acs_conv3d(name: str, module: nn.Module) -> bool:
        """ACS as one ``Conv3d`` holding ``acs_kernel``: for grouped layers (one convolution instead of three over
        overlapping groups), ``"SAME"``-padded ones (padded on all three axes, a 1-wide view axis would not fit)
        and ones whose padding is not ``dilation * (K - 1) / 2`` (``ACSConv3d``'s views would differ in size)."""
        found = init == "acs" and (
            module.groups > 1
            or name in padded_inside
            or isinstance(module, same_padded)
            or not _acs_views_agree(module)
        )
        if found:
            report.notes[name] = (
                "grouped, SAME-padded or not 'same' padding: ACS views as one Conv3d (kernels in central planes)"
            )
        return found

    def conv_init(name: str, module: nn.Module) -> str:
        if planar_fallback and not isinstance(module, CrossDConv):
            report.notes[name] = f"{type(module).__name__} is not a Cross-D layer (no 3D kernel); built with init='i3d'"
            return "i3d"
        return init

    def rule(name: str, module: nn.Module) -> nn.Module | None:
        new = None
        if isinstance(module, same_padded):
            inner = None
            if isinstance(module, nn.Conv2d):
                inner = _conv_to_3d(module, name, conv_init(name, module), align, acs_conv3d(name, module))
            new = wrap_same(module, inner if inner is not None else layer_to_3d(module))
        elif isinstance(module, (nn.Conv2d, CrossDConv)):
            new = _conv_to_3d(module, name or "model", conv_init(name, module), align, acs_conv3d(name, module))
            if isinstance(module, nn.Conv2d) and (dropped := own_forward(module, nn.Conv2d)) is not None:
                report.add_unconverted({name: dropped})
        elif isinstance(module, nn.ConvTranspose2d):
            new, used = _transposed_to_3d(module, init)
            if used != init:
                report.notes[name] = f"ConvTranspose2d has no {init!r} kernel; ConvTranspose3d built with init='i3d'"
        else:
            new = layer_to_3d(module)
        if new is not None:
            report.converted[name] = f"{type(module).__name__} -> {type(new).__name__}"
            new.train(module.training)
        return new

    model = replace_modules(model, rule)
    _broadcast_parameters_to_3d(model, report)
    report.add_unconverted(scan_2d_layers(model))
    if example_input is not None:
        found = check_really_3d(model, example_input)
        report.really_3d = not found
        report.add_unconverted(found)
    report.warn("to_3d")
    return (model, report) if return_report else model
