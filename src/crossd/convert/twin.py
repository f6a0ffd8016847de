"""A 3D twin that shares every parameter and buffer with a 2D or Cross-D model, for hybrid 2D+3D training."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from crossd.convert.kernels import inflate_kernel
from crossd.convert.to_3d import to_3d
from crossd.convert.walk import replace_modules, triple
from crossd.nn.crossd_conv import CrossDConv

TWIN_INITS = ("crossd", "i3d", "acs")


class InflatedConv3d(nn.Module):
    """A 3D convolution whose kernel is the I3D inflation of a 2D convolution's *own* weight, rebuilt at each call.

    ``conv`` is held, not copied: gradients of a loss on volumes ``(N, Ci, D, H, W)`` reach ``conv.weight
    (Co, Ci, K, K)`` through the inflation ``W3 = repeat(W2, K, depth) / K``.
    """

    def __init__(self, conv: nn.Conv2d):
        super().__init__()
        if conv.padding_mode != "zeros":
            raise ValueError(f"an inflated 3D twin needs zero padding, found padding_mode={conv.padding_mode!r}")
        self.conv = conv

    def forward(self, x: Tensor) -> Tensor:
        conv = self.conv
        padding = conv.padding if isinstance(conv.padding, str) else triple(conv.padding)
        weight = inflate_kernel(conv.weight, conv.kernel_size[0])
        return F.conv3d(x, weight, conv.bias, triple(conv.stride), padding, triple(conv.dilation), conv.groups)


def volume_twin(model: nn.Module, init: str = "crossd") -> nn.Module:
    """A 3D model whose parameters and buffers *are* those of ``model`` (the same tensors).

    ``to_3d(model, init=init)`` gives the architecture (3D convolutions, ``BatchNorm3d``, 3D pools); then each of
    its modules takes over the parameters and buffers of the module of the same name in ``model``. A loss on 3D
    batches through the twin therefore trains the same kernels, BatchNorm affines and classifier that 2D batches
    train through ``model`` -- one optimiser over ``model.parameters()`` serves both.

    Args:
        model: a Cross-D model (``init="crossd"``: the twin convolves with the stored 3D kernels) or a regular 2D
            model (``"i3d"``: with the inflated 2D kernels, :class:`InflatedConv3d`; ``"acs"``: ACS convolution
            of the 2D kernels).
        init: ``"crossd"``, ``"i3d"`` or ``"acs"``.
    """
    if init not in TWIN_INITS:
        raise ValueError(f"unknown twin init {init!r}; expected one of {TWIN_INITS}")
    has_crossd = any(isinstance(m, CrossDConv) for m in model.modules())
    if has_crossd != (init == "crossd"):
        kind = "a Cross-D" if has_crossd else "a regular 2D"
        raise ValueError(f"{kind} model needs the twin init {'crossd' if has_crossd else 'i3d or acs'}, got {init!r}")
    twin = to_3d(model, init=init)
    source = dict(model.named_modules())
    inflated = init == "i3d"
    for name, module in twin.named_modules():
        original = source.get(name)
        if original is None or (inflated and isinstance(original, nn.Conv2d)):
            continue
        for key, param in list(module.named_parameters(recurse=False)):
            shared = getattr(original, key)
            if shared.shape != param.shape:
                raise ValueError(
                    f"{name}.{key}: the 3D twin needs shape {tuple(param.shape)} but the 2D model holds "
                    f"{tuple(shared.shape)}; hybrid 2D+3D training cannot share this parameter"
                )
            setattr(module, key, shared)
        for key, _ in list(module.named_buffers(recurse=False)):
            module._buffers[key] = original._buffers[key]
    if inflated:
        convs = {name for name, m in model.named_modules() if isinstance(m, nn.Conv2d)}
        twin = replace_modules(twin, lambda name, m: InflatedConv3d(source[name]) if name in convs else None)
    return twin
