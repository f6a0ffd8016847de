"""Run a study from a TOML file: pretrain every arm for every seed, evaluate every arm and baseline on shared folds
under each protocol, and write the tables with paired Wilcoxon tests (CONFIG's format: crossd.study.config;
benchmarks/studies/ holds the studies of docs/experiments.md).

Examples:
  crossd study benchmarks/studies/study9_cnn.toml --output-dir runs/study9 --threads 1
  crossd study study.toml --shard 1/2         # and, at the same time, --shard 2/2 in another process;
  crossd study study.toml                     # then this merges their evaluation jobs and writes the tables
  crossd study benchmarks/studies/study7_r18.toml --summarise-only --output-dir benchmarks/results/study7_r18

Finished pretraining runs and evaluation folds are reused and unfinished pretraining runs resumed, so an
interrupted study continues where it stopped. --shard K/N splits one study over N processes on the same output
folder: shard K pretrains every N-th arm (waiting at most --wait-seconds for the others' runs) and runs its share
of the evaluation jobs; the same command without --shard then merges the job files and writes the tables.
--archive DIR copies the small records (fold results, pretraining metrics and wall times, kernel energies; no
checkpoints) to DIR (with --summarise-only too: archive a finished run); --summarise-only --output-dir DIR remakes
the tables from them, and --resume-from DIR
continues an unfinished seed there. Writes OUTPUT-DIR/study.json and the Markdown to --markdown.
"""

from __future__ import annotations

import argparse
import shlex
from dataclasses import replace
from pathlib import Path

from crossd.commands import add_threads_flag, set_threads
from crossd.errors import CrossdError
from crossd.evaluate.kfold import parse_shard
from crossd.study import load_study, run_study, write_summary
from crossd.study.archive import archive
from crossd.study.runner import WAIT_SECONDS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="the study's TOML file (data, pretraining arms, seeds, evaluation)")
    parser.add_argument("--output-dir", default=None, help="run folder (default: runs/<CONFIG's name>)")
    parser.add_argument("--markdown", default=None, help="where the tables go (default: OUTPUT-DIR/study.md)")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="run these seeds (default: CONFIG's)")
    parser.add_argument(
        "--shard", default=None, help="K/N: this process's share of the pretraining runs and evaluation jobs"
    )
    parser.add_argument(
        "--wait-seconds",
        type=float,
        default=WAIT_SECONDS,
        help="how long a shard waits for a pretraining run of another shard",
    )
    parser.add_argument(
        "--summarise-only", action="store_true", help="train nothing: make the tables from the records in OUTPUT-DIR"
    )
    parser.add_argument("--archive", default=None, help="then copy the records (no checkpoints) to this folder")
    parser.add_argument(
        "--resume-from", default=None, help="an --archive folder: reuse its records where pretraining reproduces them"
    )
    add_threads_flag(parser)


def command_line(args: argparse.Namespace, output_dir: Path) -> str:
    """The command that remakes the tables from ``output_dir`` (shown under them)."""
    words = ["crossd", "study", args.config, "--output-dir", str(output_dir)]
    if args.seeds:
        words += ["--seeds", *map(str, args.seeds)]
    return shlex.join([*words, *(["--summarise-only"] if args.summarise_only else [])])


def run(args: argparse.Namespace) -> int:
    config = load_study(args.config)
    if args.seeds:
        config = replace(config, seeds=tuple(args.seeds))
    shard = parse_shard(args.shard)
    if args.wait_seconds <= 0:
        raise CrossdError(f"must be positive, got {args.wait_seconds:g}", field="wait_seconds")
    set_threads(args)
    output_dir = Path(args.output_dir or Path("runs") / Path(args.config).stem)
    markdown = Path(args.markdown) if args.markdown else output_dir / "study.md"
    command = command_line(args, output_dir)
    if args.summarise_only:
        text = write_summary(config, output_dir, markdown, command)
        if text is None:
            raise CrossdError(
                f"{output_dir}: no seed of {list(config.seeds)} has finished every protocol of {args.config}",
                field="output_dir",
            )
        if args.archive:
            archive(config, output_dir, Path(args.archive), list(config.seeds))
    else:
        text = run_study(
            config, output_dir, shard, args.wait_seconds, args.archive, args.resume_from, markdown, command
        )
    if text is not None:
        print(f"wrote {markdown} and {output_dir / 'study.json'}")
    return 0
