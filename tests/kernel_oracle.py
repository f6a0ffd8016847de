"""Test oracle: the kernel every converted layer must hold, written from the definitions, not from crossd's code.

The 2D kernel of a Cross-D layer at angle 0 comes from the FFT references of ``tests/reference.py`` (the
published formula for ``shift``, the trigonometric interpolant for ``rotate``). Also used by
``benchmarks/model_matrix.py`` for the "kernels" column of ``docs/models.md``.
"""

from __future__ import annotations

import torch
from torch import nn

from crossd import ACSConv3d, CrossDConv
from crossd.nn.acs_conv import acs_split
from reference import fft_slice_rotate, fft_slice_shift

_ANGLE0 = (torch.tensor([[1.0, 0.0, 0.0]], dtype=torch.float64), torch.zeros(1, dtype=torch.float64))


def angle0_kernel(layer: nn.Module) -> torch.Tensor:
    """The 2D kernel ``(Co, Ci/g, K, K)`` a ``Conv2d`` holds or a ``CrossDConv`` convolves with at angle 0."""
    if not isinstance(layer, CrossDConv):
        return layer.weight.detach().double()
    slicer = fft_slice_shift if layer.mode == "shift" else fft_slice_rotate
    return slicer(layer.weight.detach().double(), *_ANGLE0)[0]


def _layer(module: nn.Module) -> nn.Module:
    return getattr(module, "layer", module)  # the convolution inside a PadSame


def _in_view_planes(weight: torch.Tensor, planar: torch.Tensor) -> bool:
    k, start = planar.shape[-1], 0
    for view, n in enumerate(acs_split(planar.shape[0])):
        for o in range(start, start + n):
            plane = weight[o].movedim(1 + view, 1)  # (Ci, K along the view's axis, K, K)
            others = [i for i in range(k) if i != k // 2]
            if not torch.allclose(plane[:, k // 2], planar[o], atol=1e-7) or plane[:, others].any():
                return False
        start += n
    return True


def angle0_kernels(source: nn.Module) -> dict[str, torch.Tensor]:
    """:func:`angle0_kernel` of every convolution of ``source`` (rotation heads excluded), by name."""
    heads = tuple(f"{n}.rotation_head." for n, m in source.named_modules() if isinstance(m, CrossDConv))
    return {
        name: angle0_kernel(m)
        for name, m in source.named_modules()
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, CrossDConv)) and not name.startswith(heads)
    }


def kernel_problems(
    source: nn.Module, model3d: nn.Module, init: str, planars: dict[str, torch.Tensor] | None = None
) -> dict[str, str]:
    """``{layer name: what is wrong}`` over every convolution of ``source`` (2D or Cross-D) and its 3D twin.

    ``planars``: :func:`angle0_kernels` of ``source`` if already computed (the FFT oracle is slow on big layers).

    ``init="crossd"``: a Cross-D layer's 3D kernel is copied; a plain ``Conv2d`` beside Cross-D layers is
    inflated. ``"i3d"``: every depth slice is the 2D kernel / Kd. ``"center"``: the 2D kernel in slice Kd // 2,
    zeros elsewhere. ``"acs"``: ``ACSConv3d`` holding the 2D kernel. ``"random"``: a ``(Co, Ci/g, K, K, K)``
    kernel. ``"2.5d"`` (axis ``"d"``): a ``(Co, Ci/g, 1, K, K)`` kernel holding the 2D kernel. Transposed
    convolutions: centre for ``"center"``, random for ``"random"``, for ``"2.5d"`` the 2D kernel in each of
    ``stride`` depth slices (undoing a pool), else inflated. Rotation heads are dropped. Biases are copied except
    for ``"random"``.
    """
    problems: dict[str, str] = {}
    built, layers = dict(model3d.named_modules()), dict(source.named_modules())
    planars = angle0_kernels(source) if planars is None else planars
    for name, planar in planars.items():
        old, new = layers[name], built.get(name)
        if new is None:
            problems[name] = "missing in the 3D model"
            continue
        new = _layer(new)
        depth = planar.shape[-2]
        weight = new.weight.detach().double()
        how = init
        if isinstance(old, nn.ConvTranspose2d) and init in ("crossd", "acs"):
            how = "i3d"
        elif init == "crossd" and not isinstance(old, CrossDConv):
            how = "i3d"
        if how == "crossd":
            ok = torch.equal(new.weight.detach(), old.weight.detach())
        elif how == "i3d":
            ok = all(torch.allclose(weight[:, :, d], planar / depth, atol=1e-7) for d in range(depth))
        elif how == "center":
            others = [d for d in range(depth) if d != depth // 2]
            ok = torch.allclose(weight[:, :, depth // 2], planar, atol=1e-7) and not weight[:, :, others].any()
        elif how == "acs" and isinstance(new, ACSConv3d):
            ok = torch.allclose(weight, planar, atol=1e-7)
        elif how == "2.5d":  # axis "d": (1, K, K); a transposed one holds it in `stride` slices (depth copies height)
            slices = old.stride[0] if isinstance(old, nn.ConvTranspose2d) else 1
            ok = weight.shape[2:] == (slices, *planar.shape[2:]) and all(
                torch.allclose(weight[:, :, d], planar, atol=1e-7) for d in range(slices)
            )
        elif how == "acs":  # grouped or SAME-padded: a Conv3d, each channel's kernel in the central plane of its view
            ok = weight.dim() == 5 and _in_view_planes(weight, planar)
        else:
            ok = weight.dim() == 5 and weight.shape[:2] == planar.shape[:2] and weight.shape[2] == depth
        if not ok:
            problems[name] = f"{type(new).__name__} kernel {tuple(weight.shape)} is not the {how!r} kernel"
        elif how != "random" and old.bias is not None and not torch.equal(new.bias, old.bias):
            problems[name] = "bias not copied"
    return problems
