"""A 3D twin that shares every parameter and buffer with a 2D or Cross-D model, for hybrid 2D+3D training."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch.nn.functional as F
from torch import Tensor, nn

from crossd.convert.inits import get_init, init_names
from crossd.convert.same_padding import PadSame
from crossd.convert.to_3d import to_3d
from crossd.convert.walk import replace_modules
from crossd.errors import SettingsError
from crossd.nn.crossd_conv import CrossDConv

TWIN_INITS = init_names("twin")


class SharedKernelConv3d(nn.Module):
    """A 3D convolution whose kernel is rebuilt at each call from a 2D convolution's *own* weight.

    ``conv`` (the 2D layer) is held, not copied, so gradients of a loss on volumes ``(N, Ci, D, H, W)`` reach
    ``conv.weight (Co, Ci, K, K)`` through ``kernel`` (I3D inflation ``repeat(W2, K, depth) / K``, or ACS's kernels
    in the central planes of their views); stride, padding, dilation and groups are those of ``geometry``, the
    ``Conv3d`` that ``to_3d`` built for ``conv``.
    """

    def __init__(self, geometry: nn.Conv3d, conv: nn.Conv2d, kernel: Callable[[Tensor], Tensor]):
        super().__init__()
        if conv.padding_mode != "zeros":
            raise SettingsError(
                f"a 3D twin sharing 2D kernels needs zero padding, found padding_mode={conv.padding_mode!r}",
                field="model",
            )
        self.conv, self.kernel = conv, kernel
        self.stride, self.padding = geometry.stride, geometry.padding
        self.dilation, self.groups = geometry.dilation, geometry.groups

    def forward(self, x: Tensor) -> Tensor:
        conv = self.conv
        return F.conv3d(x, self.kernel(conv.weight), conv.bias, self.stride, self.padding, self.dilation, self.groups)

    def extra_repr(self) -> str:
        kernel = getattr(self.kernel, "func", self.kernel)  # a KernelInit's kernel with its shape bound
        return f"kernel={getattr(kernel, '__name__', kernel)}, stride={self.stride}, padding={self.padding}"


def volume_twin(model: nn.Module, init: str = "crossd") -> nn.Module:
    """A 3D model whose parameters and buffers *are* those of ``model`` (the same tensors).

    ``to_3d(model, init=init)`` gives the architecture (3D convolutions, ``BatchNorm3d``, 3D pools); then each of
    its modules takes over the parameters and buffers of the module of the same name in ``model``. A loss on 3D
    batches through the twin therefore trains the same kernels, BatchNorm affines and classifier that 2D batches
    train through ``model`` -- one optimiser over ``model.parameters()`` serves both.

    Args:
        model: a Cross-D model (``init="crossd"``: the twin convolves with the stored 3D kernels) or a regular 2D
            model (``"i3d"``: with the inflated 2D kernels; ``"acs"``: ACS convolution of the 2D kernels, as
            ``ACSConv3d`` or, for the layers ``to_3d`` gives one ``Conv3d``, :class:`SharedKernelConv3d`).
        init: ``"crossd"``, ``"i3d"`` or ``"acs"``.
    """
    kernel_init = get_init(init, "twin")
    has_crossd = any(isinstance(m, CrossDConv) for m in model.modules())
    if has_crossd != kernel_init.needs_crossd:
        kind = "a Cross-D" if has_crossd else "a regular 2D"
        fitting = " or ".join(n for n in TWIN_INITS if get_init(n).needs_crossd == has_crossd)
        raise SettingsError(f"{init!r} does not fit {kind} model; it needs {fitting}", field="init")
    twin = to_3d(model, init=init)
    source = dict(model.named_modules())
    inside_pads = {f"{n}.layer": n for n, m in twin.named_modules() if isinstance(m, PadSame)}
    rebuilt = {}  # name in the twin -> the 2D convolution whose weight its kernel is rebuilt from
    for name, module in twin.named_modules():
        original = source.get(inside_pads.get(name, name))
        if original is None:
            continue
        if kernel_init.kernel is not None and isinstance(original, nn.Conv2d) and isinstance(module, nn.Conv3d):
            rebuilt[name] = original
            continue
        for key, param in list(module.named_parameters(recurse=False)):
            shared = getattr(original, key)
            if shared.shape != param.shape:
                raise SettingsError(
                    f"{name}.{key}: the 3D twin needs shape {tuple(param.shape)} but the 2D model holds "
                    f"{tuple(shared.shape)}; hybrid 2D+3D training cannot share this parameter",
                    field="model",
                )
            setattr(module, key, shared)
        for key, _ in list(module.named_buffers(recurse=False)):
            module._buffers[key] = original._buffers[key]
    if rebuilt:

        def shared(name: str, module: nn.Module) -> nn.Module | None:
            if name not in rebuilt:
                return None
            return SharedKernelConv3d(module, rebuilt[name], partial(kernel_init.kernel, shape=module.weight.shape))

        twin = replace_modules(twin, shared)
    return twin
