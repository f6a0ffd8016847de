"""k-fold evaluation of 2D-pretrained networks transferred to a 2D or 3D classification dataset.

Examples:
  crossd evaluate --data organmnist3d_64.npz --init crossd=crossd_rad.pt acs=resnet18_rad.pt \\
      --protocol paper --output-dir runs/organ3d
  crossd evaluate --data volumes/labels.csv --size 64 --checkpoint crossd.pt --init crossd i3d random \\
      --protocol bn --epochs 50 --output-dir runs/mri

--data: a MedMNIST .npz (splits pooled; --split official keeps its test split) or the authors' pooled .npz
(images, labels); a path,label .csv of NIfTI files, DICOM series folders or ultrasound videos (or a folder holding
that one .csv); a folder of class sub-folders of 2D images or of volumes. The data's dimension decides 2D vs 3D
networks. NIfTI and DICOM volumes are reoriented to RAS+ and laid out (C, D, H, W) with the --slice-axis plane
(axial: D inferior->superior, rows anterior->posterior, columns the patient's right->left) as the 2D plane.
--init NAME[=CKPT]: how each compared network gets its weights (names without =CKPT use --checkpoint):
  crossd     the Cross-D checkpoint's 3D kernels copied into Conv3d (2D data: the Cross-D network itself)
  acs        ACS convolution of a 2D checkpoint's kernels (a third of the output channels per orthogonal plane)
  i3d        2D kernels inflated over depth (repeated and divided by the depth)
  center     2D kernels in the central depth slice, zeros elsewhere
  2.5d       2D kernels as (1, k, k) 3D kernels: each depth slice convolved in-plane (2.5D)
  random     no checkpoint, random initialisation
  regular2d  2D data only: the regular 2D network as trained (the 2D baseline of a Cross-D network)
  slices     3D data: the 2D network (a Cross-D checkpoint's angle-0 kernels) on every axial slice, the slice
             features pooled by --slice-pool (mean, max or a learned attention) into one volume feature
  slices3    as slices, on the slices of all three orientations, the three pooled features concatenated
NAME+TAG=CKPT compares one init from several checkpoints (e.g. acs=a.pt acs+volumes=b.pt). All methods of one
call share the folds; the same --seed gives the same folds in separate calls.
Protocols: bn (BatchNorm + head; default), linear (head), finetune (all), paper (the authors' later scripts behind
Tables 2 and 3: 15 epochs, batch 8, head then head + BatchNorm from epoch 10, lowest validation loss,
KFold random_state 42 + --seed + t, t = 1..3). --epochs/--batch-size/--lr/--folds/--repeats override a protocol's
defaults. The published Table 3 comparison: --protocol paper --drop-bn-stats --init crossd=CROSSD acs=REGULAR
(the Cross-D rows lose their bn1/bn2 BatchNorms as in the authors' loading); without --drop-bn-stats every
network keeps all its BatchNorms, the fair comparison. results.md says which was run.
Every (method, repeat, fold) is a job whose result is written to --output-dir/jobs/ the moment it ends;
results.json, results.md and fold_accuracy.png are rebuilt from those files (Ctrl-C or a kill keeps finished jobs;
--resume runs only what is missing, and reports methods left out of the call as kept on disk).
Scale-out: torchrun --nproc_per_node=N -m crossd evaluate <these flags> (each rank runs its share of the jobs,
rank 0 merges), or --shard K/N in N separate jobs (e.g. a SLURM array) followed by the same command without
--shard to merge. A job's numbers do not depend on how many processes ran.
Inputs: each sample is scaled to [0, 1] (min-max per sample; over the whole array under --protocol paper; or
clipped to --window LOW,HIGH), repeated to 3 channels, then normalised with --normalize's mean/std: imagenet,
radimagenet, or minmax (mean 0, std 1: the [0, 1] values alone; `none` is its old name). By default both come
from the checkpoints (crossd pretrain records them; crossd pretrain and crossd demo use imagenet); a value given
that differs from the checkpoints', checkpoints that disagree, or checkpoints that record none (older files,
foreign checkpoints: radimagenet is used) each print a one-line warning.
--task segmentation: Dice of a UNet3D per init on image/label NIfTI pairs (a CSV with image,label columns, or
"mni152"; not slices/slices3); see crossd.evaluate.segmentation (its settings: crossd.evaluate.segmentation_config).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from crossd.commands import add_device_flag, add_quiet_flag, add_threads_flag, flag_values, set_threads
from crossd.data.orientation import SLICE_AXES
from crossd.data.preprocessing import DEPRECATED_NORMALIZATION, NORMALIZATION, parse_window
from crossd.data.segmentation import MNI152
from crossd.errors import CheckpointError, SettingsError
from crossd.evaluate import PROTOCOLS, EvaluateConfig, evaluate
from crossd.evaluate.config import SPLITS
from crossd.evaluate.kfold import RESULTS_MD, parse_shard
from crossd.evaluate.segmentation_config import SegmentationConfig
from crossd.evaluate.task_config import DEFAULT_NORMALIZATION, INITS, TaskConfig
from crossd.io import check_input_path, ensure_writable_dir, user_path_errors
from crossd.models.slice_model import POOLS
from crossd.report.tables import summary_lines


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help=".npz, path,label .csv, or folder")
    parser.add_argument(
        "--task", choices=("classification", "segmentation"), default="classification", help="what to evaluate"
    )
    parser.add_argument("--size", type=int, default=None, help="resize every sample to SIZE per axis")
    parser.add_argument(
        "--slice-axis",
        choices=tuple(SLICE_AXES),
        default="axial",
        help="plane of NIfTI/DICOM volumes that becomes the kernels' (h, w) plane (docs/conventions.md)",
    )
    parser.add_argument(
        "--split",
        choices=SPLITS,
        default="kfold",
        help="kfold: folds over all samples; official: a MedMNIST .npz's test split is every job's test set, "
        "folds of train+val give training and validation",
    )
    parser.add_argument(
        "--spatial-dims", type=int, choices=(2, 3), default=None, help="2 or 3, where the array shape is ambiguous"
    )
    parser.add_argument("--num-classes", type=int, default=None, help="class count (labels must be 0..C-1)")
    parser.add_argument("--image-size", type=int, default=None, help="2D crop size of protocol paper (default: 224)")
    parser.add_argument("--checkpoint", default=None, help="2D checkpoint for --init names without =CKPT")
    parser.add_argument(
        "--init",
        nargs="+",
        default=["crossd"],
        metavar="NAME[=CKPT]",
        help=f"methods, from {', '.join(INITS)} (see above)",
    )
    parser.add_argument("--arch", default=None, help="torchvision name for checkpoints without metadata")
    parser.add_argument("--align", action="store_true", help="roll shift-mode Cross-D kernels to centre angle 0")
    parser.add_argument(
        "--drop-bn-stats",
        action="store_true",
        help="reset BatchNorms named *bn* of Cross-D 3D networks, as the authors did (default: keep all)",
    )
    parser.add_argument(
        "--recalibrate-bn",
        action="store_true",
        help="re-estimate BatchNorm statistics on each fold's training samples before training (AdaBN)",
    )
    parser.add_argument(
        "--slice-pool",
        choices=tuple(POOLS),
        default="mean",
        help="how slices/slices3 pool the slice features (attention: learned, trained with the head)",
    )
    parser.add_argument("--protocol", choices=PROTOCOLS, default="bn", help="what is trained on top (see above)")
    parser.add_argument("--folds", type=int, default=None, help="cross-validation folds (default: 5)")
    parser.add_argument("--repeats", type=int, default=None, help="repeats of the folds (default: 3)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs per fold (default: bn 100, paper 15)")
    parser.add_argument("-b", "--batch-size", type=int, default=None, help="samples per step (default: bn 32, paper 8)")
    parser.add_argument("--lr", type=float, default=None, help="learning rate (default: 0.001 in every protocol)")
    parser.add_argument(
        "--normalize",
        choices=(*NORMALIZATION, *DEPRECATED_NORMALIZATION),
        default=None,
        help="mean/std step after the [0, 1] scaling (see above) (default: from the checkpoints, else "
        f"{DEFAULT_NORMALIZATION})",
    )
    parser.add_argument(
        "--window",
        default=None,
        metavar="LOW,HIGH",
        help="clip intensities to LOW..HIGH and scale that to [0, 1] instead of min-max scaling, e.g. "
        "--window=-1000,400 for CT in Hounsfield units (default: from the checkpoints, else min-max)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the folds and the training")
    add_device_flag(parser)
    add_threads_flag(parser)
    parser.add_argument("-j", "--workers", type=int, default=0, help="data-loading workers")
    parser.add_argument("--output-dir", required=True, help="where results.json, results.md and the plot go")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue --output-dir, skipping finished jobs of methods with the same label, init and checkpoint "
        "(data and checkpoints compared by content)",
    )
    parser.add_argument(
        "--allow-changed",
        action="store_true",
        help="with --resume: go on when --data or a checkpoint holds other content than when its jobs ran; the "
        "finished jobs of what changed are discarded (never mixed), and the count is printed",
    )
    parser.add_argument(
        "--shard", default=None, metavar="K/N", help="run only shard K of N of the jobs (1 <= K <= N); no merge"
    )
    add_quiet_flag(parser, "no progress bar")


def parse_methods(values: list[str], checkpoint: str | None) -> list[tuple]:
    """``["crossd=a.pt", "acs", "acs+volumes=b.pt"]`` -> ``[("crossd", "a.pt"), ("acs", checkpoint, "acs"),
    ("acs", "b.pt", "acs+volumes")]``: ``INIT+TAG`` labels another method of the same init, and the one untagged
    method of that init keeps its plain name."""
    parsed = []
    for value in values:
        name, sep, path = value.partition("=")
        if sep and not path:
            raise SettingsError(f"{value}: no checkpoint after '='", field="init")
        parsed.append((name, name.partition("+")[0], path if sep else checkpoint))
    methods = []
    for name, init, path in parsed:
        same = [n for n, i, _ in parsed if i == init]
        labelled = name != init or (len(same) > 1 and same.count(init) == 1)
        methods.append((init, path, name) if labelled else (init, path))
    return methods


TASK_FLAGS = (
    "data", "output_dir", "protocol", "normalize", "window", "seed", "size", "slice_axis", "align", "arch",
    "drop_bn_stats", "resume", "allow_changed",
)  # fmt: skip
"""Flags of settings every task shares (:class:`~crossd.evaluate.task_config.TaskConfig`), named as the setting."""
CLASSIFICATION_FLAGS = (
    "folds", "repeats", "epochs", "batch_size", "lr", "split", "spatial_dims", "num_classes", "image_size",
    "recalibrate_bn", "slice_pool",
)  # fmt: skip
"""Flags of settings only classification has, or whose ``None`` means the protocol's default."""


def task_settings(args: argparse.Namespace) -> dict:
    """The settings every task shares, from the flags (``--device auto`` is ``None``: the k-fold runner picks)."""
    return {
        **flag_values(args, TASK_FLAGS),
        "methods": parse_methods(args.init, args.checkpoint),
        "device": None if args.device == "auto" else args.device,
        "progress": not args.quiet,
        "num_workers": args.workers,
    }


def config_from_args(args: argparse.Namespace) -> EvaluateConfig:
    """The classification run the flags ask for."""
    return EvaluateConfig(**task_settings(args), **flag_values(args, CLASSIFICATION_FLAGS))


def segmentation_config_from_args(args: argparse.Namespace) -> SegmentationConfig:
    """The segmentation run the flags ask for (``--task segmentation``): flags left out take the segmentation
    defaults; ``--recalibrate-bn`` and ``--split official`` are refused (protocol ``paper`` is, by validation)."""
    if args.recalibrate_bn:
        raise SettingsError(
            "is for classification; segmentation protocols train the BatchNorms", field="recalibrate_bn"
        )
    if args.split != "kfold":
        raise SettingsError(
            "official is for classification on a MedMNIST .npz; segmentation uses k folds", field="split"
        )
    given = flag_values(args, ("folds", "repeats", "epochs", "batch_size", "lr"))
    return SegmentationConfig(**task_settings(args), **{name: v for name, v in given.items() if v is not None})


def _check_settings_then_data(cfg: TaskConfig, args: argparse.Namespace, names: tuple[str, ...] = ()) -> None:
    """Bad flag values first (they need no data), then every input path (``--data``, ``--checkpoint``, the
    checkpoints of ``--init NAME=CKPT``), each named by its flag when missing or unreadable (the data ``names`` the
    task knows need no path)."""
    cfg.validate()
    if args.data not in names:
        check_input_path(args.data, "data")
    if args.checkpoint is not None:
        check_input_path(args.checkpoint, "checkpoint")
    for value in args.init:
        name, sep, path = value.partition("=")
        if sep and path:
            with user_path_errors("methods", value, CheckpointError):
                os.stat(path)


def run(args: argparse.Namespace) -> int:
    shard = parse_shard(args.shard)
    set_threads(args)
    args.window = None if args.window is None else parse_window(args.window)
    ensure_writable_dir(args.output_dir, "output_dir")
    if args.task == "segmentation":
        from crossd.evaluate.segmentation import evaluate_segmentation

        cfg = segmentation_config_from_args(args)
        _check_settings_then_data(cfg, args, (MNI152,))
        results = evaluate_segmentation(cfg, shard=shard)
    else:
        cfg = config_from_args(args)
        _check_settings_then_data(cfg, args)
        results = evaluate(cfg, shard)
    if int(os.environ.get("RANK", "0")) != 0:
        return 0  # under torchrun rank 0 reports
    if shard is not None:
        done = sum(len(m.folds) for m in results.methods)
        print(
            f"shard {args.shard}: ran {results.ran} job(s); {done} of {results.jobs} jobs of this evaluation "
            "are finished; run the same command without --shard to merge them"
        )
        return 0
    lines = summary_lines(results)
    if results.not_reported:
        kept = ", ".join(f"{name} ({n} jobs)" for name, n in results.not_reported.items())
        lines.append(f"kept on disk, not reported (not asked for): {kept}")
    print("\n".join(lines))
    print(f"table: {Path(args.output_dir) / RESULTS_MD}")
    return 0
