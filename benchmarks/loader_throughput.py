"""Can the data loader keep up with the model on an ImageNet-style folder of many small files?

Writes ``--files`` small PNGs as ``train/class<c>/<i>.png`` (plus one validation image per class) into a temporary
folder (deleted afterwards), then measures, with the pretraining code itself:

1. start-up: the seconds ``crossd.data.images.load_image_splits`` takes to index the folder;
2. the loader alone: images per second of ``crossd.train.loaders.TrainLoader`` with ``--workers`` workers
   (decode, random resized crop to ``--crop``, flip, normalise), after its first batch;
3. the model alone: images per second of a ResNet-18 SGD step (plain and Cross-D, ``crossd.bench.step_ratios``)
   on ready tensors of the same shape;
4. both together: ``--steps`` training steps of the Cross-D ResNet-18 fed by that loader, and the share of their
   time spent waiting for data (``crossd.train.progress.DataWait``, what ``crossd pretrain`` logs as
   ``data_wait``). The workers share the machine's cores with the model, as in a real run.

Usage (11 minutes on the loaded 2-core machine, about 5 of them deleting the files)::

    PYTHONPATH=src python benchmarks/loader_throughput.py --steps 8 --model-repeats 2 \
        --json benchmarks/results_loader.json
"""

from __future__ import annotations

import argparse
import io
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from crossd.bench import build_model, step_ratios
from crossd.data.images import load_image_splits
from crossd.io import save_json
from crossd.train.distributed import DistInfo
from crossd.train.loaders import TrainLoader
from crossd.train.progress import DataWait


def write_folder(root: Path, files: int, classes: int, size: int) -> float:
    """``files`` PNGs of ``size``² pixels in ``classes`` class folders (+ ``val``); returns the seconds taken.

    256 random images are encoded once and their bytes written in turn, so writing, not encoding, sets the pace.
    """
    start = time.perf_counter()
    rng = np.random.default_rng(0)
    encoded = []
    for _ in range(256):
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(buffer, format="PNG")
        encoded.append(buffer.getvalue())
    for split, count in (("train", files), ("val", classes)):
        folders = [root / split / f"class{c:04d}" for c in range(classes)]
        for folder in folders:
            folder.mkdir(parents=True)
        for i in range(count):
            (folders[i % classes] / f"{i:07d}.png").write_bytes(encoded[i % len(encoded)])
    return time.perf_counter() - start


def loader_rate(loader: torch.utils.data.DataLoader, batches: int) -> dict:
    """Seconds to the first batch (worker start-up) and images/s over the next ``batches`` batches."""
    start = time.perf_counter()
    iterator = iter(loader)
    next(iterator)
    first = time.perf_counter() - start
    start, images = time.perf_counter(), 0
    for _, (x, _) in zip(range(batches), iterator, strict=False):
        images += len(x)
    return {"first_batch_s": first, "images_per_s": images / (time.perf_counter() - start)}


def train_with_loader(loader: torch.utils.data.DataLoader, steps: int) -> dict:
    """``steps`` SGD steps of the Cross-D (rotate) ResNet-18 on ``loader``'s batches: images/s and data-wait share."""
    model = build_model("rotate").train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    batches = DataWait(loader)
    start, images, waited_before = time.perf_counter(), 0, 0.0
    for step, (x, y) in enumerate(batches):
        if step == 0:  # the first batch pays for the workers' start-up: time the steady state
            start, waited_before = time.perf_counter(), batches.seconds
        else:
            images += len(x)
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
        if step == steps:
            break
    seconds = time.perf_counter() - start
    return {"images_per_s": images / seconds, "data_wait": (batches.seconds - waited_before) / seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--size", type=int, default=8, help="side of the PNG files")
    parser.add_argument("--crop", type=int, default=112, help="training crop (the model's input size)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batches", type=int, default=300, help="batches to time the loader alone over")
    parser.add_argument("--steps", type=int, default=20, help="training steps fed by the loader")
    parser.add_argument("--model-repeats", type=int, default=3, help="interleaved repeats timing the model alone")
    parser.add_argument("--json", metavar="OUT")
    args = parser.parse_args()
    result: dict = {"config": vars(args) | {"threads": torch.get_num_threads(), "torch": torch.__version__}}
    with tempfile.TemporaryDirectory(prefix="crossd-loader-") as tmp:
        root = Path(tmp)
        result["write_s"] = write_folder(root, args.files, args.classes, args.size)
        print(f"wrote {args.files} PNGs ({args.size}x{args.size}) in {result['write_s']:.1f} s", flush=True)
        start = time.perf_counter()
        splits = load_image_splits(root, train_crop_size=args.crop, val_resize_size=args.crop, val_crop_size=args.crop)
        result["index_s"] = time.perf_counter() - start
        print(f"indexed {len(splits.train)} training images in {result['index_s']:.2f} s", flush=True)
        loader = TrainLoader(splits.train, args.batch_size, args.workers, 0, DistInfo())
        result["loader"] = loader_rate(loader.epoch(0), args.batches)
        print(
            f"loader alone ({args.workers} workers): {result['loader']['images_per_s']:.0f} img/s, first batch after "
            f"{result['loader']['first_batch_s']:.2f} s",
            flush=True,
        )
        model = step_ratios(["rotate"], args.batch_size, args.crop, args.model_repeats)
        result["model_images_per_s"] = model["images_per_s"]
        print(
            "model alone (ResNet-18 SGD step): "
            + ", ".join(f"{k} {v:.1f} img/s" for k, v in model["images_per_s"].items()),
            flush=True,
        )
        result["training"] = train_with_loader(loader.epoch(1), args.steps)
        print(
            f"Cross-D ResNet-18 fed by the loader: {result['training']['images_per_s']:.1f} img/s, "
            f"data wait {100 * result['training']['data_wait']:.1f}% of the time",
            flush=True,
        )
    if args.json:
        save_json(result, args.json)
        print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
