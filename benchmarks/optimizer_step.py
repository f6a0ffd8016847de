"""What one Adam step costs on the CPU, per implementation, for a plain and a Cross-D ResNet-18.

A Cross-D ResNet-18 holds 3D kernels (33 M parameters against 11 M), so its optimiser step costs about 3x a
plain one's, and torch's CPU default is ``foreach=False`` (a Python loop over tensors). ``crossd.train.optim.adam``
uses the fused kernel; this prints the medians of interleaved steps and their ratios to the loop, measured in one
run:

    python benchmarks/optimizer_step.py --threads 1 --repeats 7
"""

from __future__ import annotations

import argparse
import sys

import torch

from crossd.bench import interleaved_medians
from crossd.models import ModelSpec
from crossd.train.model import build_model

IMPLEMENTATIONS = {"loop (CPU default)": {"foreach": False}, "foreach": {"foreach": True}, "fused": {"fused": True}}


def step_times(conv: str, repeats: int) -> tuple[int, dict[str, float]]:
    """Parameter count and median seconds of one ``Adam.step`` per implementation for ResNet-18 with ``conv``."""
    torch.manual_seed(0)
    params = list(build_model(ModelSpec("resnet18", conv, "rotate", 4)).parameters())
    for p in params:
        p.grad = torch.randn_like(p)
    optimizers = {name: torch.optim.Adam(params, lr=1e-3, **kw) for name, kw in IMPLEMENTATIONS.items()}
    medians = interleaved_medians({name: opt.step for name, opt in optimizers.items()}, repeats)
    return sum(p.numel() for p in params), medians


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(
        f"Adam step, medians of {args.repeats} interleaved steps, {args.threads} thread(s), torch {torch.__version__}"
    )
    for conv in ("regular", "crossd"):
        count, medians = step_times(conv, args.repeats)
        loop = medians["loop (CPU default)"]
        cells = ", ".join(f"{name} {1e3 * t:.1f} ms ({loop / t:.1f}x)" for name, t in medians.items())
        print(f"ResNet-18 {conv}, {count / 1e6:.1f} M parameters: {cells}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
