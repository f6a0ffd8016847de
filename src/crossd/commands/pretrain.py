"""2D pretraining of a Cross-D (--rot) or regular torchvision classifier, like torchvision's classification
reference: `crossd pretrain` in one process, or one process per GPU with torchrun.

Examples:
  crossd pretrain --data-path /data/radimagenet --rot --output-dir runs/rad
  torchrun --nproc_per_node=8 --standalone -m crossd pretrain \\
      --data-path /path/to/radimagenet --workers 32 --batch-size 32 --sync-bn --rot
  torchrun --nproc_per_node=8 --standalone --no-python crossd pretrain --data-path ... --rot

Multi-node: start the same command on every node with torchrun's rendezvous flags instead of --standalone,
e.g. on each of 2 nodes with 8 GPUs:
  torchrun --nnodes=2 --nproc_per_node=8 --rdzv-id=job1 --rdzv-backend=c10d --rdzv-endpoint=HOST:29400 \\
      -m crossd pretrain --data-path ... --rot
(HOST is any node reachable by all; --output-dir should be on a shared file system, only global rank 0 writes.)

Data: an image folder with train/ and val/ (optional test/) class sub-folders, or a MedMNIST 2D .npz. Writes
checkpoint.pt and model.safetensors every epoch, log.csv, and metrics.json (macro precision/recall/F1, balanced
accuracy, accuracy on val and test). --batch-size is per process; --sync-bn needs CUDA (CPU runs warn and keep
per-process BatchNorm); --amp is CUDA only. Inputs are normalised with ImageNet's mean/std; checkpoint.pt and
model.safetensors record that (with --window, the crop size and 3 channels), and crossd evaluate and crossd
transfer take it from there.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import fields
from pathlib import Path

from crossd.commands import add_device_flag, add_quiet_flag
from crossd.convert.to_crossd import CROSSD_INITS
from crossd.data.orientation import SLICE_AXES
from crossd.data.preprocessing import parse_window
from crossd.ops.groups import parse_granularity
from crossd.train import PretrainConfig, pretrain
from crossd.train.defaults import RECIPE_SIZES, FittedDefaults, fit_defaults

_DEFAULTS = PretrainConfig()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = _DEFAULTS
    data = parser.add_argument_group("data")
    data.add_argument("--data-path", required=True, help="image folder with train/ val/ [test/], or a .npz")
    data.add_argument(
        "--dataset", choices=("imagefolder", "medmnist"), default=None, help="default: medmnist for .npz paths"
    )
    data.add_argument(
        "--num-classes", type=int, default=None, help="class count (default: the .npz's labels, numbered 0..C-1)"
    )
    train_crop, val_resize, _ = RECIPE_SIZES
    from_data = f"(default: {train_crop}, or the image side for images smaller than that)"
    data.add_argument("--train-crop-size", type=int, help=f"random-resized crop size {from_data}")
    data.add_argument(
        "--val-resize-size",
        type=int,
        help=f"evaluation resize (default: {val_resize}, or the image side for images under {train_crop})",
    )
    data.add_argument("--val-crop-size", type=int, help=f"evaluation centre crop {from_data}")
    data.add_argument(
        "--train-crop-scale",
        type=float,
        nargs=2,
        default=d.train_crop_scale,
        metavar=("MIN", "MAX"),
        help="area range of the random-resized crop (1 1 keeps whole images, e.g. centre-labelled patches)",
    )
    data.add_argument(
        "--check-images",
        choices=("auto", "full", "header", "none"),
        default=_DEFAULTS.check_images,
        help="before the first step, decode every image of an image folder (full), read headers only, or skip; "
        "auto: full up to 200,000 files, header beyond (results cached in --output-dir)",
    )
    data.add_argument(
        "--window",
        default=None,
        metavar="LOW,HIGH",
        help="clip .npz and --volumes intensities to LOW..HIGH and scale that to [0, 1] instead of min-max scaling, "
        "e.g. --window=-1000,400 for CT in Hounsfield units",
    )
    data.add_argument("-j", "--workers", type=int, help="data-loading workers per process (default: min(4, CPU cores))")

    model = parser.add_argument_group("model")
    model.add_argument("--model", default=d.model, help="torchvision classification model name")
    model.add_argument("--conv", choices=("regular", "crossd"), default=d.conv, help="convolution type")
    model.add_argument("--rot", action="store_true", help="Cross-D convolutions (same as --conv crossd)")
    model.add_argument("--mode", choices=("rotate", "project", "shift"), default=d.mode, help="Cross-D slicing mode")
    model.add_argument("--weights", default=None, help="local 2D checkpoint to warm-start from")
    model.add_argument(
        "--crossd-init",
        choices=CROSSD_INITS,
        default=d.crossd_init,
        help="start of fresh Cross-D kernels: 3D random, or a 2D init in the angle-0 plane / in every slice",
    )
    model.add_argument(
        "--plane-sampling",
        choices=("head", "random", "grid"),
        default=d.plane_sampling,
        help="random/grid: turn each training sample's plane by a random rotation from SO(3) / the cube's 24 "
        "(rotate, project modes)",
    )
    model.add_argument(
        "--granularity",
        type=parse_granularity,
        default=d.granularity,
        metavar="{sample,batch,G}",
        help="one rotation (or sampled plane) per training sample, as the paper, one per batch, or one per each of G "
        "contiguous groups of a process's batch",
    )
    model.add_argument(
        "--consistency",
        type=float,
        default=d.consistency,
        help="with --plane-sampling random: weight of the symmetric KL between two independent slicings",
    )
    model.add_argument("--sync-bn", action="store_true", help="SyncBatchNorm across processes (CUDA only)")

    train = parser.add_argument_group("training")
    train.add_argument("--epochs", type=int, default=d.epochs, help="passes over the training set")
    train.add_argument("-b", "--batch-size", type=int, default=d.batch_size, help="per process")
    train.add_argument("--opt", choices=("sgd", "adamw"), default=d.opt, help="optimiser")
    train.add_argument("--lr", type=float, default=d.lr, help="learning rate (of the whole batch, all processes)")
    train.add_argument("--momentum", type=float, default=d.momentum, help="SGD only")
    train.add_argument(
        "--wd", "--weight-decay", dest="weight_decay", type=float, default=d.weight_decay, help="weight decay"
    )
    train.add_argument(
        "--lr-scheduler", choices=("steplr", "cosineannealinglr"), default=d.lr_scheduler, help="learning-rate decay"
    )
    train.add_argument("--lr-step-size", type=int, default=d.lr_step_size, help="StepLR period (epochs)")
    train.add_argument("--lr-gamma", type=float, default=d.lr_gamma, help="StepLR factor")
    train.add_argument("--lr-min", type=float, default=d.lr_min, help="cosine schedule floor")
    train.add_argument("--lr-warmup-epochs", type=int, default=d.lr_warmup_epochs, help="linear warm-up epochs")
    train.add_argument("--lr-warmup-decay", type=float, default=d.lr_warmup_decay, help="warm-up start factor")
    train.add_argument("--amp", action="store_true", help="mixed precision (CUDA: bf16, or fp16 + scaling)")
    train.add_argument("--seed", type=int, default=d.seed, help="seed of the initialisation and data order")
    hybrid = parser.add_argument_group(
        "hybrid 2D+3D training",
        "The volumes train the same weights through a 3D twin that also shares the BatchNorm running statistics, so "
        "the 2D validation/test accuracy logged is measured with statistics the volumes moved (lower than the same "
        "weights score with 2D statistics; docs/experiments.md measures it).",
    )
    hybrid.add_argument(
        "--volumes", default=None, help="3D .npz (MedMNIST layout), NIfTI path,label CSV or folder; 2D data's classes"
    )
    hybrid.add_argument("--volume-size", type=int, default=None, help="resize CSV/folder volumes to this cube side")
    hybrid.add_argument(
        "--volume-slice-axis",
        choices=tuple(SLICE_AXES),
        default=d.volume_slice_axis,
        help="plane of NIfTI/DICOM volumes that matches the 2D images (docs/conventions.md)",
    )
    hybrid.add_argument("--volume-every", type=int, default=d.volume_every, help="a 3D batch after every N 2D batches")
    hybrid.add_argument("--volume-batch-size", type=int, default=d.volume_batch_size, help="volumes per 3D batch")
    hybrid.add_argument(
        "--volume-init",
        choices=("i3d", "acs"),
        default=None,
        help="regular models: the 3D twin convolves with ACS (acs, default) or inflated (i3d) 2D kernels",
    )

    run = parser.add_argument_group("run")
    run.add_argument("--output-dir", default=d.output_dir, help="checkpoints, log.csv and metrics.json")
    run.add_argument(
        "--resume",
        nargs="?",
        const="",
        metavar="CHECKPOINT",
        help="continue the run in --output-dir (its checkpoint.pt), or from CHECKPOINT (with the same flags)",
    )
    run.add_argument(
        "--allow-changed",
        action="store_true",
        help="let --resume continue with other settings (lr, batch size, optimizer, ...); the checkpoint records them",
    )
    add_device_flag(run, default=d.device)
    run.add_argument("--print-freq", type=int, default=d.print_freq, help="progress line every N steps")
    add_quiet_flag(run, "no console lines (logs and checkpoints are still written)")


SIZES = ("train_crop_size", "val_resize_size", "val_crop_size", "workers")
"""Flags whose defaults fit the data and the machine (:func:`crossd.train.defaults.fit_defaults`)."""


def fitted_defaults(args: argparse.Namespace) -> FittedDefaults:
    """:data:`SIZES` as given, or fitted to ``--data-path`` and this machine, with notes on what was chosen."""
    return fit_defaults(args.data_path, *(getattr(args, name) for name in SIZES))


def config_from_args(args: argparse.Namespace, fitted: FittedDefaults | None = None) -> PretrainConfig:
    """The :class:`PretrainConfig` of parsed flags (``--rot`` means ``conv="crossd"``; bare ``--resume`` the
    checkpoint in ``--output-dir``; :data:`SIZES` not given from ``fitted``, by default :func:`fitted_defaults`)."""
    values = {f.name: getattr(args, f.name) for f in fields(PretrainConfig) if hasattr(args, f.name)}
    if args.rot:
        values["conv"] = "crossd"
    values["train_crop_scale"] = tuple(values.get("train_crop_scale", PretrainConfig.train_crop_scale))
    if args.resume == "":
        values["resume"] = str(Path(args.output_dir) / "checkpoint.pt")
    window = getattr(args, "window", None)
    values["window"] = None if window is None else parse_window(window)
    fitted = fitted or fitted_defaults(args)
    values.update({name: getattr(fitted, name) for name in SIZES})
    return PretrainConfig(**values)


def run(args: argparse.Namespace) -> int:
    fitted = fitted_defaults(args)
    if not args.quiet and int(os.environ.get("RANK", "0")) == 0:
        for note in fitted.notes:
            print(f"[crossd pretrain] {note}", flush=True)
    pretrain(config_from_args(args, fitted))
    return 0
