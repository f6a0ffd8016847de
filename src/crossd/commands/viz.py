"""`crossd viz`: pictures of Cross-D kernels.

crossd viz filters CHECKPOINT --layer conv1 --output filters.gif [--frames N] [--axes d,h,w] [--inputs data.npz]
    the 2D kernels a Cross-D layer cuts from its 3D kernel, animated over an angle sweep about each axis
    (one panel per axis, N frames), or over the first N images of a 2D .npz (the angles its rotation head picks)
crossd viz kernel3d CHECKPOINT --layer conv1 --output kernel.png
    the depth slices of a layer's 3D kernel (Cross-D checkpoints, or 3D models from crossd transfer), the
    strongest kernels first
Each kernel is scaled to its own peak; --grey sums the input channels (grey images fed as 3 equal channels).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from crossd.errors import CheckpointError, SettingsError
from crossd.io import ensure_writable_file


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="what", required=True, metavar="WHAT")
    style = {"formatter_class": parser.formatter_class}
    filters = sub.add_parser("filters", help="animate the dynamic 2D filters of a Cross-D layer (GIF)", **style)
    kernel = sub.add_parser("kernel3d", help="render the depth slices of a 3D kernel (PNG)", **style)
    for p in (filters, kernel):
        p.add_argument("checkpoint", help="checkpoint.pt / model.safetensors / published Cross-D checkpoint")
        p.add_argument("--layer", default="conv1", help="module name of the layer")
        p.add_argument("--max-filters", type=int, help="output channels shown (default 64 filters, 16 kernel3d)")
        p.add_argument("--arch", help="torchvision name for checkpoints without crossd metadata (default: resnet18)")
        p.add_argument(
            "--grey",
            action="store_true",
            help="draw the sum over input channels: what the layer applies to a grey image repeated over its "
            "channels (MRI, CT)",
        )
    filters.add_argument("--output", default="filters.gif", help="GIF to write")
    filters.add_argument("--frames", type=int, default=24, help="frames: angles per sweep, or inputs shown")
    filters.add_argument("--axes", default="d,h,w", help="rotation axes, one panel each")
    filters.add_argument("--inputs", help="2D .npz: animate the kernels chosen for its first FRAMES images")
    filters.add_argument("--size", type=int, help="resize --inputs images to SIZE x SIZE (default: as stored)")
    filters.add_argument("--fps", type=float, default=8.0, help="frames per second")
    kernel.add_argument("--output", default="kernel3d.png", help="PNG to write")


def _filters(args: argparse.Namespace) -> Path:
    from crossd.models import load_2d_model
    from crossd.report.animation import filters_gif, find_crossd_layer, input_filters_gif
    from crossd.report.planes import npz_images

    if args.frames < 1:
        raise SettingsError(f"must be at least 1, got {args.frames}", field="frames")
    model, spec = load_2d_model(args.checkpoint, args.arch)
    if spec.conv != "crossd":
        raise CheckpointError(
            f"{args.checkpoint} holds a regular {spec.arch}; dynamic filters need a Cross-D checkpoint",
            field="checkpoint",
        )
    layer = find_crossd_layer(model, args.layer)
    max_filters = args.max_filters or 64
    if args.inputs:
        images = npz_images(args.inputs, args.frames, args.size)
        return input_filters_gif(model, layer, images, args.output, max_filters, args.fps, grey_input=args.grey)
    axes = tuple(a.strip() for a in args.axes.split(",") if a.strip())
    return filters_gif(layer, args.output, args.frames, axes, max_filters, args.fps, grey_input=args.grey)


def _kernel3d(args: argparse.Namespace) -> Path:
    from crossd.convert import read_state_dict
    from crossd.convert.published import published_to_crossd_keys
    from crossd.report.animation import kernel3d_png

    state = published_to_crossd_keys(read_state_dict(args.checkpoint))
    key = f"{args.layer}.weight"
    if key not in state:
        kernels = [k.removesuffix(".weight") for k, v in state.items() if k.endswith(".weight") and v.dim() == 5]
        hint = f"3D kernels: {', '.join(kernels[:8])}" if kernels else "it holds no 3D kernel"
        raise SettingsError(f"{args.layer!r}: {args.checkpoint} has no such layer; {hint}", field="layer")
    weight = state[key]
    if weight.dim() != 5:
        raise SettingsError(
            f"{args.layer!r} in {args.checkpoint} has a weight of shape {tuple(weight.shape)}, not a 3D kernel "
            "(Co, Ci, K, K, K); use a Cross-D checkpoint or a 3D model from crossd transfer",
            field="layer",
        )
    title = f"{Path(args.checkpoint).name}: {args.layer}, strongest kernels first"
    return kernel3d_png(weight, args.output, args.max_filters or 16, title=title, grey_input=args.grey)


def run(args: argparse.Namespace) -> int:
    ensure_writable_file(args.output, "output")
    path = _filters(args) if args.what == "filters" else _kernel3d(args)
    print(f"wrote {path}")
    return 0
