"""3D twins of torch's and torchvision's non-convolution 2D layers: norms, pools, padding, up-sampling, dropout,
permutes, registered as layer twins (:func:`crossd.convert.twins.register_twin`).

Every twin is built from the 2D layer's attributes (never from its constructor's signature); per-axis values
``(h, w)`` become ``(h, h, w)`` (depth copies height, see :func:`crossd.ops.conv.triple`).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.convnext import LayerNorm2d
from torchvision.ops.misc import Permute

from crossd.convert.twins import register_twin
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


@register_twin(nn.BatchNorm2d)
def _batch_norm(norm: nn.BatchNorm2d) -> nn.BatchNorm3d:
    return _norm(norm, nn.BatchNorm3d)


@register_twin(nn.InstanceNorm2d)
def _instance_norm(norm: nn.InstanceNorm2d) -> nn.InstanceNorm3d:
    return _norm(norm, nn.InstanceNorm3d)


@register_twin(LayerNorm2d)
def layer_norm_to_3d(norm: nn.LayerNorm) -> LayerNorm3d:
    """A :class:`LayerNorm3d` with the settings and affine parameters of a channels-first ``LayerNorm2d``."""
    new = LayerNorm3d(norm.normalized_shape, norm.eps, norm.elementwise_affine, bias=norm.bias is not None)
    return copy_state(norm, new)


@register_twin(nn.Upsample)
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


@register_twin(Permute)
def _permute(module: Permute) -> Permute | None:
    dims = _PERMUTES_3D.get(tuple(module.dims))
    return None if dims is None else Permute(dims)


@register_twin(nn.MaxPool2d)
def _max_pool(pool: nn.MaxPool2d) -> nn.MaxPool3d:
    k, s, p, d = (triple(v) for v in (pool.kernel_size, pool.stride, pool.padding, pool.dilation))
    return nn.MaxPool3d(k, s, p, d, pool.return_indices, pool.ceil_mode)


@register_twin(nn.AvgPool2d)
def _avg_pool(pool: nn.AvgPool2d) -> nn.AvgPool3d:
    k, s, p = (triple(v) for v in (pool.kernel_size, pool.stride, pool.padding))
    return nn.AvgPool3d(k, s, p, pool.ceil_mode, pool.count_include_pad, pool.divisor_override)


@register_twin(nn.LPPool2d)
def _lp_pool(pool: nn.LPPool2d) -> nn.LPPool3d:
    stride = None if pool.stride is None else triple(pool.stride)
    return nn.LPPool3d(pool.norm_type, triple(pool.kernel_size), stride, pool.ceil_mode)


@register_twin(nn.AdaptiveAvgPool2d)
def _adaptive_avg_pool(pool: nn.AdaptiveAvgPool2d) -> nn.AdaptiveAvgPool3d:
    return nn.AdaptiveAvgPool3d(triple(pool.output_size))


@register_twin(nn.AdaptiveMaxPool2d)
def _adaptive_max_pool(pool: nn.AdaptiveMaxPool2d) -> nn.AdaptiveMaxPool3d:
    return nn.AdaptiveMaxPool3d(triple(pool.output_size), pool.return_indices)


@register_twin(nn.MaxUnpool2d)
def _max_unpool(unpool: nn.MaxUnpool2d) -> nn.MaxUnpool3d:
    return nn.MaxUnpool3d(triple(unpool.kernel_size), triple(unpool.stride), triple(unpool.padding))


@register_twin(nn.Dropout2d)
def _dropout(dropout: nn.Dropout2d) -> nn.Dropout3d:
    return nn.Dropout3d(dropout.p, dropout.inplace)


@register_twin(nn.ZeroPad2d)
def _zero_pad(pad: nn.ZeroPad2d) -> nn.ZeroPad3d:
    return _pad(pad, nn.ZeroPad3d)


@register_twin(nn.ConstantPad2d)
def _constant_pad(pad: nn.ConstantPad2d) -> nn.ConstantPad3d:
    return _pad(pad, nn.ConstantPad3d, pad.value)


@register_twin(*_PADS_3D)
def _other_pad(pad: nn.Module) -> nn.Module:
    return _pad(pad, next(_PADS_3D[cls] for cls in type(pad).__mro__ if cls in _PADS_3D))
