"""Memory and time of a training step: SliceModel(ResNet-18) against the 3D ResNet-18 on the same batch.

Each configuration runs in its own process: ``--steps`` forward+backward passes (train mode, every parameter
trained, the ``finetune`` case) of ``(batch, 3, size, size, size)`` volumes. Memory is what the steps add to the
process (CPU: peak resident set ``VmHWM`` minus the resident set before the first step; CUDA:
``torch.cuda.max_memory_allocated`` minus the memory allocated before), time the median step.

    PYTHONPATH=src nice -n 5 python benchmarks/slice_memory.py [--size 64] [--batch 2] [--chunks none 32 16 8]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

import torch
import torchvision

from crossd import to_3d
from crossd.bench import _memory_status_mib
from crossd.io import save_json
from crossd.models import SliceModel


def build(config: str) -> torch.nn.Module:
    """``3d`` (``to_3d(resnet18(), init="i3d")``), ``slices:CHUNK`` (axial) or ``slices3:CHUNK`` (three views);
    ``CHUNK`` is slices per volume per 2D forward, ``none`` for all at once."""
    model2d = torchvision.models.resnet18(num_classes=2)
    if config == "3d":
        return to_3d(model2d, init="i3d", inplace=True)
    kind, chunk = config.split(":")
    return SliceModel(model2d, "d" if kind == "slices" else "dhw", chunk=None if chunk == "none" else int(chunk))


def measure(config: str, size: int, batch: int, steps: int, device: str) -> dict:
    """Memory (MiB) the training steps add, and the median step time (s), in this process."""
    model = build(config).to(device).train()
    x = torch.randn(batch, 3, size, size, size, device=device)
    cuda = device.startswith("cuda")
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated() / 2**20 if cuda else _memory_status_mib("VmRSS")
    times = []
    for _ in range(steps):
        model.zero_grad(set_to_none=True)
        start = time.perf_counter()
        model(x).logsumexp(1).sum().backward()
        sync()
        times.append(time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else _memory_status_mib("VmHWM")
    return {"config": config, "memory_mib": round(peak - before, 1), "step_s": round(statistics.median(times), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=64, help="volume side")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--steps", type=int, default=2, help="steps per configuration (time: their median)")
    parser.add_argument("--chunks", nargs="+", default=["none", "32", "16", "8"], help="SliceModel chunks to try")
    parser.add_argument("--views", default="16", help="chunk of the three-view model (slices3); 'skip' to skip")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", default=None, help="also write the rows here")
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)  # a child process: one configuration
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.one:
        print(json.dumps(measure(args.one, args.size, args.batch, args.steps, args.device)))
        return
    configs = ["3d", *(f"slices:{c}" for c in args.chunks)] + (
        [] if args.views == "skip" else [f"slices3:{args.views}"]
    )
    rows = []
    for config in configs:
        command = [sys.executable, __file__, "--one", config, *sys.argv[1:]]
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    base = rows[0]
    device = torch.cuda.get_device_name() if args.device.startswith("cuda") else f"CPU, {args.threads} thread(s)"
    print(
        f"training step (forward+backward) on ({args.batch}, 3, {args.size}, {args.size}, {args.size}), {device}, "
        f"torch {torch.__version__}, median of {args.steps} steps"
    )
    print(f"{'model':<24}{'memory MiB':>12}{'x 3D':>8}{'step s':>10}{'x 3D':>8}")
    for row in rows:
        name = "3D ResNet-18 (i3d)" if row["config"] == "3d" else row["config"].replace(":", " chunk ")
        row["memory_ratio"] = round(row["memory_mib"] / base["memory_mib"], 2)
        row["time_ratio"] = round(row["step_s"] / base["step_s"], 2)
        print(
            f"{name:<24}{row['memory_mib']:>12.0f}{row['memory_ratio']:>8.2f}{row['step_s']:>10.2f}{row['time_ratio']:>8.2f}"
        )
    if args.json:
        save_json({"args": vars(args), "torch": torch.__version__, "device": device, "rows": rows}, args.json)


if __name__ == "__main__":
    main()
