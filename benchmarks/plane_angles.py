"""Where do the training slices of pretrained Cross-D kernels lie, and how much gradient can off-plane voxels get?

For each Cross-D checkpoint: run its rotation heads on the 2D test images of a MedMNIST-style ``.npz`` and report
the rotation angles they predict, and the *off-plane share* of the slice operator: the fraction of the squared
weights of ``M (K², K³)`` (``W2 = W.flatten(2) @ Mᵀ``) that falls on the two off-centre depth slices of the kernel.
The gradient a 2D loss sends to the 3D kernel is ``Mᵀ`` times the gradient of the 2D kernel, so this share bounds
how much of the training signal reaches the voxels a 3D network uses besides the trained plane. ``shift`` kernels
are measured after ``roll(W, (1, 1, 1))`` (their angle-0 plane in the centre). ``--random-planes`` adds the share
under uniformly random SO(3) planes (``crossd pretrain --plane-sampling random``; ``rotate`` and ``project``).

    python benchmarks/plane_angles.py runs/study4/seed0/checkpoints/{rotate,shift,rotate_hybrid}.safetensors \\
        --data runs/study4/data/mni152_tissue_2d_32.npz --random-planes
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from crossd.data.images import load_image_splits
from crossd.models import load_2d_model
from crossd.nn.crossd_conv import CrossDConv
from crossd.ops.rotation import random_rotation
from crossd.ops.slicing import ROTATING_MODES, slice_operator


def off_plane_share(op: torch.Tensor, kernel_size: int, mode: str) -> torch.Tensor:
    """Per sample: the squared weight of ``op (B, K², K³)`` on depth slices other than the centre, over all."""
    volume = op.reshape(op.shape[0], -1, kernel_size, kernel_size, kernel_size).square()
    if mode == "shift":
        volume = torch.roll(volume, shifts=(1, 1, 1), dims=(-3, -2, -1))
    centre = volume[:, :, kernel_size // 2].sum((1, 2, 3))
    return 1 - centre / volume.sum((1, 2, 3, 4))


def measure(checkpoint: Path, images: DataLoader, random_planes: bool) -> dict[str, float]:
    model, spec = load_2d_model(checkpoint)
    model.eval()
    angles, shares, random_shares = [], [], []

    def hook(layer: CrossDConv, inputs: tuple[torch.Tensor]) -> None:
        axis, angle = layer.rotation(inputs[0])
        k = layer.kernel_size[0]
        if k < 3:
            return
        angles.append(angle.abs().flatten())
        shares.append(off_plane_share(slice_operator(axis, angle, k, layer.mode), k, layer.mode))
        if random_planes and layer.mode in ROTATING_MODES:
            base = random_rotation(axis.shape[0], axis.dtype, axis.device)
            random_shares.append(off_plane_share(slice_operator(axis, angle, k, layer.mode, base), k, layer.mode))

    handles = [m.register_forward_pre_hook(hook) for m in model.modules() if isinstance(m, CrossDConv)]
    with torch.no_grad():
        for batch, _ in images:
            model(batch)
    for h in handles:
        h.remove()
    degrees = np.degrees(torch.cat(angles).numpy())
    out = {
        "mode": spec.mode,
        "median_angle": float(np.median(degrees)),
        "p90_angle": float(np.percentile(degrees, 90)),
        "off_plane_share": float(torch.cat(shares).mean()),
    }
    if random_shares:
        out["random_off_plane_share"] = float(torch.cat(random_shares).mean())
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoints", nargs="+", type=Path)
    parser.add_argument("--data", required=True, help="MedMNIST-style 2D .npz (its test split is used)")
    parser.add_argument("--size", type=int, default=32, help="image side the networks were trained at")
    parser.add_argument("--samples", type=int, default=256)
    parser.add_argument("--random-planes", action="store_true")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    splits = load_image_splits(args.data, None, args.size, args.size, args.size)
    test = splits.test if splits.test is not None else splits.val
    subset = torch.utils.data.Subset(test, range(min(args.samples, len(test))))
    images = DataLoader(subset, batch_size=64)
    print("| checkpoint | mode | median angle (°) | 90th pct (°) | off-plane share, head planes | random planes |")
    print("|---|---|---|---|---|---|")
    for path in args.checkpoints:
        r = measure(path, images, args.random_planes)
        random_share = f"{r['random_off_plane_share']:.3f}" if "random_off_plane_share" in r else "–"
        print(
            f"| `{path.parent.parent.name}/{path.stem}` | {r['mode']} | {r['median_angle']:.1f} | "
            f"{r['p90_angle']:.1f} | {r['off_plane_share']:.3f} | {random_share} |"
        )
    print(f"\nCommand: `python benchmarks/plane_angles.py {' '.join(sys.argv[1:])}`")
    return 0


if __name__ == "__main__":
    sys.exit(main())
