"""Which planes the rotation heads of a Cross-D network choose on real images.

:func:`predicted_planes` runs a network once and records, for every :class:`~crossd.CrossDConv`, the angle and
the tilt of the plane its head predicts for each sample; :func:`planes_png` draws their distributions. The tilt
is the angle between the rotated plane's normal and the kernel's depth axis ``d`` (the normal of the angle-0
plane, in ``rotate`` mode): it decides how much of the 3D kernel outside its centre slice the 2D training
reaches (0°: only the centre slice; a turn about ``d`` itself tilts nothing).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torch import Tensor, nn

from crossd.errors import DataError
from crossd.io import atomic_write
from crossd.nn import CrossDConv
from crossd.ops.rotation import MAX_ANGLE


def plane_tilt(axis: Tensor, angle: Tensor) -> Tensor:
    """Tilt ``(N,)`` in radians of the plane normal ``d`` turned by ``angle (N,)`` about ``axis (N, 3)`` (any
    length): ``cos(tilt) = cos(angle) + (1 - cos(angle)) a_d^2`` for the unit axis ``a`` (Rodrigues)."""
    unit = axis / axis.norm(dim=1, keepdim=True).clamp_min(1e-12)
    cos = torch.cos(angle) + (1 - torch.cos(angle)) * unit[:, 0] ** 2
    return torch.arccos(cos.clamp(-1.0, 1.0))


@torch.no_grad()
def predicted_planes(model: nn.Module, images: Tensor) -> dict[str, dict[str, np.ndarray]]:
    """``{layer name: {"angle": (N,), "tilt": (N,)}}`` in degrees, for every Cross-D layer of ``model`` (eval
    mode) on ``images (N, C, H, W)``, in the order the layers run."""
    captured: dict[str, Tensor] = {}
    layers = {name: m for name, m in model.named_modules() if isinstance(m, CrossDConv)}
    hooks = [
        m.register_forward_pre_hook(lambda _m, args, name=name: captured.setdefault(name, args[0]))
        for name, m in layers.items()
    ]
    was_training = model.training
    model.eval()
    try:
        model(images)
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
    planes = {}
    for name in captured:
        head = layers[name].rotation_head
        axis, angle = head.axis_angle(head(captured[name]))
        planes[name] = {
            "angle": np.degrees(angle.double().numpy()),
            "tilt": np.degrees(plane_tilt(axis.double(), angle.double()).numpy()),
        }
    return planes


FONT_SIZE = 9
"""Smallest text in the figure, in points (tick labels included): readable at the figure's 100 dpi."""


def planes_figure(planes: dict[str, dict[str, np.ndarray]], title: str = "") -> Figure:
    """Two panels from :func:`predicted_planes`: the first layer's angles and tilts as histograms, and the tilt
    per layer as box plots (whiskers 5-95 %); no text smaller than :data:`FONT_SIZE` points."""
    if not planes:
        raise ValueError("no Cross-D layer: nothing to draw")
    names = list(planes)
    first = planes[names[0]]
    fig = Figure(figsize=(11.0, 4.6), dpi=100)
    FigureCanvasAgg(fig)
    left, right = fig.subplots(1, 2, gridspec_kw={"width_ratios": (1, 2)})
    limit = math.degrees(MAX_ANGLE)
    bins = np.linspace(-limit, limit, 37)
    left.hist(first["angle"], bins=bins, color="C0", alpha=0.7, label="rotation angle")
    left.hist(first["tilt"], bins=bins, color="C1", alpha=0.7, label="plane tilt")
    left.set_xlabel("degrees", fontsize=FONT_SIZE + 1)
    left.set_ylabel("samples", fontsize=FONT_SIZE + 1)
    left.set_title(f"{names[0]}: {len(first['angle'])} images", fontsize=FONT_SIZE + 1)
    left.legend(fontsize=FONT_SIZE)
    right.boxplot([planes[n]["tilt"] for n in names], whis=(5, 95), showfliers=False)
    right.set_xticks(range(1, len(names) + 1), names, rotation=60, ha="right")
    right.set_ylim(0, limit)
    right.set_ylabel("plane tilt (degrees)", fontsize=FONT_SIZE + 1)
    right.set_title(
        f"tilt per layer (0° = centre slice only; the head allows up to {limit:.0f}°)", fontsize=FONT_SIZE + 1
    )
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=FONT_SIZE)
    if title:
        fig.suptitle(title, fontsize=FONT_SIZE + 2)
    fig.tight_layout()
    return fig


def planes_png(planes: dict[str, dict[str, np.ndarray]], path: str | Path, title: str = "") -> Path:
    """:func:`planes_figure` written as a PNG, atomically."""
    fig = planes_figure(planes, title)
    return atomic_write(path, lambda p: fig.savefig(p, format="png"))


def npz_images(path: str | Path, count: int, size: int | None = None, split: str | None = None) -> Tensor:
    """The first ``count`` images of a 2D ``.npz`` (of ``split``, e.g. ``"test"``; default all splits pooled) as
    the normalised batch ``(N, 3, H, W)`` that ``crossd pretrain`` evaluates on (resized to ``size`` if given)."""
    from crossd.data import load_npz
    from crossd.data.images import ArrayImageDataset, classification_transforms

    data = load_npz(path)
    if data.spatial_dims != 2:
        raise DataError(f"{path}: needs 2D images, the file holds 3D volumes")
    if split is not None and split not in data.splits:
        raise DataError(f"{path}: no split {split!r}; it holds {', '.join(data.splits)}")
    pooled = data.pooled() if split is None else data.splits[split]
    side = size or pooled.images.shape[1]
    _, eval_tf = classification_transforms(side, side, side)
    dataset = ArrayImageDataset(pooled.images[:count], pooled.labels[:count], eval_tf)
    return torch.stack([dataset[i][0] for i in range(len(dataset))])
