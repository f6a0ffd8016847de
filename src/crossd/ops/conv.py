"""Cross-D 2D convolution: per-sample sliced kernels, computed by one of two exact formulations.

For per-sample slice operators ``M (B, K^2, K^3)`` (``crossd.ops.slicing.slice_operator``) the output is
``conv2d(x[b], W.flatten(2) @ M[b]^T)``. Two ways compute it, with identical results up to rounding:

- ``"weight"`` (:mod:`crossd.ops.weight_side`): build the per-sample 2D kernels and run one grouped
  convolution over the whole batch. Cheap when images are large and channels few.
- ``"input"`` (:mod:`crossd.ops.input_side`): unfold the input, mix its ``K^2`` taps into ``K^3`` per sample
  with ``M``, then one shared GEMM against ``W`` reshaped to ``(Ci*K^3, Co)``. Cheap when channels are many and
  images small.

Both are custom autograd functions that keep only ``x``, ``W`` and ``M`` for backward (per-sample kernels and
the ``K^3``-expanded input are recomputed), compute in autocast's dtype when autocast is on, and return
channels-last outputs. ``path="auto"`` picks by the measured cost model in :func:`choose_path`. A single
operator (``M`` of batch 1) means one rotation for the whole batch and runs a plain ``conv2d``.

Plane groups (:mod:`crossd.ops.groups`): ``n`` operators for ``1 < n < B`` samples, one per contiguous group of
``ceil(B / n)`` samples. Besides the two per-sample paths (each sample given its group's operator), two more exact
formulations (:mod:`crossd.ops.group_conv`) build only the ``n`` kernels: ``"stacked"`` (one grouped convolution
over the groups stacked into the channels) and ``"loop"`` (one ``conv2d`` per group); ``path="auto"`` picks among
``"stacked"``, ``"loop"`` and ``"input"`` by :func:`choose_group_path`.
"""

from __future__ import annotations

import math
from typing import Literal

import torch.nn.functional as F
from torch import Tensor

from crossd.errors import SettingsError
from crossd.ops.group_conv import GROUP_CONVS
from crossd.ops.groups import expand_groups, group_count
from crossd.ops.input_side import InputSideConv, output_shape
from crossd.ops.slicing import apply_slice_operator
from crossd.ops.weight_side import WeightSideConv

Path = Literal["auto", "weight", "input", "stacked", "loop"]
PATHS = ("auto", "weight", "input", "stacked", "loop")

# Cost of each path relative to ``conv2d`` of the same shape (forward + backward), fitted to single-thread
# timings on a 2-core AVX-512 Xeon (``crossd bench``; benchmarks/RESULTS.md). Weight side: a grouped convolution
# (about WEIGHT_BASE x conv2d) plus building/differentiating the per-sample kernels, ``K^3 / L`` of the conv's
# multiply-adds at WEIGHT_BUILD x its cost per multiply-add. Input side: a GEMM with ``K`` x the conv's
# multiply-adds at INPUT_GEMM x its cost each, plus the memory-bound tap mixing (``K^3 g / Co`` of the conv's
# multiply-adds at INPUT_MIX x cost).
WEIGHT_BASE = 1.1
WEIGHT_BUILD = 8.0
INPUT_GEMM = 0.5
INPUT_MIX = 27.0
# Plane groups (``crossd bench --granularity``; benchmarks/RESULTS.md): a grouped convolution over the stacked
# groups costs about STACKED_BASE x conv2d, or STACKED_FEW x with fewer than STACKED_MIN_CHANNELS input channels per
# convolution group (the 3-channel stem); a loop of ``conv2d`` over the groups about LOOP_BASE x.
STACKED_BASE = 1.1
STACKED_FEW = 2.0
STACKED_MIN_CHANNELS = 16
LOOP_BASE = 1.35


def _pair(value: int | tuple[int, ...]) -> tuple[int, int]:
    """The in-plane ``(h, w)`` entries of a per-axis hyper-parameter given as int, ``(h, w)`` or ``(d, h, w)``."""
    if isinstance(value, int):
        return (value, value)
    return (value[-2], value[-1])


def triple(value, name: str = "value") -> tuple:
    """A per-axis ``(d, h, w)`` value from a 2D one: ``a -> (a, a, a)`` (numbers and ``None``), ``(h, w) -> (h, h,
    w)`` (depth copies height), ``(d, h, w)`` as it is; a :class:`~crossd.errors.SettingsError` naming ``name``
    otherwise."""
    if isinstance(value, (int, float)) or value is None:
        return (value, value, value)
    value = tuple(value)
    if len(value) == 2:
        return (value[0], value[0], value[1])
    if len(value) == 3:
        return value
    raise SettingsError(f"must be a number or a tuple of 2 or 3, got {value!r}", field=name)


def same_padding(size: int, kernel_size: int, stride: int = 1, dilation: int = 1) -> tuple[int, int]:
    """``(before, after)`` padding of one axis so that a window slides to ``ceil(size / stride)`` outputs, the
    extra one after (TensorFlow's ``"SAME"``; at stride 1 it keeps any size, as PyTorch's ``padding="same"``)."""
    total = max((math.ceil(size / stride) - 1) * stride + (kernel_size - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def resolve_padding(
    x: Tensor, kernel_size: int, padding: str | int | tuple[int, ...], dilation: tuple[int, int], stride
) -> tuple[Tensor, tuple[int, int]]:
    """Turn ``padding`` into symmetric ``(ph, pw)``, padding ``x`` explicitly where "same" is asymmetric."""
    if padding == "valid":
        return x, (0, 0)
    if padding != "same":
        return x, _pair(padding)
    if _pair(stride) != (1, 1):
        raise SettingsError("'same' is only supported with stride 1", field="padding")
    (top, bottom), (left, right) = (
        same_padding(n, kernel_size, 1, d) for n, d in zip(x.shape[-2:], dilation, strict=True)
    )
    if top == bottom and left == right:
        return x, (top, left)
    return F.pad(x, (left, right, top, bottom)), (0, 0)


def choose_path(out_channels: int, groups: int, kernel_size: int, out_pixels: int) -> Literal["weight", "input"]:
    """Pick the faster exact formulation from the measured cost model (costs relative to ``conv2d``).

    weight side: ``WEIGHT_BASE + WEIGHT_BUILD K^3 / L``; input side: ``INPUT_GEMM K + INPUT_MIX K^3 g / Co``,
    with ``L = out_pixels`` (batch size and input channels cancel out of both).
    """
    k3 = kernel_size**3
    weight_cost = WEIGHT_BASE + WEIGHT_BUILD * k3 / max(out_pixels, 1)
    input_cost = INPUT_GEMM * kernel_size + INPUT_MIX * k3 * groups / out_channels
    return "weight" if weight_cost <= input_cost else "input"


def choose_group_path(
    out_channels: int, in_channels: int, groups: int, kernel_size: int, out_pixels: int, batch: int, operators: int
) -> Literal["stacked", "loop", "input"]:
    """Pick the fastest formulation for ``operators`` plane groups in a batch of ``batch`` (costs relative to
    ``conv2d``, fitted like :func:`choose_path`).

    stacked: ``STACKED_BASE`` (``STACKED_FEW`` with fewer than ``STACKED_MIN_CHANNELS`` input channels per
    convolution group) plus building the kernels, ``WEIGHT_BUILD n K^3 / (B L)``; loop: ``LOOP_BASE`` plus the
    same build; input: as in :func:`choose_path` (it does not depend on ``n``).
    """
    k3 = kernel_size**3
    build = WEIGHT_BUILD * operators * k3 / max(batch * out_pixels, 1)
    few = in_channels // groups < STACKED_MIN_CHANNELS
    costs = {
        "stacked": (STACKED_FEW if few else STACKED_BASE) + build,
        "loop": LOOP_BASE + build,
        "input": INPUT_GEMM * kernel_size + INPUT_MIX * k3 * groups / out_channels,
    }
    return min(costs, key=costs.get)


def _check_shapes(x: Tensor, weight: Tensor, op: Tensor, groups: int) -> None:
    if x.dim() != 4:
        raise ValueError(f"x must be a 2D batch (B, Ci, H, W), got shape {tuple(x.shape)}")
    if weight.dim() != 5 or not (weight.shape[2] == weight.shape[3] == weight.shape[4]):
        raise ValueError(f"weight must be a cubic 3D kernel (Co, Ci/groups, K, K, K), got {tuple(weight.shape)}")
    k = weight.shape[-1]
    if x.shape[1] != weight.shape[1] * groups or weight.shape[0] % groups:
        raise ValueError(
            f"x has {x.shape[1]} channels but weight {tuple(weight.shape)} with groups={groups} expects "
            f"{weight.shape[1] * groups}"
        )
    b, n = x.shape[0], (op.shape[0] if op.dim() == 3 else 0)
    if op.shape[1:] != (k * k, k**3) or not 1 <= n <= b or group_count(b, -(-b // n)) != n:
        raise ValueError(
            f"op must have shape (n, {k * k}, {k**3}) for K={k}, with n operators for n contiguous groups of "
            f"ceil({b} / n) samples (n = 1, {b}, or a count such groups make), got {tuple(op.shape)}"
        )


def crossd_conv2d(
    x: Tensor,
    weight: Tensor,
    op: Tensor,
    bias: Tensor | None = None,
    stride: int | tuple[int, ...] = 1,
    padding: str | int | tuple[int, ...] = 0,
    dilation: int | tuple[int, ...] = 1,
    groups: int = 1,
    path: Path = "auto",
) -> Tensor:
    """Convolve each sample with its own slice of a 3D kernel.

    Args:
        x: input ``(B, Ci, H, W)``.
        weight: 3D kernel ``(Co, Ci/groups, K, K, K)``.
        op: slice operators ``(B, K^2, K^3)`` (one per sample), ``(1, K^2, K^3)`` (one for the batch) or
            ``(n, K^2, K^3)`` (one per contiguous group of ``ceil(B / n)`` samples, the last may be smaller).
        bias: optional ``(Co,)``, added after the convolution.
        stride, padding, dilation: as ``conv2d`` (int, ``(h, w)`` or ``(d, h, w)`` whose last two are used;
            padding may be ``"same"`` or ``"valid"``).
        groups: as ``conv2d``.
        path: ``"weight"``, ``"input"``, ``"stacked"``, ``"loop"`` or ``"auto"`` (cost model: :func:`choose_path`
            for one operator per sample, :func:`choose_group_path` for groups). All give the same numbers.

    Returns:
        ``(B, Co, Ho, Wo)``.
    """
    if path not in PATHS:
        raise SettingsError(f"must be one of {PATHS}, got {path!r}", field="path")
    _check_shapes(x, weight, op, groups)
    co, cig, k = weight.shape[:3]
    stride, dilation = _pair(stride), _pair(dilation)
    x, pad = resolve_padding(x, k, padding, dilation, stride)
    b, n = x.shape[0], op.shape[0]
    if k == 1:  # the slice of a 1x1x1 kernel is the kernel times a per-sample scalar (1 in both modes)
        out = F.conv2d(x, weight.reshape(co, cig, 1, 1), None, stride, pad, dilation, groups)
        scale = op if n in (1, b) else expand_groups(op, b)
        return _add_bias(out * scale.reshape(-1, 1, 1, 1).to(out.dtype), bias)
    if n == 1:
        return F.conv2d(x, apply_slice_operator(weight, op)[0], bias, stride, pad, dilation, groups)
    if path == "auto":
        ho, wo = output_shape(x.shape[2:], k, stride, pad, dilation)
        if n == b:
            path = choose_path(co, groups, k, ho * wo)
        else:
            path = choose_group_path(co, x.shape[1], groups, k, ho * wo, b, n)
    if path in GROUP_CONVS:
        out = GROUP_CONVS[path](x, apply_slice_operator(weight, op), stride, pad, dilation, groups)
        return _add_bias(out, bias)
    conv = WeightSideConv if path == "weight" else InputSideConv
    op = op if n == b else expand_groups(op, b)
    return _add_bias(conv.apply(x, weight, op, stride, pad, dilation, groups), bias)


def _add_bias(out: Tensor, bias: Tensor | None) -> Tensor:
    return out if bias is None else out + bias.to(out.dtype)[None, :, None, None]
