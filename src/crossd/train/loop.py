"""``pretrain``: 2D pretraining of a regular or Cross-D torchvision classifier, one process or under ``torchrun``."""

from __future__ import annotations

import datetime
import math
import random
import time
import uuid
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import Dataset

from crossd.data.image_check import CACHE_NAME, check_images, resolve_mode
from crossd.data.images import ImageSplits, detect_dataset_kind, load_image_splits
from crossd.errors import DataError, OutputError, SettingsError, one_line
from crossd.fingerprint import changed_line, fingerprint, same_content
from crossd.io import check_input_path, ensure_writable_dir, remove_stale_temps, save_json
from crossd.lock import LOCK_NAME, DirectoryLock
from crossd.metrics import classification_metrics
from crossd.models import ModelSpec
from crossd.train.checkpoint import (
    check_same_model,
    check_same_run,
    export_run_files,
    load_training_checkpoint,
    log_rows,
    rng_state,
    save_checkpoint,
    saved_epoch,
    set_rng_state,
)
from crossd.train.config import PretrainConfig
from crossd.train.distributed import (
    DistInfo,
    all_gather_objects,
    barrier,
    broadcast_buffers,
    close_distributed,
    convert_sync_batchnorm,
    init_distributed,
    on_main,
)
from crossd.train.engine import (
    EpochStats,
    NonFiniteLossError,
    Precision,
    Predictions,
    TopKAccuracy,
    cross_entropy_step,
    predict,
    sample_cross_entropy,
    train_one_epoch,
)
from crossd.train.hybrid import HybridSteps, VolumeBatches
from crossd.train.loaders import TrainLoader, eval_loader
from crossd.train.model import build_model
from crossd.train.optim import build_optimizer, build_scheduler
from crossd.train.progress import EpochLog


def pretrain(cfg: PretrainConfig) -> dict[str, Any]:
    """Train ``cfg.model`` on ``cfg.data_path``, evaluate every epoch on ``val``, and at the end on ``test``.

    Runs as one process, or as one of ``torchrun``'s processes (``DistributedDataParallel``; only rank 0
    writes). ``cfg.output_dir`` is checked writable (and cleared of a killed run's temporary files) before
    anything else. After every epoch it writes ``checkpoint.pt`` (which holds the epoch's log row), then
    derives ``model.safetensors`` and ``log.csv`` from it (all atomically); a resumed run derives them again
    first, so they never lag behind the checkpoint. ``metrics.json`` comes at the end.

    Returns:
        ``{"val": {...}, "test": {...}}`` (``test`` only when the data has a test split): accuracy,
        balanced_accuracy, precision_macro, recall_macro, f1_macro (scikit-learn) plus loss and acc1 (%)
        of the final model (and acc5 with more than 5 classes); also ``"epochs"``, the number of epochs trained in
        total.

    Raises:
        CrossdError: one-line messages for bad data, models, checkpoints, settings or output locations
            (:mod:`crossd.errors`); nothing already written is removed.
        NonFiniteLossError: the training loss (or a weight) became NaN/Inf; the last good checkpoint is kept.
        KeyboardInterrupt: on Ctrl-C (or SIGTERM, where the CLI turns it into one), with a message that says how
            to resume.
    """
    cfg.validate()
    if None in (cfg.train_crop_size, cfg.val_resize_size, cfg.val_crop_size, cfg.workers):
        cfg, notes = cfg.fitted()
        if not cfg.quiet:
            print("\n".join(notes))
    created_group = not torch.distributed.is_initialized()
    info = init_distributed(cfg.device)
    lock = DirectoryLock(Path(cfg.output_dir) / LOCK_NAME)
    try:
        _take_folder(cfg, info, lock)
        run = _Run.start(cfg, info)
        try:
            val = run.train()
        except DataError as exc:  # a file unreadable mid-run (changed since the check): name it, say how to go on
            raise DataError(f"{one_line(exc)}; training stopped {_how_to_resume(cfg)}") from None
        return run.finish(val)
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM as the CLI raises it (the same type is kept)
        raise type(exc)(_how_to_resume(cfg)) from None
    finally:
        if info.is_main:
            lock.release()
        if created_group:
            close_distributed()


def _take_folder(cfg: PretrainConfig, info: DistInfo, lock: DirectoryLock) -> None:
    """Before anything is read or written: the output folder is writable and this run its only user (the
    ``.lock`` that evaluation takes too, :mod:`crossd.lock`), and it holds no other run than the one resumed.
    Every process raises the same one-line error (rank 0 checks)."""
    output_dir = Path(cfg.output_dir)

    def take() -> None:
        ensure_writable_dir(output_dir, "output_dir")
        if cfg.resume is None and (output_dir / "checkpoint.pt").exists():
            raise OutputError(
                f"{output_dir}: holds a run ({output_dir / 'checkpoint.pt'}); resume it or choose another folder",
                field="output_dir",
            )
        lock.acquire()
        remove_stale_temps(output_dir)  # the lock proves that no other process is writing here
        if cfg.resume is not None:
            check_same_run(check_input_path(cfg.resume, "resume"), output_dir)

    on_main(info, take)


def _how_to_resume(cfg: PretrainConfig) -> str:
    """The end of the "interrupted" line: the epoch saved (read from the checkpoint itself: a signal may land
    between its rename and the lines after it) and the command that continues it."""
    checkpoint = Path(cfg.output_dir) / "checkpoint.pt"
    epoch = saved_epoch(checkpoint)
    if epoch is None:
        return "before any epoch was saved; run the same command again"
    if cfg.resume is not None and Path(cfg.resume).resolve() == checkpoint.resolve():
        how = "run the same command again"
    else:
        how = f"resume from {checkpoint} with the same settings"
    return f"after epoch {epoch} of {cfg.epochs} (saved in {checkpoint}); {how}"


@dataclass
class _Run:
    """Everything a pretraining run holds; ``model`` is ``bare`` wrapped in DDP when distributed."""

    cfg: PretrainConfig
    info: DistInfo
    output_dir: Path
    splits: ImageSplits
    spec: ModelSpec
    bare: nn.Module
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    precision: Precision
    start_epoch: int
    log_rows: list[dict[str, str]]
    inputs: dict[str, dict[str, Any]]
    """The fingerprints of what the run reads (:mod:`crossd.fingerprint`), kept in every checkpoint."""
    run_id: str
    """Names the run in its checkpoints, so that ``--resume`` never continues one run into another's folder."""
    hybrid: HybridSteps | None = None
    epochs_done: int = 0
    """Epochs of the last checkpoint written (or resumed from)."""

    def __post_init__(self) -> None:
        self.epochs_done = self.start_epoch

    @classmethod
    def start(cls, cfg: PretrainConfig, info: DistInfo) -> _Run:
        """Check the inputs (cheapest first), build data and model, and restore a checkpoint if resuming."""
        output_dir = Path(cfg.output_dir)
        inputs = {"data_path": fingerprint(check_input_path(cfg.data_path, "data_path"), "data_path")}
        if cfg.volumes is not None:
            inputs["volumes"] = fingerprint(check_input_path(cfg.volumes, "volumes"), "volumes")
        if cfg.weights is not None:
            check_input_path(cfg.weights, "weights")
        checkpoint = load_training_checkpoint(cfg.resume) if cfg.resume else None
        changes = _check_resume_settings(cfg, checkpoint, inputs)
        if changes and info.is_main and not cfg.quiet:
            print(f"note: resuming with changed settings ({'; '.join(changes)}); recorded in the checkpoint")
        _seed_everything(cfg.seed + info.rank)
        splits = load_image_splits(
            cfg.data_path,
            cfg.dataset,
            cfg.train_crop_size,
            cfg.val_resize_size,
            cfg.val_crop_size,
            cfg.train_crop_scale,
            cfg.num_classes,
            cfg.window if detect_dataset_kind(cfg.data_path, cfg.dataset) == "medmnist" else None,
        )
        spec = ModelSpec(cfg.model, cfg.conv, cfg.mode, len(splits.classes))
        if checkpoint is not None:
            check_same_model(checkpoint, spec, cfg.resume)
        _check_image_files(cfg, info, splits, output_dir)
        bare = build_model(
            spec, None if checkpoint else cfg.weights, cfg.crossd_init, cfg.plane_sampling, cfg.granularity
        )
        if checkpoint is not None:
            bare.load_state_dict(checkpoint["model"])
        bare.to(info.device)
        if cfg.sync_bn:
            bare = convert_sync_batchnorm(bare, info)
        model = bare
        if info.distributed:
            model = DistributedDataParallel(bare, device_ids=[info.device] if info.device.type == "cuda" else None)
        optimizer = build_optimizer(bare, cfg)
        scheduler = build_scheduler(optimizer, cfg)
        precision = Precision.choose(cfg.amp, info)
        rows: list[dict[str, str]] = []
        if checkpoint is not None:
            if changes:
                _continue_with_new_settings(optimizer, scheduler, checkpoint, cfg)
            else:
                optimizer.load_state_dict(checkpoint["optimizer"])
                scheduler.load_state_dict(checkpoint["lr_scheduler"])
            if precision.scaler is not None and "scaler" in checkpoint:
                precision.scaler.load_state_dict(checkpoint["scaler"])
            _restore_rng(checkpoint["rng"], info)
            rows = log_rows(checkpoint, output_dir)
            if info.is_main:  # the derived files may lag behind the checkpoint (a kill between writes)
                export_run_files(output_dir, {**checkpoint, "log": rows}, spec)
        start_epoch = int(checkpoint["epoch"]) if checkpoint is not None else 0
        hybrid = None
        if cfg.volumes is not None:
            volumes = VolumeBatches(
                cfg.volumes, cfg.volume_batch_size, cfg.seed, len(splits.classes), info.device, cfg.volume_size,
                info.rank, info.world_size, cfg.volume_slice_axis, cfg.window, cfg.preprocessing().normalize,
            )  # fmt: skip
            hybrid = HybridSteps(bare, optimizer, volumes, cfg.volume_every, cfg.twin_init, info, precision)
        run_id = checkpoint.get("run_id") if checkpoint is not None else None
        return cls(
            cfg, info, output_dir, splits, spec, bare, model, optimizer, scheduler, precision, start_epoch, rows,
            inputs, run_id or uuid.uuid4().hex, hybrid,
        )  # fmt: skip

    def train(self) -> Predictions | None:
        """Epochs ``start_epoch + 1 .. cfg.epochs``; returns the last epoch's validation predictions (if any)."""
        cfg, info = self.cfg, self.info
        self._announce()
        train_loader = TrainLoader(self.splits.train, cfg.batch_size, cfg.workers, cfg.seed, info)
        log = EpochLog(self.output_dir, self.log_rows) if info.is_main else None
        val = None
        run_start = time.perf_counter()
        for epoch in range(self.start_epoch, cfg.epochs):
            lr = self.optimizer.param_groups[0]["lr"]
            header = f"Epoch [{epoch + 1}/{cfg.epochs}]"
            if self.hybrid is not None:
                self.hybrid.start_epoch(epoch)
            self.model.train()
            try:
                stats = train_one_epoch(
                    self.model,
                    train_loader.epoch(epoch),
                    cross_entropy_step(cfg.consistency),
                    TopKAccuracy(),
                    self.optimizer,
                    info,
                    self.precision,
                    header=header,
                    print_freq=None if cfg.quiet else cfg.print_freq,
                    after_step=self.hybrid,
                )
            except NonFiniteLossError as exc:  # a single process stops at the step: report it as the epoch's loss
                stats = EpochStats(exc.loss, 0.0, 0.0, 0.0, 0.0)
            self._check_finite(epoch + 1, stats)
            self.scheduler.step()
            val = self._predict(self.splits.val)
            states = all_gather_objects(rng_state(info.device), info)
            volume_loss = self.hybrid.mean_loss() if self.hybrid is not None else None
            if info.is_main and not cfg.quiet:
                left = (time.perf_counter() - run_start) / (epoch + 1 - self.start_epoch) * (cfg.epochs - epoch - 1)
                top5 = "" if val.acc5 is None else f" acc5 {val.acc5:.2f}"
                print(
                    f"{header} train loss {stats.loss:.4f} acc1 {stats.acc1:.2f} | val loss {val.loss:.4f} "
                    f"acc1 {val.acc1:.2f}{top5} | {stats.seconds:.1f} s, "
                    f"{stats.images_per_second:.1f} img/s, data wait {100 * stats.data_wait:.0f}%, "
                    f"run eta {datetime.timedelta(seconds=round(left))}",
                    flush=True,
                )
            if info.is_main:
                row = _log_row(epoch + 1, lr, stats, val)
                if volume_loss is not None:
                    row["volume_loss"] = volume_loss
                log.add(row)
                self._save(epoch + 1, states, log.rows)
            barrier(info)
            self.epochs_done = epoch + 1  # every process: the checkpoint of this epoch is now written
        if log is not None:
            log.close()
        return val

    def finish(self, val: Predictions | None) -> dict[str, Any]:
        """Table-1 metrics of the final model on ``val`` (and ``test``), written to ``metrics.json``."""
        if val is None:  # resumed a finished run: nothing was trained
            val = self._predict(self.splits.val)
        results: dict[str, Any] = {"epochs": self.cfg.epochs, "val": _summary(val)}
        if self.splits.test is not None:
            results["test"] = _summary(self._predict(self.splits.test))
        if self.info.is_main:
            save_json(results, self.output_dir / "metrics.json")
        if self.info.is_main and not self.cfg.quiet:
            scores = ", ".join(f"{s} accuracy {results[s]['accuracy']:.4f}" for s in ("val", "test") if s in results)
            print(f"done: {scores}; metrics in {self.output_dir / 'metrics.json'}", flush=True)
        return results

    def _predict(self, dataset: Dataset) -> Predictions:
        broadcast_buffers(self.bare, self.info)
        loader = eval_loader(dataset, self.cfg.batch_size, self.cfg.workers, self.info)
        return predict(self.bare, loader, sample_cross_entropy, self.info, self.precision)

    def _announce(self) -> None:
        if not self.info.is_main or self.cfg.quiet:
            return
        s = self.splits
        sizes = f"{len(s.train)} train / {len(s.val)} val" + (f" / {len(s.test)} test" if s.test is not None else "")
        print(
            f"pretraining a {self.cfg.conv} {self.cfg.model} on {sizes} images of {len(s.classes)} classes; "
            f"{self.info.world_size} process(es) on {self.info.device}; epochs {self.start_epoch + 1}.."
            f"{self.cfg.epochs} -> {self.output_dir}",
            flush=True,
        )

    def _check_finite(self, epoch: int, stats: EpochStats) -> None:
        """Stop with :class:`NonFiniteLossError` before a NaN/Inf loss or weight can reach a checkpoint."""
        losses = {"training loss": stats.loss}
        if self.hybrid is not None and self.hybrid.count:
            losses["volume loss"] = self.hybrid.mean_loss()  # every process calls it (a collective)
        bad = [f"{name} {value}" for name, value in losses.items() if not math.isfinite(value)]
        if not bad and not all(bool(p.isfinite().all()) for p in self.bare.parameters()):
            bad = ["weights"]
        if bad:
            kept = (
                f"the last good checkpoint {self.output_dir / 'checkpoint.pt'} (epoch {self.epochs_done}) is kept"
                if self.epochs_done
                else "no checkpoint was written"
            )
            raise NonFiniteLossError(
                f"non-finite {', '.join(bad)} in epoch {epoch}; training stopped and {kept}; "
                "lower the learning rate or check the data"
            )

    def _save(self, epochs_done: int, rng_states: list[dict[str, Any]], rows: list[dict[str, str]]) -> None:
        state = {
            "model": self.bare.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "lr_scheduler": self.scheduler.state_dict(),
            "epoch": epochs_done,
            "args": asdict(self.cfg),
            "arch": asdict(self.spec),
            "preprocessing": self.cfg.preprocessing().to_dict(),
            "classes": self.splits.classes,
            "rng": rng_states,
            "log": rows,
            "inputs": self.inputs,
            "run_id": self.run_id,
        }
        if self.precision.scaler is not None:
            state["scaler"] = self.precision.scaler.state_dict()
        save_checkpoint(self.output_dir, state)
        self.epochs_done = epochs_done
        export_run_files(self.output_dir, state, self.spec)


def _check_resume_settings(
    cfg: PretrainConfig, checkpoint: dict[str, Any] | None, inputs: dict[str, dict[str, Any]]
) -> list[str]:
    """The settings ``cfg`` changes against the checkpoint's ``args``, and the inputs that hold other content than
    the checkpoint's fingerprints of them (paths are not compared where it has fingerprints: the same file under
    another spelling resumes); a one-line :class:`~crossd.errors.SettingsError` listing them unless
    ``cfg.allow_changed``."""
    if checkpoint is None or "args" not in checkpoint:
        return []
    recorded = checkpoint.get("inputs", {})
    by_content = [name for name in inputs if name in recorded]
    changes = cfg.resume_differences(checkpoint["args"], int(checkpoint["epoch"]), skip=by_content)
    changes += [
        changed_line(f"{name} {getattr(cfg, name)}", recorded[name], fp)
        for name, fp in inputs.items()
        if name in by_content and not same_content(recorded[name], fp)
    ]
    if changes and not cfg.allow_changed:
        raise SettingsError(
            f"{cfg.resume} was trained with other settings ({'; '.join(changes)}); repeat them, or pass "
            "allow_changed to continue with the new ones",
            field="resume",
            mentions=("allow_changed", *(change.split(" ", 1)[0] for change in changes)),
        )
    return changes


def _continue_with_new_settings(
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    checkpoint: dict[str, Any],
    cfg: PretrainConfig,
) -> None:
    """``--allow-changed``: ``optimizer`` (built from ``cfg``) keeps its new hyper-parameters and takes the saved
    per-parameter state (moments) when the optimiser kind is unchanged; ``scheduler`` (built from ``cfg``) is
    stepped to the checkpoint's epoch, so the learning rate is the new schedule's."""
    if checkpoint["args"].get("opt") == cfg.opt:
        state = optimizer.state_dict()
        state["state"] = checkpoint["optimizer"]["state"]
        optimizer.load_state_dict(state)
    with warnings.catch_warnings():  # stepping a scheduler before any optimizer.step() warns
        warnings.simplefilter("ignore")
        for _ in range(int(checkpoint["epoch"])):
            scheduler.step()


def _check_image_files(cfg: PretrainConfig, info: DistInfo, splits: ImageSplits, output_dir: Path) -> None:
    """Read every image of an image folder once before the first step (:mod:`crossd.data.image_check`): rank 0
    reads, every process raises its error."""
    on_main(info, lambda: _check_images_here(cfg, splits, output_dir))


def _check_images_here(cfg: PretrainConfig, splits: ImageSplits, output_dir: Path) -> None:
    files = [path for split in (splits.train, splits.val, splits.test) for path, _ in getattr(split, "samples", [])]
    if not files:
        return  # an .npz: checked when read
    mode = resolve_mode(cfg.check_images, len(files))
    if not cfg.quiet:
        what = {"full": "decoding every one", "header": "reading the header of every one", "none": "not checked"}
        print(f"images: {len(files)} files, {what[mode]} before training (image check: {mode})", flush=True)
    check_images(files, mode, cfg.workers, output_dir / CACHE_NAME, progress=not cfg.quiet)


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


def _log_row(epoch: int, lr: float, stats: EpochStats, val: Predictions) -> dict[str, float]:
    """One ``log.csv`` row (``val_acc5`` only with more than 5 classes)."""
    row = {
        "epoch": epoch,
        "lr": lr,
        "train_loss": stats.loss,
        "train_acc1": stats.acc1,
        "val_loss": val.loss,
        "val_acc1": val.acc1,
        "img/s": stats.images_per_second,
        "data_wait": stats.data_wait,
        "seconds": stats.seconds,
    }
    return row if val.acc5 is None else {**row, "val_acc5": val.acc5}


def _summary(predictions: Predictions) -> dict[str, float]:
    """Table-1 metrics plus loss and acc@1 (%), and acc@5 (%) with more than 5 classes."""
    metrics = classification_metrics(predictions.targets, predictions.topk[:, 0])
    top5 = {} if predictions.acc5 is None else {"acc5": predictions.acc5}
    return {**metrics, "loss": predictions.loss, "acc1": predictions.acc1, **top5}
