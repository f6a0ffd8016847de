"""Pictures of Cross-D kernels: the dynamic 2D filters a layer cuts from its 3D kernel, and the 3D kernel itself.

- :func:`sweep_kernels` / :func:`input_kernels`: the 2D kernels ``(F, Co, Ci, K, K)`` that a
  :class:`~crossd.CrossDConv` produces for a sweep of angles about a fixed axis, or for what its rotation head
  predicts on a sequence of inputs.
- :func:`filters_gif`: those kernels as a grid animation (one tile per output channel, one frame per angle or
  input), like the authors' ``dyns_filter_grid.gif``; the kernels that change most with the angle come first.
- :func:`kernel3d_png`: the depth slices of a 3D kernel ``(Co, Ci, K, K, K)``, one row per output channel, the
  strongest kernels first, optionally beside the 2D kernels of a regular network.

``grey_input=True`` draws what a first layer applies to a grey image repeated over its input channels (MRI, CT):
the sum over input channels, on a grey scale centred at zero. Otherwise kernels with 3 input channels (a first
layer on RGB input) are drawn in colour, others as the mean over input channels. Each kernel is scaled to its
own peak (over every frame of an animation, so changes stay visible).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torch import Tensor, nn

from crossd.errors import SettingsError
from crossd.io import atomic_write
from crossd.nn import CrossDConv
from crossd.ops.rotation import MAX_ANGLE
from crossd.ops.slicing import kernel_slice

AXES = {"d": (1.0, 0.0, 0.0), "h": (0.0, 1.0, 0.0), "w": (0.0, 0.0, 1.0)}
"""Rotation axes by name, in the kernel's ``(d, h, w)`` order."""
PANEL_INCHES = (3.2, 3.6)
"""Width and height of one animation panel in inches (pixels = inches x dpi)."""


def find_crossd_layer(model: nn.Module, name: str) -> CrossDConv:
    """The :class:`CrossDConv` called ``name`` in ``model``; a :class:`~crossd.errors.SettingsError` naming the
    available ones otherwise."""
    available = [n for n, m in model.named_modules() if isinstance(m, CrossDConv)]
    module = dict(model.named_modules()).get(name)
    if isinstance(module, CrossDConv):
        return module
    what = "no layer" if module is None else f"a {type(module).__name__}, not a CrossDConv"
    hint = f"Cross-D layers: {', '.join(available[:8])}{' ...' if len(available) > 8 else ''}"
    raise SettingsError(f"{name!r} is {what}; {hint if available else 'the model has no Cross-D layer'}", field="layer")


def sweep_angles(frames: int, max_angle: float = MAX_ANGLE) -> Tensor:
    """``frames`` angles ``max_angle * sin(2 pi t / frames)``: 0 -> +max -> 0 -> -max, looping smoothly."""
    if frames < 1:
        raise SettingsError(f"must be at least 1, got {frames}", field="frames")
    t = torch.arange(frames, dtype=torch.float64)
    return max_angle * torch.sin(2 * math.pi * t / frames)


@torch.no_grad()
def sweep_kernels(layer: CrossDConv, angles: Tensor, axis: str) -> Tensor:
    """2D kernels ``(F, Co, Ci, K, K)`` of ``layer`` rotated by ``angles (F,)`` about axis ``d``, ``h`` or ``w``."""
    if axis not in AXES:
        raise SettingsError(f"must be one of {tuple(AXES)}, got {axis!r}", field="axis")
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


def grey_kernels(kernels: np.ndarray, channel_axis: int) -> np.ndarray:
    """The sum over the input-channel axis, kept as a size-1 axis: the kernel a layer applies to a grey image
    repeated over its input channels."""
    return kernels.sum(channel_axis, keepdims=True)


def peak_normalised(kernels: np.ndarray, filter_axis: int) -> np.ndarray:
    """``kernels`` with each output channel (index along ``filter_axis``) divided by its largest magnitude."""
    others = tuple(a for a in range(kernels.ndim) if a != filter_axis % kernels.ndim)
    peak = np.abs(kernels).max(axis=others, keepdims=True)
    return kernels / np.where(peak > 0, peak, 1.0)


def neighbour_correlation(kernels: np.ndarray) -> float:
    """Pearson correlation of horizontally and vertically adjacent weights of 2D kernels ``(..., K, K)``, pooled:
    about 0 for i.i.d. random kernels (an untrained layer), 0.5 and more for the smooth edge and blob detectors a
    trained first layer shows."""
    pairs = [np.moveaxis(kernels, axis, -1) for axis in (-1, -2)]
    left = np.concatenate([p[..., :-1].ravel() for p in pairs])
    right = np.concatenate([p[..., 1:].ravel() for p in pairs])
    return float(np.corrcoef(left, right)[0, 1])


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
    panels: Sequence[np.ndarray],
    titles: Sequence[str],
    captions: Sequence[str],
    max_filters: int = 64,
    dpi: int = 80,
    scale: float | None = None,
) -> np.ndarray:
    """Frames ``(F, H, W, 3)`` uint8 of side-by-side filter grids.

    Args:
        panels: one array of kernels ``(F, Co, Ci, K, K)`` per panel, the same ``F`` for all.
        titles: one title per panel. captions: one caption per frame.
        dpi: frame size is ``PANEL_INCHES * dpi`` per panel: ``H = 3.6 dpi``, ``W = 3.2 dpi * len(panels)``.
        scale: the magnitude drawn white/black (default: each panel's 99th percentile).
    """
    frames = len(captions)
    if any(len(p) != frames for p in panels):
        raise ValueError(f"every panel needs {frames} frames, got {[len(p) for p in panels]}")
    scales = [scale or _display_scale(p) for p in panels]
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
    grey_input: bool = False,
) -> Path:
    """Animate ``layer``'s 2D kernels over an angle sweep (:func:`sweep_angles`) about each of ``axes``.

    The GIF has ``frames`` frames of ``(3.6 dpi, 3.2 dpi * len(axes))`` pixels, one panel per axis. Tiles are the
    ``max_filters`` output channels whose kernels change most over the sweep (summed over axes), in that order,
    each scaled to its own peak; ``grey_input`` sums the input channels (see module doc).
    """
    angles = sweep_angles(frames)
    panels = np.stack([sweep_kernels(layer, angles, axis).numpy() for axis in axes])  # (A, F, Co, Ci, K, K)
    if grey_input:
        panels = grey_kernels(panels, 3)
    panels = peak_normalised(panels, 2)
    change = panels.std(axis=1).sum(axis=(0, 2, 3, 4))  # (Co,)
    panels = panels[:, :, np.argsort(-change, kind="stable")]
    titles = [f"rotation about {axis}" for axis in axes]
    captions = [
        f"angle {math.degrees(a):+5.1f} deg ({f + 1}/{frames}); most angle-dependent kernels first"
        for f, a in enumerate(angles.tolist())
    ]
    return write_gif(render_frames(list(panels), titles, captions, max_filters, dpi, scale=1.0), path, fps)


def input_filters_gif(
    model: nn.Module,
    layer: CrossDConv,
    images: Tensor,
    path: str | Path,
    max_filters: int = 64,
    fps: float = 4.0,
    dpi: int = 80,
    grey_input: bool = False,
) -> Path:
    """Animate the kernels ``layer`` uses for each of ``images (N, C, H, W)``: ``N`` frames, one panel; each
    kernel scaled to its own peak over the frames, ``grey_input`` sums the input channels (see module doc)."""
    kernels, axis, angle = input_kernels(model, layer, images)
    kernels = kernels.numpy()
    kernels = peak_normalised(grey_kernels(kernels, 2) if grey_input else kernels, 1)
    captions = [
        f"input {i}: axis ({a[0]:+.2f}, {a[1]:+.2f}, {a[2]:+.2f}), {math.degrees(t):+.1f} deg"
        for i, (a, t) in enumerate(zip(axis.tolist(), angle.tolist(), strict=True))
    ]
    frames = render_frames([kernels], ["kernels chosen per input"], captions, max_filters, dpi, scale=1.0)
    return write_gif(frames, path, fps)


def _strongest(kernels: np.ndarray, count: int, grey_input: bool) -> tuple[np.ndarray, np.ndarray]:
    """The ``count`` output channels of ``kernels (Co, Ci, ...)`` with the most energy (sum of squares, after the
    grey sum when ``grey_input``), peak-normalised, and their indices."""
    kernels = grey_kernels(kernels, 1) if grey_input else kernels
    order = np.argsort(-np.square(kernels).reshape(len(kernels), -1).sum(1), kind="stable")[:count]
    return peak_normalised(kernels[order], 0), order


def kernel3d_png(weight: Tensor, path: str | Path, **options: Any) -> Path:
    """``kernel3d_figure(weight, **options)`` (same keywords) written as a PNG at ``path``, atomically."""
    fig = kernel3d_figure(weight, **options)
    return atomic_write(path, lambda p: fig.savefig(p, format="png"))


def kernel3d_figure(
    weight: Tensor,
    max_filters: int = 16,
    title: str = "",
    dpi: int = 100,
    grey_input: bool = False,
    regular: Tensor | None = None,
) -> Figure:
    """Draw a 3D kernel ``(Co, Ci, K, K, K)``: one row per output channel, the ``max_filters`` with the most
    energy first, one column per depth slice ``d = 0..K-1`` (the middle one is the plane a Cross-D layer uses at
    angle 0), each kernel scaled to its peak. ``regular``, the 2D kernel ``(Co, Ci, K, K)`` of a regular network's
    same layer, adds a last column with its kernels of the same output channels (``#k`` on both sides of a row;
    I3D repeats each over depth). ``grey_input`` sums the input channels (see module doc). The figure is
    ``(0.8 (K + [1]) + 0.6, 0.8 rows + 0.6)`` inches."""
    if weight.dim() != 5:
        raise ValueError(f"expected a 3D kernel (Co, Ci, K, K, K), got shape {tuple(weight.shape)}")
    if regular is not None and (regular.dim() != 4 or regular.shape[:2] != weight.shape[:2]):
        raise ValueError(
            f"regular: expected the same layer's 2D kernel {tuple(weight.shape[:2])} + (K, K), got shape "
            f"{tuple(regular.shape)}"
        )
    kernel, order = _strongest(weight.detach().float().cpu().numpy(), max_filters, grey_input)
    if regular is not None:
        flat = regular.detach().float().cpu().numpy()
        flat = peak_normalised((grey_kernels(flat, 1) if grey_input else flat)[order], 0)
    else:
        flat = None
    rows, depth = kernel.shape[0], kernel.shape[2]
    columns = depth + (flat is not None)
    width, height = 0.8 * columns + 0.6, 0.8 * rows + 0.6
    fig = Figure(figsize=(width, height), dpi=dpi)
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, columns, squeeze=False)
    # margins in inches: the row labels left and right, the title and column titles on top
    fig.subplots_adjust(0.3 / width, 0.1 / height, 1 - 0.3 / width, 1 - 0.6 / height, wspace=0.15, hspace=0.15)
    for r in range(rows):
        for c in range(columns):
            ax = axes[r, c]
            tile = kernel[r, :, c] if c < depth else flat[r]
            ax.imshow(_tile_image(tile, 1.0), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                centre = " (0°)" if c == depth // 2 else ""
                ax.set_title(f"d={c}{centre}" if c < depth else "regular 2D", fontsize=7)
            if c == 0:
                ax.set_ylabel(f"#{order[r]}", fontsize=7)
            if c == depth:
                ax.yaxis.set_label_position("right")
                ax.set_ylabel(f"#{order[r]}", fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    return fig
