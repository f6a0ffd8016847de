"""The command line of the multi-seed studies of ``docs/experiments.md`` before ``crossd study``, kept so that their
commands still run: a thin wrapper that turns these flags into a study (arms picked from
``benchmarks/studies/arms.toml``) and runs it with :func:`crossd.study.run_study`, or remakes its tables.

    python benchmarks/transfer_study.py --seeds 0 1 2 3 4 --output-dir runs/study --markdown runs/study/study.md
    python benchmarks/transfer_study.py --protocol bn finetune --variants regular project project_grid ...

New studies are TOML files run by ``crossd study`` (``benchmarks/studies/``); ``crossd study --help`` describes
sharding, archives and resuming, which behave the same here.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

import torch

from crossd.errors import CrossdError
from crossd.evaluate.kfold import parse_shard
from crossd.study import StudyConfig, run_study, write_summary
from crossd.study.config import parse_study
from crossd.study.runner import WAIT_SECONDS

ARMS = Path(__file__).parent / "studies" / "arms.toml"
CATALOGUE = {arm["name"]: arm for arm in tomllib.loads(ARMS.read_text())["arms"]}


def _arm(name: str, variants: list[str]) -> dict:
    """The catalogue's arm ``name``; its ``compare_with`` only when that arm is among ``variants`` too."""
    arm = dict(CATALOGUE[name])
    if arm.get("compare_with") not in variants:
        arm.pop("compare_with", None)
    return arm


def study_of(args: argparse.Namespace) -> StudyConfig:
    """The study these flags describe (``regular`` always among the arms, first unless listed)."""
    variants = args.variants if "regular" in args.variants else ["regular", *args.variants]
    raw = {
        "seeds": args.seeds,
        "data": {"samples_2d": args.samples_2d, "size_2d": args.size_2d, "samples_3d_pretrain": args.hybrid_volumes},
        "pretrain": {"model": args.arch, "epochs": args.pretrain_epochs, "batch_size": args.batch_size, "lr": args.lr},
        "evaluate": {
            "protocols": args.protocol,
            "folds": args.folds,
            "epochs": args.epochs,
            "finetune_lr": args.finetune_lr,
            "recalibrate_bn": args.recalibrate_bn,
            "normalize": "radimagenet",  # what every study of docs/experiments.md evaluated with
            "tag": args.eval_tag,
            **({"lr": args.eval_lr} if args.eval_lr is not None else {}),
        },
        "arms": [_arm(name, variants) for name in variants],
    }
    return parse_study(raw, "transfer_study.py's flags")


def build_parser() -> argparse.ArgumentParser:
    """The old flags, with their old defaults."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output-dir", type=Path, default=Path("runs/study"))
    parser.add_argument("--markdown", type=Path, default=None, help="write the table here too")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--variants", nargs="+", default=list(CATALOGUE), choices=list(CATALOGUE))
    parser.add_argument("--arch", default="small_cnn")
    parser.add_argument("--pretrain-epochs", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--size-2d", type=int, default=32)
    parser.add_argument("--samples-2d", type=int, default=3000)
    parser.add_argument("--hybrid-volumes", type=int, default=120, help="left-hemisphere cubes for hybrid runs")
    parser.add_argument("--protocol", nargs="+", default=["bn"], choices=("bn", "linear", "finetune", "paper"))
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=20, help="evaluation epochs per fold")
    parser.add_argument("--eval-lr", type=float, default=None, help="evaluation learning rate (protocol default)")
    parser.add_argument("--finetune-lr", type=float, default=1e-3, help="learning rate of protocol finetune (Adam)")
    parser.add_argument("--recalibrate-bn", action="store_true", help="AdaBN before each fold (crossd evaluate's)")
    parser.add_argument("--eval-tag", default="", help="suffix of the evaluation folders (e.g. _lr1e-2)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (1 suits parallel processes)")
    parser.add_argument("--shard", default=None, help="K/N: this process's share; rerun without it to merge")
    parser.add_argument("--wait-seconds", type=float, default=WAIT_SECONDS, help="how long a shard waits for another")
    parser.add_argument("--summarise-only", action="store_true", help="train nothing: tables from --output-dir")
    parser.add_argument("--archive", type=Path, default=None, help="then copy the records (no checkpoints) here")
    parser.add_argument("--resume-from", type=Path, default=None, help="an --archive folder to continue from")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        study, shard = study_of(args), parse_shard(args.shard)
    except CrossdError as exc:
        parser.error(str(exc))
    if args.threads:
        torch.set_num_threads(args.threads)
    command = shlex.join(["python", "benchmarks/transfer_study.py", *(sys.argv[1:] if argv is None else argv)])
    if args.summarise_only:
        text = write_summary(study, args.output_dir, args.markdown, command)
        if text is None:
            parser.error(f"{args.output_dir}: no seed has finished every protocol of --protocol")
        print(text)
        return 0
    run_study(study, args.output_dir, shard, args.wait_seconds, args.archive, args.resume_from, args.markdown, command)
    return 0


if __name__ == "__main__":
    sys.exit(main())
