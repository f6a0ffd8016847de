"""Why do hybrid 2D+3D pretraining runs score so much lower on 2D test images than their pure-2D runs?

Hypothesis: the 3D twin of hybrid training (``crossd.train.hybrid``) shares the model's BatchNorm *buffers*, so every
3D batch also moves the running statistics the 2D network uses at test time. This script measures it on the
pretraining runs of a study (``crossd study``): for each run it scores the 2D test split as saved, then again after
re-estimating every BatchNorm's running statistics on the 2D training split (``recalibrate_batchnorm``, AdaBN: a
plain average over one pass, the rest of the network in eval mode, so Cross-D layers use their heads' planes exactly
as at test time; weights untouched).
If the hypothesis holds, a hybrid run gains much more than its pure-2D twin (whose statistics are 2D ones already,
up to the lag of the running average and the planes it was trained on) and ends level with it.

    python benchmarks/hybrid_bn_stats.py --output-dir runs/study7 --size-2d 32 --seeds 0 1 2 3 4 \
        --variants regular regular_hybrid rotate rotate_hybrid project project_hybrid
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from crossd.data.images import load_image_splits
from crossd.evaluate.protocols import recalibrate_batchnorm
from crossd.models import load_2d_model
from crossd.train.distributed import DistInfo
from crossd.train.engine import Precision, predict, sample_cross_entropy
from crossd.train.loaders import eval_loader


def run_accuracies(run: Path, train: Dataset, test: Dataset) -> tuple[float, float]:
    """2D test accuracy (%) of the run's ``model.safetensors``: as saved, and after re-estimating its BatchNorm
    statistics on ``train``."""
    model, _ = load_2d_model(run / "model.safetensors")
    info = DistInfo()
    saved = predict(model, eval_loader(test, 256, 0, info), sample_cross_entropy, info, Precision()).acc1
    torch.manual_seed(0)  # the training split's transforms are random: the same draws for every run
    recalibrate_batchnorm(model, eval_loader(train, 256, 0, info), info.device)
    return saved, predict(model, eval_loader(test, 256, 0, info), sample_cross_entropy, info, Precision()).acc1


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output-dir", type=Path, required=True, help="a crossd study output folder")
    parser.add_argument("--size-2d", type=int, default=32, help="the study's --size-2d (names its 2D data file)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--variants", nargs="+", required=True, help="pretraining runs (folder names) to score")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    size = args.size_2d
    data = args.output_dir / "data" / f"mni152_tissue_2d_{size}.npz"
    if not data.is_file():
        sys.exit(f"{data}: no such file; pass the --output-dir and --size-2d of a crossd study run")
    splits = load_image_splits(data, None, size, size, size, (1.0, 1.0))
    if splits.test is None:
        sys.exit(f"{data}: has no test split")
    scores: dict[str, list[tuple[float, float]]] = {}
    for seed in args.seeds:
        for name in args.variants:
            run = args.output_dir / f"seed{seed}" / name
            if not (run / "model.safetensors").is_file():
                sys.exit(f"{run}: no model.safetensors (is the pretraining run finished?)")
            scores.setdefault(name, []).append(run_accuracies(run, splits.train, splits.test))
            saved, after = scores[name][-1]
            print(f"seed {seed} {name}: {saved:.1f} -> {after:.1f}", file=sys.stderr, flush=True)
    print(f"2D test accuracy (%), mean over seeds {args.seeds}, of the runs in `{args.output_dir}`:\n")
    print("| run | as saved | BatchNorm statistics re-estimated on 2D | change |")
    print("|---|---|---|---|")
    for name, pairs in scores.items():
        saved, after = (np.mean(column) for column in zip(*pairs, strict=True))
        print(f"| `{name}` | {saved:.1f} | {after:.1f} | {after - saved:+.1f} |")


if __name__ == "__main__":
    main()
