"""3D twins of the non-convolution 2D layers: norms, pools, padding, up-sampling, dropout, permutes.

Every twin is built from the 2D layer's attributes (never from its constructor's signature); per-axis values
``(h, w)`` become ``(h, h, w)`` (depth copies height, see :func:`crossd.convert.walk.triple`).
"""

from __future__ import annotations

import sys

import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.convnext import LayerNorm2d
from torchvision.ops.misc import Permute

from crossd.ops.conv import triple

# Channels-last and back, as torchvision's ConvNeXt writes them, for (N, C, H, W) -> (N, C, D, H, W).
_PERMUTES_3D = {(0, 2, 3, 1): [0, 2, 3, 4, 1], (0, 3, 1, 2): [0, 4, 1, 2, 3]}
_PADS_3D = {
    nn.ReflectionPad2d: nn.ReflectionPad3d,
    nn.ReplicationPad2d: nn.ReplicationPad3d,
    nn.CircularPad2d: nn.CircularPad3d,
}
_UPSAMPLE_3D = {"bilinear": "trilinear", "bicubic": "trilinear", "nearest": "nearest", "nearest-exact": "nearest-exact"}


class LayerNorm3d(nn.LayerNorm):
    """``LayerNorm`` over the channels of a volume ``(N, C, D, H, W)`` (torchvision's ``LayerNorm2d`` in 3D)."""

    def forward(self, x: Tensor) -> Tensor:
        x = x.permute(0, 2, 3, 4, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 4, 1, 2, 3)


def copy_state(old: nn.Module, new: nn.Module) -> nn.Module:
    """Load ``old``'s parameters and buffers into ``new`` (same keys and shapes) and move it to their device."""
    new.load_state_dict(old.state_dict())
    tensors = [*old.parameters(), *old.buffers()]
    return new.to(tensors[0].device) if tensors else new


def _norm(norm: nn.Module, cls: type[nn.Module]) -> nn.Module:
    """A 3D BatchNorm/InstanceNorm with the same settings, statistics and affine parameters."""
    return copy_state(norm, cls(norm.num_features, norm.eps, norm.momentum, norm.affine, norm.track_running_stats))


def layer_norm_to_3d(norm: nn.LayerNorm) -> LayerNorm3d:
    """A :class:`LayerNorm3d` with the settings and affine parameters of a channels-first ``LayerNorm2d``."""
    new = LayerNorm3d(norm.normalized_shape, norm.eps, norm.elementwise_affine, bias=norm.bias is not None)
    return copy_state(norm, new)


def _upsample(up: nn.Upsample) -> nn.Module | None:
    mode = _UPSAMPLE_3D.get(up.mode)
    if mode is None:
        return None
    size = None if up.size is None else triple(up.size)
    scale = None if up.scale_factor is None else triple(up.scale_factor)
    align = up.align_corners if mode == "trilinear" else None
    return nn.Upsample(size, scale, mode, align, up.recompute_scale_factor)


def _pad(pad: nn.Module, cls: type[nn.Module], *extra) -> nn.Module:
    left, right, top, bottom = pad.padding
    return cls((left, right, top, bottom, top, bottom), *extra)


def _permute(module: Permute) -> Permute | None:
    dims = _PERMUTES_3D.get(tuple(module.dims))
    return None if dims is None else Permute(dims)


def layer_to_3d(module: nn.Module) -> nn.Module | None:
    """The 3D twin of a non-convolution 2D layer, or ``None`` if ``module`` is not one this function knows.

    Covered: ``BatchNorm2d``, ``InstanceNorm2d``, torchvision's ``LayerNorm2d`` (-> :class:`LayerNorm3d`),
    max/avg/LP/adaptive pools (adaptive output sizes tripled), ``MaxUnpool2d``, zero/constant/reflection/
    replication/circular padding, ``Upsample``/``UpsamplingBilinear2d``/``UpsamplingNearest2d`` (bilinear and
    bicubic -> trilinear, nearest stays), ``Dropout2d``, and channels-last ``Permute`` modules. Dimension-agnostic
    layers (``GroupNorm``, ``LayerNorm``, activations, ``Dropout``, ``Linear``, ``Flatten``, ...) need no twin.
    When timm has been imported, its layers are tried first (:func:`crossd.convert.timm_layers.timm_layer_to_3d`).
    """
    if "timm" in sys.modules:  # timm's layers (most subclass torch's) first; timm stays optional
        from crossd.convert.timm_layers import timm_layer_to_3d

        if (twin := timm_layer_to_3d(module)) is not None:
            return twin
    if isinstance(module, nn.BatchNorm2d):
        return _norm(module, nn.BatchNorm3d)
    if isinstance(module, nn.InstanceNorm2d):
        return _norm(module, nn.InstanceNorm3d)
    if isinstance(module, LayerNorm2d):
        return layer_norm_to_3d(module)
    if isinstance(module, nn.MaxPool2d):
        k, s, p, d = (triple(v) for v in (module.kernel_size, module.stride, module.padding, module.dilation))
        return nn.MaxPool3d(k, s, p, d, module.return_indices, module.ceil_mode)
    if isinstance(module, nn.AvgPool2d):
        k, s, p = (triple(v) for v in (module.kernel_size, module.stride, module.padding))
        return nn.AvgPool3d(k, s, p, module.ceil_mode, module.count_include_pad, module.divisor_override)
    if isinstance(module, nn.LPPool2d):
        stride = None if module.stride is None else triple(module.stride)
        return nn.LPPool3d(module.norm_type, triple(module.kernel_size), stride, module.ceil_mode)
    if isinstance(module, nn.AdaptiveAvgPool2d):
        return nn.AdaptiveAvgPool3d(triple(module.output_size))
    if isinstance(module, nn.AdaptiveMaxPool2d):
        return nn.AdaptiveMaxPool3d(triple(module.output_size), module.return_indices)
    if isinstance(module, nn.MaxUnpool2d):
        return nn.MaxUnpool3d(triple(module.kernel_size), triple(module.stride), triple(module.padding))
    if isinstance(module, nn.Upsample):
        return _upsample(module)
    if isinstance(module, nn.Dropout2d):
        return nn.Dropout3d(module.p, module.inplace)
    if isinstance(module, nn.ZeroPad2d):
        return _pad(module, nn.ZeroPad3d)
    if isinstance(module, nn.ConstantPad2d):
        return _pad(module, nn.ConstantPad3d, module.value)
    for cls2d, cls3d in _PADS_3D.items():
        if isinstance(module, cls2d):
            return _pad(module, cls3d)
    if isinstance(module, Permute):
        return _permute(module)
    return None
