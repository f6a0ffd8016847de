"""`crossd viz`: pictures of Cross-D kernels.

crossd viz filters CHECKPOINT --layer conv1 --output filters.gif [--frames N] [--axes d,h,w] [--inputs data.npz]
    the 2D kernels a Cross-D layer cuts from its 3D kernel, animated over an angle sweep about each axis
    (one panel per axis, N frames), or over the first N images of a 2D .npz (the angles its rotation head picks)
crossd viz kernel3d CHECKPOINT --layer conv1 --output kernel.png
    the depth slices of a layer's 3D kernel (Cross-D checkpoints, or 3D models from crossd transfer)
"""

from __future__ import annotations

import argparse
from pathlib import Path

from crossd.io import ensure_writable_file


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter  # keep the usage lines of the docstring
    sub = parser.add_subparsers(dest="what", required=True, metavar="WHAT")
    filters = sub.add_parser("filters", help="animate the dynamic 2D filters of a Cross-D layer (GIF)")
    kernel = sub.add_parser("kernel3d", help="render the depth slices of a 3D kernel (PNG)")
    for p in (filters, kernel):
        p.add_argument("checkpoint", help="checkpoint.pt / model.safetensors / published Cross-D checkpoint")
        p.add_argument("--layer", default="conv1", help="module name of the layer (default conv1)")
        p.add_argument("--max-filters", type=int, help="output channels shown (default 64 filters, 16 kernel3d)")
        p.add_argument("--arch", help="torchvision name for checkpoints without crossd metadata (default resnet18)")
    filters.add_argument("--output", default="filters.gif", help="GIF to write")
    filters.add_argument("--frames", type=int, default=24, help="frames: angles per sweep, or inputs shown")
    filters.add_argument("--axes", default="d,h,w", help="rotation axes, one panel each (default d,h,w)")
    filters.add_argument("--inputs", help="2D .npz: animate the kernels chosen for its first FRAMES images")
    filters.add_argument("--size", type=int, help="resize --inputs images to SIZE x SIZE (default: as stored)")
    filters.add_argument("--fps", type=float, default=8.0, help="frames per second")
    kernel.add_argument("--output", default="kernel3d.png", help="PNG to write")


def _filters(args: argparse.Namespace) -> Path:
    from crossd.models import load_2d_model
    from crossd.report.animation import filters_gif, find_crossd_layer, input_filters_gif

    if args.frames < 1:
        raise ValueError(f"--frames must be at least 1, got {args.frames}")
    model, spec = load_2d_model(args.checkpoint, args.arch)
    if spec.conv != "crossd":
        raise ValueError(f"{args.checkpoint} holds a regular {spec.arch}; dynamic filters need a Cross-D checkpoint")
    layer = find_crossd_layer(model, args.layer)
    max_filters = args.max_filters or 64
    if args.inputs:
        images = _input_images(args.inputs, args.frames, args.size)
        return input_filters_gif(model, layer, images, args.output, max_filters, args.fps)
    axes = tuple(a.strip() for a in args.axes.split(",") if a.strip())
    return filters_gif(layer, args.output, args.frames, axes, max_filters, args.fps)


def _input_images(path: str, count: int, size: int | None):
    """The first ``count`` images of a 2D ``.npz`` as a normalised batch ``(N, 3, H, W)``."""
    import torch

    from crossd.data import load_npz
    from crossd.data.images import ArrayImageDataset, classification_transforms

    data = load_npz(path)
    if data.spatial_dims != 2:
        raise ValueError(f"{path}: --inputs needs 2D images, the file holds 3D volumes")
    pooled = data.pooled()
    height = pooled.images.shape[1]
    _, eval_tf = classification_transforms(size or height, size or height, size or height)
    dataset = ArrayImageDataset(pooled.images[:count], pooled.labels[:count], eval_tf)
    return torch.stack([dataset[i][0] for i in range(len(dataset))])


def _kernel3d(args: argparse.Namespace) -> Path:
    from crossd.convert import read_state_dict
    from crossd.convert.published import published_to_crossd_keys
    from crossd.report.animation import kernel3d_png

    state = published_to_crossd_keys(read_state_dict(args.checkpoint))
    key = f"{args.layer}.weight"
    if key not in state:
        kernels = [k.removesuffix(".weight") for k, v in state.items() if k.endswith(".weight") and v.dim() == 5]
        hint = f"3D kernels: {', '.join(kernels[:8])}" if kernels else "it holds no 3D kernel"
        raise ValueError(f"{args.checkpoint} has no layer {args.layer!r}; {hint}")
    weight = state[key]
    if weight.dim() != 5:
        raise ValueError(
            f"{args.layer!r} in {args.checkpoint} has a weight of shape {tuple(weight.shape)}, not a 3D kernel "
            "(Co, Ci, K, K, K); use a Cross-D checkpoint or a 3D model from crossd transfer"
        )
    return kernel3d_png(
        weight, args.output, args.max_filters or 16, title=f"{Path(args.checkpoint).name}: {args.layer}"
    )


def run(args: argparse.Namespace) -> int:
    ensure_writable_file(args.output, "--output")
    path = _filters(args) if args.what == "filters" else _kernel3d(args)
    print(f"wrote {path}")
    return 0
