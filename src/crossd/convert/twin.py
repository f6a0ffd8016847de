"""A 3D twin that shares every parameter and buffer with a Cross-D model, for hybrid 2D+3D training."""

from __future__ import annotations

from torch import nn

from crossd.convert.to_3d import to_3d


def volume_twin(model: nn.Module) -> nn.Module:
    """A 3D model whose parameters and buffers *are* those of the Cross-D ``model`` (the same tensors).

    ``to_3d(model, init="crossd")`` gives the architecture (``Conv3d`` with the stored 3D kernels, ``BatchNorm3d``,
    3D pools); then each of its modules takes over the parameters and buffers of the module of the same name in
    ``model``. A loss on 3D batches through the twin therefore trains the same 3D kernels, BatchNorm affines and
    classifier that 2D batches train through ``model`` — one optimiser over ``model.parameters()`` serves both.
    """
    twin = to_3d(model, init="crossd")
    source = dict(model.named_modules())
    for name, module in twin.named_modules():
        original = source.get(name)
        if original is None:
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
    return twin
