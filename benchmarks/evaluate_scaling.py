"""Wall time of one small ``crossd evaluate`` run with 1 process and with ``torchrun --nproc_per_node=2``.

Both runs evaluate the same synthetic 3D set (random volumes whose brightness follows the label) with the same
flags; each torch process gets one thread, so the 2-process run uses two cores where the 1-process run uses one.
The per-fold accuracies of both runs are compared (they must be equal: a job's numbers do not depend on the
process count).

    PYTHONPATH=src python benchmarks/evaluate_scaling.py [--epochs 3] [--size 16]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from crossd.results import load_results


def _volumes(path: Path, n: int, size: int) -> None:
    rng = np.random.default_rng(0)
    labels = np.arange(n) % 2
    images = (rng.random((n, size, size, size)) * 100 + labels[:, None, None, None] * 40).astype(np.uint8)
    np.savez(path, images=images, labels=labels)


def _run(command: list[str]) -> float:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    start = time.perf_counter()
    subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--size", type=int, default=16)
    parser.add_argument("--samples", type=int, default=48)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        _volumes(root / "vol.npz", args.samples, args.size)
        flags = [
            "--data", str(root / "vol.npz"), "--init", "random", "--arch", "small_cnn", "--protocol", "finetune",
            "--folds", "4", "--repeats", "1", "--epochs", str(args.epochs), "-b", "8", "--no-progress",
        ]  # fmt: skip
        one = _run([sys.executable, "-m", "crossd.evaluate", *flags, "--output-dir", str(root / "one")])
        torchrun = ["torchrun", "--standalone", "--nproc_per_node=2", "-m", "crossd.evaluate"]
        two = _run([*torchrun, *flags, "--output-dir", str(root / "two")])
        folds = [[f.accuracy for f in load_results(root / d / "results.json").methods[0].folds] for d in ("one", "two")]
    print(
        json.dumps(
            {
                "jobs": 4,
                "epochs": args.epochs,
                "volume": args.size,
                "seconds_1_process": round(one, 1),
                "seconds_2_processes": round(two, 1),
                "speed_up": round(one / two, 2),
                "same_per_fold_accuracies": folds[0] == folds[1],
                "cores": os.cpu_count(),
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
