"""`crossd demo`: pretrain Cross-D and regular ResNet-18s on 2D MRI patches from nilearn's MNI152 template,
transfer them to 3D, compare the inits on 3D patches, and write report.md with plots and the filter GIF.

Run time: see README (one measured figure, with its machine); report.md lists each stage's wall-clock and CPU
seconds of your run. --quick is a smoke test; --folds 5 --repeats 3 --epochs 100 --eval-lr 1e-3 runs the full bn
protocol. Rerunning in the same
--output-dir reuses what is done (an interrupted demo continues).
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from crossd.commands import add_device_flag, add_quiet_flag, flag_values
from crossd.errors import SettingsError
from crossd.io import ensure_writable_dir

DEMO_FLAGS = (
    "output_dir", "quick", "folds", "repeats", "epochs", "eval_lr", "pretrain_epochs", "frames", "seed", "device",
    "protocol", "segmentation", "segmentation_epochs", "volumes", "study", "baselines",
)  # fmt: skip
"""Flags named as the :class:`~crossd.demo.run.DemoConfig` setting they give."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output-dir", default="crossd-demo", help="where data, runs and the report go")
    parser.add_argument("--quick", action="store_true", help="tiny sets, 1 pretraining epoch, 2 folds x 2 epochs")
    parser.add_argument("--folds", type=int, help="cross-validation folds (default 3; --quick 2)")
    parser.add_argument("--repeats", type=int, help="cross-validation repeats (default 1)")
    parser.add_argument("--epochs", type=int, help="epochs per fold in the 3D evaluation (default 20; --quick 2)")
    parser.add_argument(
        "--eval-lr",
        type=float,
        help="evaluation learning rate (default 0.01 for the demo's 20 epochs; the bn protocol's 0.001 is meant "
        "for 100)",
    )
    parser.add_argument(
        "--protocol",
        choices=("bn", "paper"),
        default="bn",
        help="evaluation protocol: bn (default) or paper (the authors' Tables 2-3 protocol; only --folds/--repeats/"
        "--epochs reduce it)",
    )
    parser.add_argument(
        "--segmentation",
        action="store_true",
        help="also the second task: grey/white-matter segmentation with each transferred encoder (adds minutes)",
    )
    parser.add_argument("--segmentation-epochs", type=int, help="epochs per fold of the segmentation (default 4)")
    volumes = "also the hybrid 2D+3D pretrainings: crossd+volumes (our best Cross-D setting), its fair baseline"
    parser.add_argument("--volumes", action="store_true", help=f"{volumes} acs+volumes (over 2x the pretraining time)")
    parser.add_argument(
        "--baselines",
        choices=("all", "core"),
        default="all",
        help="all: I3D, ACS, random, slice aggregation (slices) and 2.5D (2.5d) of the regular network; core: the "
        "first three only (two evaluated methods fewer)",
    )
    parser.add_argument("--pretrain-epochs", type=int, help="2D pretraining epochs (default 6; --quick 1)")
    parser.add_argument("--samples-2d", type=int, help="2D pretraining patches (default 3000; --quick 96)")
    parser.add_argument("--samples-3d", type=int, help="3D downstream patches (default 240; --quick 48)")
    parser.add_argument("--frames", type=int, help="frames of the filter animation (default 24; --quick 6)")
    parser.add_argument(
        "--study",
        metavar="STUDY_JSON",
        help="a study.json of crossd study: its multi-seed table goes into the report beside this run",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the data, training and folds")
    add_device_flag(parser, default="cpu")
    add_quiet_flag(parser)


def run(args: argparse.Namespace) -> int:
    from crossd.demo.data import DemoDataConfig
    from crossd.demo.run import QUICK_DATA, DemoConfig, run_demo

    for name in ("folds", "repeats", "epochs", "pretrain_epochs", "samples_2d", "samples_3d", "frames"):
        value = getattr(args, name)
        if value is not None and value < (2 if name == "folds" else 1):
            raise SettingsError(f"must be at least {2 if name == 'folds' else 1}, got {value}", field=name)
    ensure_writable_dir(args.output_dir, "output_dir")
    data = QUICK_DATA if args.quick else DemoDataConfig()
    sizes = {"samples_2d": args.samples_2d, "samples_3d": args.samples_3d}
    data = replace(data, seed=args.seed, **{k: v for k, v in sizes.items() if v is not None})
    cfg = DemoConfig(data=data, progress=not args.quiet, **flag_values(args, DEMO_FLAGS))
    run_demo(cfg)
    print(f"report: {Path(args.output_dir) / 'report.md'}")
    return 0
