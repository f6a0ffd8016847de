"""Convert a 2D (regular or Cross-D) checkpoint into a 3D network and save it.

Examples:
  crossd transfer crossd_radimagenet.pt --init crossd --output model3d.safetensors
  crossd transfer resnet18_imagenet.pth --init acs --output acs3d.safetensors
  crossd transfer resnet18_imagenet.pth --init 2.5d --axis d --output r18_25d.safetensors

--init crossd needs a Cross-D checkpoint (its 3D kernels are copied into Conv3d, rotation heads dropped);
acs/i3d/center/2.5d take a regular checkpoint or a Cross-D one (its angle-0 2D kernels); 2.5d makes every 2D
kernel a 3D kernel of size 1 along --axis (d: each depth slice convolved as the 2D network convolves an image;
slices mix only through pooling); random keeps only the architecture. Writes OUTPUT (.safetensors)
and OUTPUT with .json (architecture, init, source checkpoint).
"""

from __future__ import annotations

import argparse

from crossd.convert.conv_3d import AXES
from crossd.convert.to_3d import INITS_3D
from crossd.io import check_input_path, ensure_writable_file
from crossd.transfer import transfer_checkpoint


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="2D checkpoint (.pt/.pth/.safetensors)")
    parser.add_argument("--init", choices=INITS_3D, default="crossd", help="where the 3D kernels come from")
    parser.add_argument("--axis", choices=AXES, default="d", help="the axis 2.5d kernels are flat along (default d)")
    parser.add_argument("--align", action="store_true", help="roll shift-mode kernels to centre angle 0")
    parser.add_argument("--arch", default=None, help="torchvision name for checkpoints without metadata")
    parser.add_argument(
        "--drop-bn-stats", action="store_true", help="reset BatchNorms named *bn* (the authors' Cross-D loading)"
    )
    parser.add_argument("--output", required=True, help="where to write the 3D model (.safetensors)")


def run(args: argparse.Namespace) -> int:
    ensure_writable_file(args.output, "output")
    check_input_path(args.checkpoint, "checkpoint")
    weights, sidecar = transfer_checkpoint(
        args.checkpoint,
        args.init,
        args.output,
        arch=args.arch,
        align=args.align,
        drop_bn_stats=args.drop_bn_stats,
        axis=args.axis,
    )
    print(f"wrote {weights} and {sidecar}")
    return 0
