"""Pictures of Cross-D kernels: the dynamic 2D filters a layer cuts from its 3D kernel, and the 3D kernel itself.

- :func:`sweep_kernels` / :func:`input_kernels`: the 2D kernels ``(F, Co, Ci, K, K)`` that a
  :class:`~crossd.CrossDConv` produces for a sweep of angles about a fixed axis, or for what its rotation head
  predicts on a sequence of inputs.
- :func:`filters_gif`: those kernels as a grid animation (one tile per output channel, one frame per angle or
  input), like the authors' ``dyns_filter_grid.gif``.
- :func:`kernel3d_png`: the depth slices of a 3D kernel ``(Co, Ci, K, K, K)``, one row per output channel.

Kernels with 3 input channels (a first layer on RGB input) are drawn in colour, others as the mean over input
channels on a grey scale centred at zero; every frame of an animation shares one scale, so changes are visible.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torch import Tensor, nn

from crossd.io import atomic_write
from crossd.nn import CrossDConv
from crossd.ops.rotation import MAX_ANGLE
from crossd.ops.slicing import kernel_slice

AXES = {"d": (1.0, 0.0, 0.0), "h": (0.0, 1.0, 0.0), "w": (0.0, 0.0, 1.0)}
"""Rotation axes by name, in the kernel's ``(d, h, w)`` order."""
PANEL_INCHES = (3.2, 3.6)
"""Width and height of one animation panel in inches (pixels = inches x dpi)."""


def find_crossd_layer(model: nn.Module, name: str) -> CrossDConv:
    """The :class:`CrossDConv` called ``name`` in ``model``; ``ValueError`` naming the available ones otherwise."""
    available = [n for n, m in model.named_modules() if isinstance(m, CrossDConv)]
    module = dict(model.named_modules()).get(name)
    if isinstance(module, CrossDConv):
        return module
    what = "no layer" if module is None else f"a {type(module).__name__}, not a CrossDConv"
    hint = f"Cross-D layers: {', '.join(available[:8])}{' ...' if len(available) > 8 else ''}"
    raise ValueError(f"{name!r} is {what}; {hint if available else 'the model has no Cross-D layer'}")


def sweep_angles(frames: int, max_angle: float = MAX_ANGLE) -> Tensor:
    """``frames`` angles ``max_angle * sin(2 pi t / frames)``: 0 -> +max -> 0 -> -max, looping smoothly."""
    if frames < 1:
        raise ValueError(f"frames must be at least 1, got {frames}")
    t = torch.arange(frames, dtype=torch.float64)
    return max_angle * torch.sin(2 * math.pi * t / frames)


@torch.no_grad()
def sweep_kernels(layer: CrossDConv, angles: Tensor, axis: str) -> Tensor:
    """2D kernels ``(F, Co, Ci, K, K)`` of ``layer`` rotated by ``angles (F,)`` about axis ``d``, ``h`` or ``w``."""
    if axis not in AXES:
        raise ValueError(f"unknown axis {axis!r}; expected one of {tuple(AXES)}")
    weight = layer.weight.detach().double()
    axes = torch.tensor(AXES[axis], dtype=weight.dtype).expand(len(angles), 3)
    return kernel_slice(weight, axes, angles.to(weight.dtype), layer.mode).float()


@torch.no_grad()
def input_kernels(model: nn.Module, layer: CrossDConv, images: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The kernels ``layer`` uses on each of ``images (N, C, H, W)`` (``model`` in eval mode).

    Returns kernels ``(N, Co, Ci, K, K)``, axes ``(N, 3)`` and angles ``(N,)`` predicted by the layer's rotation
    head on its actual input, per sample (whatever the layer's granularity).
    """
    captured: list[Tensor] = []
    handle = layer.register_forward_pre_hook(lambda _m, args: captured.append(args[0]))
    was_training = model.training
    model.eval()
    try:
        model(images)
    finally:
        handle.remove()
        model.train(was_training)
    axis, angle = layer.rotation_head.axis_angle(layer.rotation_head(captured[0]))
    weight = layer.weight.detach()
    return kernel_slice(weight, axis.to(weight.dtype), angle.to(weight.dtype), layer.mode), axis, angle


def _tile_image(kernel: np.ndarray, scale: float) -> np.ndarray:
    """``(K, K, 3)`` in [0, 1] from one filter ``(Ci, K, K)``: RGB for 3 input channels, else the channel mean."""
    image = kernel.transpose(1, 2, 0) if kernel.shape[0] == 3 else np.repeat(kernel.mean(0)[..., None], 3, -1)
    return np.clip(0.5 + 0.5 * image / scale, 0.0, 1.0)


def _display_scale(kernels: np.ndarray) -> float:
    """One symmetric scale (99th percentile of magnitudes) for kernels ``(..., Ci, K, K)`` as drawn."""
    shown = kernels if kernels.shape[-3] == 3 else kernels.mean(-3)
    return float(np.percentile(np.abs(shown), 99)) or 1.0


def filter_mosaic(kernels: np.ndarray, scale: float, max_filters: int = 64) -> np.ndarray:
    """A grid image ``(H, W, 3)`` in [0, 1] of the first ``max_filters`` filters of ``kernels (Co, Ci, K, K)``,
    tiles separated by 1-pixel white lines."""
    n = min(len(kernels), max_filters)
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    k = kernels.shape[-1]
    mosaic = np.ones((rows * (k + 1) + 1, cols * (k + 1) + 1, 3))
    for i in range(n):
        r, c = divmod(i, cols)
        mosaic[1 + r * (k + 1) : 1 + r * (k + 1) + k, 1 + c * (k + 1) : 1 + c * (k + 1) + k] = _tile_image(
            kernels[i], scale
        )
    return mosaic


def render_frames(
    panels: Sequence[np.ndarray], titles: Sequence[str], captions: Sequence[str], max_filters: int = 64, dpi: int = 80
) -> np.ndarray:
    """Frames ``(F, H, W, 3)`` uint8 of side-by-side filter grids.

    Args:
        panels: one array of kernels ``(F, Co, Ci, K, K)`` per panel, the same ``F`` for all.
        titles: one title per panel. captions: one caption per frame.
        dpi: frame size is ``PANEL_INCHES * dpi`` per panel: ``H = 3.6 dpi``, ``W = 3.2 dpi * len(panels)``.
    """
    frames = len(captions)
    if any(len(p) != frames for p in panels):
        raise ValueError(f"every panel needs {frames} frames, got {[len(p) for p in panels]}")
    scales = [_display_scale(p) for p in panels]
    fig = Figure(figsize=(PANEL_INCHES[0] * len(panels), PANEL_INCHES[1]), dpi=dpi)
    canvas = FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(panels), squeeze=False)
    images = []
    for ax, panel, scale, title in zip(axes[0], panels, scales, titles, strict=True):
        images.append(ax.imshow(filter_mosaic(panel[0], scale, max_filters), interpolation="nearest"))
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    caption = fig.suptitle(captions[0], fontsize=10)
    fig.subplots_adjust(left=0.02, right=0.98, bottom=0.02, top=0.82, wspace=0.05)
    out = []
    for f in range(frames):
        for image, panel, scale in zip(images, panels, scales, strict=True):
            image.set_data(filter_mosaic(panel[f], scale, max_filters))
        caption.set_text(captions[f])
        canvas.draw()
        out.append(np.asarray(canvas.buffer_rgba())[..., :3].copy())
    return np.stack(out)


def write_gif(frames: np.ndarray, path: str | Path, fps: float = 8.0) -> Path:
    """Write frames ``(F, H, W, 3)`` uint8 as a looping GIF, atomically (the GIF writer merges identical
    consecutive frames, so callers caption frames with their index)."""
    import imageio.v3 as iio

    return atomic_write(
        path, lambda p: iio.imwrite(p, frames, extension=".gif", duration=1000.0 / fps, loop=0, plugin="pillow")
    )


def filters_gif(
    layer: CrossDConv,
    path: str | Path,
    frames: int = 24,
    axes: Sequence[str] = ("d", "h", "w"),
    max_filters: int = 64,
    fps: float = 8.0,
    dpi: int = 80,
) -> Path:
    """Animate ``layer``'s 2D kernels over an angle sweep (:func:`sweep_angles`) about each of ``axes``.

    The GIF has ``frames`` frames of ``(3.6 dpi, 3.2 dpi * len(axes))`` pixels, one panel per axis.
    """
    angles = sweep_angles(frames)
    panels = [sweep_kernels(layer, angles, axis).numpy() for axis in axes]
    titles = [f"rotation about {axis}" for axis in axes]
    captions = [f"angle {math.degrees(a):+5.1f} deg   ({f + 1}/{frames})" for f, a in enumerate(angles.tolist())]
    return write_gif(render_frames(panels, titles, captions, max_filters, dpi), path, fps)


def input_filters_gif(
    model: nn.Module,
    layer: CrossDConv,
    images: Tensor,
    path: str | Path,
    max_filters: int = 64,
    fps: float = 4.0,
    dpi: int = 80,
) -> Path:
    """Animate the kernels ``layer`` uses for each of ``images (N, C, H, W)``: ``N`` frames, one panel."""
    kernels, axis, angle = input_kernels(model, layer, images)
    captions = [
        f"input {i}: axis ({a[0]:+.2f}, {a[1]:+.2f}, {a[2]:+.2f}), {math.degrees(t):+.1f} deg"
        for i, (a, t) in enumerate(zip(axis.tolist(), angle.tolist(), strict=True))
    ]
    frames = render_frames([kernels.numpy()], ["kernels chosen per input"], captions, max_filters, dpi)
    return write_gif(frames, path, fps)


def kernel3d_png(weight: Tensor, path: str | Path, max_filters: int = 16, title: str = "", dpi: int = 100) -> Path:
    """Draw a 3D kernel ``(Co, Ci, K, K, K)``: one row per output channel (the first ``max_filters``), one column
    per depth slice ``d = 0..K-1``. Writes a PNG atomically."""
    if weight.dim() != 5:
        raise ValueError(f"expected a 3D kernel (Co, Ci, K, K, K), got shape {tuple(weight.shape)}")
    kernel = weight.detach().float().cpu().numpy()[:max_filters]  # (n, Ci, D, H, W)
    rows, depth = kernel.shape[0], kernel.shape[2]
    scale = _display_scale(kernel.transpose(0, 2, 1, 3, 4))
    fig = Figure(figsize=(0.8 * depth + 0.6, 0.8 * rows + 0.6), dpi=dpi)
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, depth, squeeze=False)
    for r in range(rows):
        for d in range(depth):
            ax = axes[r, d]
            ax.imshow(_tile_image(kernel[r, :, d], scale), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(f"d={d}", fontsize=8)
            if d == 0:
                ax.set_ylabel(str(r), fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    return atomic_write(path, lambda p: fig.savefig(p, format="png"))
