"""`crossd bench`: speed and memory of Cross-D against plain convolutions (ratios measured in one process).

Times forward+backward of single layers at ResNet-18's convolution shapes and a whole ResNet-18 SGD step,
``to_crossd(resnet18())`` against ``resnet18()``; ``--memory`` adds the peak RSS of that step, each model in its
own process. ``--granularity`` times Cross-D with plane groups (one plane per group of a batch) beside per-sample
planes, all in the same interleaved run. See ``crossd.bench``.
"""

from __future__ import annotations

import argparse

from crossd.bench import format_report, run_benchmarks
from crossd.commands import add_threads_flag, set_threads
from crossd.errors import SettingsError
from crossd.io import ensure_writable_file, save_json
from crossd.nn.crossd_conv import PLANE_SAMPLING, check_plane_sampling
from crossd.ops.groups import check_granularity, parse_granularity
from crossd.ops.slicing import MODES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke test: batch 2, 32x32, 1 repeat (overrides --batch-size, --size, --repeats)",
    )
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES), help="Cross-D modes to time")
    parser.add_argument("--batch-size", type=int, default=16, help="images per timed step")
    parser.add_argument("--size", type=int, default=112, help="image size fed to ResNet-18")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved repeats per timing (median)")
    parser.add_argument(
        "--granularity",
        nargs="+",
        type=parse_granularity,
        metavar="{sample,batch,G}",
        help="planes per batch to time, each a candidate of the same run: sample (default), batch, or G groups",
    )
    parser.add_argument(
        "--plane-sampling",
        choices=PLANE_SAMPLING,
        default="head",
        help="planes of the timed Cross-D layers and models in training (random/grid: rotate, project modes)",
    )
    parser.add_argument("--memory", action="store_true", help="also measure peak RSS of a training step")
    parser.add_argument("--reference", metavar="PATH", help="also time the authors' layer: FILE or FILE:ClassName")
    add_threads_flag(parser)
    parser.add_argument("--json", metavar="OUT", help="write the full result as JSON")


def run(args: argparse.Namespace) -> int:
    batch_size, size, repeats = (2, 32, 1) if args.quick else (args.batch_size, args.size, args.repeats)
    for name, value, least in (("batch_size", batch_size, 1), ("size", size, 32), ("repeats", repeats, 1)):
        if value < least:
            raise SettingsError(f"must be at least {least}, got {value}", field=name)
    set_threads(args)
    granularities = tuple(dict.fromkeys(args.granularity or ["sample"]))
    for granularity in granularities:
        check_granularity(granularity)
    for mode in args.modes:
        check_plane_sampling(args.plane_sampling, mode)
    if args.json:
        ensure_writable_file(args.json, "json")
    result = run_benchmarks(
        args.modes, batch_size, size, repeats, args.memory, args.reference, granularities, args.plane_sampling
    )
    print(format_report(result))
    if args.json:
        save_json(result, args.json)
    return 0
