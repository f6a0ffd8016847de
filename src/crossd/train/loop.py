"""``pretrain``: 2D pretraining of a regular or Cross-D torchvision classifier, one process or under ``torchrun``."""

from __future__ import annotations

import datetime
import random
import time
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from crossd.data.images import load_image_splits
from crossd.evaluate.metrics import classification_metrics
from crossd.io import save_json
from crossd.models import ModelSpec
from crossd.train.checkpoint import (
    check_same_model,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from crossd.train.config import PretrainConfig
from crossd.train.distributed import (
    DistInfo,
    all_gather_objects,
    barrier,
    close_distributed,
    convert_sync_batchnorm,
    init_distributed,
)
from crossd.train.engine import Precision, Predictions, predict, train_one_epoch
from crossd.train.model import build_model
from crossd.train.optim import build_optimizer, build_scheduler
from crossd.train.progress import EpochLog


def pretrain(cfg: PretrainConfig) -> dict[str, Any]:
    """Train ``cfg.model`` on ``cfg.data_path``, evaluate every epoch on ``val``, and at the end on ``test``.

    Runs as one process, or as one of ``torchrun``'s processes (``DistributedDataParallel``; only rank 0
    writes). Writes into ``cfg.output_dir``: ``checkpoint.pt`` and ``model.safetensors`` after every epoch
    (atomically), ``log.csv`` (one row per epoch) and ``metrics.json``.

    Returns:
        ``{"val": {...}, "test": {...}}`` (``test`` only when the data has a test split): accuracy,
        balanced_accuracy, precision_macro, recall_macro, f1_macro (scikit-learn) plus loss and acc1/acc5 (%)
        of the final model; also ``"epochs"``, the number of epochs trained in total.

    Raises:
        FileNotFoundError, ValueError: one-line messages for bad data, models, checkpoints or settings; nothing
        already written is removed.
    """
    cfg.validate()
    created_group = not torch.distributed.is_initialized()
    info = init_distributed(cfg.device)
    try:
        return _pretrain(cfg, info)
    finally:
        if created_group:
            close_distributed()


def _pretrain(cfg: PretrainConfig, info: DistInfo) -> dict[str, Any]:
    output_dir = Path(cfg.output_dir)
    if cfg.resume is None and (output_dir / "checkpoint.pt").exists():
        raise ValueError(
            f"{output_dir / 'checkpoint.pt'} exists; pass --resume {output_dir / 'checkpoint.pt'} to continue it "
            "or choose another --output-dir"
        )
    checkpoint = load_checkpoint(cfg.resume) if cfg.resume else None
    _seed_everything(cfg.seed + info.rank)
    splits = load_image_splits(cfg.data_path, cfg.dataset, cfg.train_crop_size, cfg.val_resize_size, cfg.val_crop_size)
    spec = ModelSpec(cfg.model, cfg.conv, cfg.mode, len(splits.classes))
    if checkpoint is not None:
        check_same_model(checkpoint, spec, cfg.resume)
    bare = _prepare_model(cfg, spec, info, checkpoint)
    model = bare
    if info.distributed:
        model = DistributedDataParallel(bare, device_ids=[info.device] if info.device.type == "cuda" else None)

    optimizer = build_optimizer(bare, cfg)
    scheduler = build_scheduler(optimizer, cfg)
    precision = _precision(cfg, info)
    start_epoch = 0
    if checkpoint is not None:
        optimizer.load_state_dict(checkpoint["optimizer"])
        scheduler.load_state_dict(checkpoint["lr_scheduler"])
        if precision.scaler is not None and "scaler" in checkpoint:
            precision.scaler.load_state_dict(checkpoint["scaler"])
        start_epoch = int(checkpoint["epoch"])
        _restore_rng(checkpoint["rng"], info)

    if info.is_main:
        test_size = f" / {len(splits.test)} test" if splits.test is not None else ""
        print(
            f"pretraining a {cfg.conv} {cfg.model} on {len(splits.train)} train / {len(splits.val)} val{test_size} "
            f"images of {len(splits.classes)} classes; {info.world_size} process(es) on {info.device}; "
            f"epochs {start_epoch + 1}..{cfg.epochs} -> {output_dir}",
            flush=True,
        )
    train_loader, train_seed = _train_loader(splits.train, cfg, info)
    val_loader = _eval_loader(splits.val, cfg, info)
    log = EpochLog(output_dir, start_epoch) if info.is_main else None
    val: Predictions | None = None
    run_start = time.perf_counter()
    for epoch in range(start_epoch, cfg.epochs):
        train_loader.sampler.set_epoch(epoch)
        train_seed.manual_seed(int(np.random.SeedSequence([cfg.seed, epoch, info.rank]).generate_state(1)[0]))
        lr = optimizer.param_groups[0]["lr"]
        stats = train_one_epoch(
            model, optimizer, train_loader, info, precision, f"Epoch [{epoch + 1}/{cfg.epochs}]", cfg.print_freq
        )
        scheduler.step()
        val = predict(bare, val_loader, info, precision)
        states = all_gather_objects(rng_state(info.device), info)
        if info.is_main:
            remaining = (time.perf_counter() - run_start) / (epoch + 1 - start_epoch) * (cfg.epochs - epoch - 1)
            print(
                f"Epoch [{epoch + 1}/{cfg.epochs}] train loss {stats.loss:.4f} acc1 {stats.acc1:.2f} | "
                f"val loss {val.loss:.4f} acc1 {val.acc1:.2f} acc5 {val.acc5:.2f} | {stats.seconds:.1f} s, "
                f"run eta {datetime.timedelta(seconds=round(remaining))}",
                flush=True,
            )
            state = {
                "model": bare.state_dict(),
                "optimizer": optimizer.state_dict(),
                "lr_scheduler": scheduler.state_dict(),
                "epoch": epoch + 1,
                "args": asdict(cfg),
                "arch": asdict(spec),
                "classes": splits.classes,
                "rng": states,
                **({"scaler": precision.scaler.state_dict()} if precision.scaler is not None else {}),
            }
            save_checkpoint(output_dir, state, spec, state["model"])
            log.write(
                {
                    "epoch": epoch + 1,
                    "lr": lr,
                    "train_loss": stats.loss,
                    "train_acc1": stats.acc1,
                    "val_loss": val.loss,
                    "val_acc1": val.acc1,
                    "val_acc5": val.acc5,
                    "img/s": stats.images_per_second,
                    "seconds": stats.seconds,
                }
            )
        barrier(info)
    if log is not None:
        log.close()

    results: dict[str, Any] = {"epochs": cfg.epochs}
    results["val"] = _summary(val if val is not None else predict(bare, val_loader, info, precision))
    if splits.test is not None:
        results["test"] = _summary(predict(bare, _eval_loader(splits.test, cfg, info), info, precision))
    if info.is_main:
        save_json(results, output_dir / "metrics.json")
        scores = ", ".join(
            f"{split} accuracy {results[split]['accuracy']:.4f}" for split in ("val", "test") if split in results
        )
        print(f"done: {scores}; metrics in {output_dir / 'metrics.json'}", flush=True)
    return results


def _prepare_model(
    cfg: PretrainConfig, spec: ModelSpec, info: DistInfo, checkpoint: dict[str, Any] | None
) -> nn.Module:
    """The model on its device: resumed, warm-started or fresh; SyncBatchNorm if asked (and possible)."""
    model = build_model(spec, None if checkpoint else cfg.weights)
    if checkpoint is not None:
        model.load_state_dict(checkpoint["model"])
    model.to(info.device)
    return convert_sync_batchnorm(model, info) if cfg.sync_bn else model


def _seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def _restore_rng(states: list[dict[str, Any]], info: DistInfo) -> None:
    """Each process takes back its own RNG state; with another process count they stay freshly seeded."""
    if len(states) == info.world_size:
        set_rng_state(states[info.rank], info.device)
    elif info.is_main:
        print(
            f"note: checkpoint was written by {len(states)} process(es), this run has {info.world_size}; "
            "the data order is kept but random augmentations differ from an uninterrupted run",
            flush=True,
        )


def _precision(cfg: PretrainConfig, info: DistInfo) -> Precision:
    if not cfg.amp:
        return Precision()
    if info.device.type != "cuda":
        if info.is_main:
            warnings.warn("--amp needs CUDA; training in float32 on CPU", stacklevel=3)
        return Precision()
    if torch.cuda.is_bf16_supported():
        return Precision(torch.bfloat16)
    return Precision(torch.float16, torch.amp.GradScaler("cuda"))


def _train_loader(dataset: Dataset, cfg: PretrainConfig, info: DistInfo) -> tuple[DataLoader, torch.Generator]:
    """Shuffled by a seeded ``DistributedSampler`` (one process too, so resuming reproduces the order); worker
    seeds come from ``generator``, re-seeded every epoch. The last incomplete batch is dropped when there is a
    full one (BatchNorm cannot train on a batch of one)."""
    sampler = DistributedSampler(dataset, info.world_size, info.rank, shuffle=True, seed=cfg.seed)
    generator = torch.Generator()
    loader = DataLoader(
        dataset,
        batch_size=cfg.batch_size,
        sampler=sampler,
        num_workers=cfg.workers,
        pin_memory=info.device.type == "cuda",
        drop_last=len(sampler) > cfg.batch_size,
        generator=generator,
    )
    return loader, generator


def _eval_loader(dataset: Dataset, cfg: PretrainConfig, info: DistInfo) -> DataLoader:
    """Every ``world_size``-th sample for this process: each sample is evaluated exactly once."""
    return DataLoader(
        dataset,
        batch_size=cfg.batch_size,
        sampler=range(info.rank, len(dataset), info.world_size),
        num_workers=cfg.workers,
        pin_memory=info.device.type == "cuda",
    )


def _summary(predictions: Predictions) -> dict[str, float]:
    """Table-1 metrics plus loss and acc@1/acc@5 (%)."""
    metrics = classification_metrics(predictions.targets, predictions.topk[:, 0])
    return {**metrics, "loss": predictions.loss, "acc1": predictions.acc1, "acc5": predictions.acc5}
