"""Classification under the evaluation protocols: the task that :func:`crossd.evaluate.kfold.run_kfold` runs for
``crossd evaluate`` (``evaluate(cfg)``).

A job trains a fresh copy of the method's network (its classifier replaced) on one fold under the protocol's
:class:`~crossd.evaluate.protocols.Schedule`, keeps the best validation epoch and scores the test part once.
Outputs in ``cfg.output_dir``: ``results.json`` (settings, data, per-method summaries, per-fold metrics and
per-epoch history, paired tests against ``crossd``), ``results.md`` (the table), ``fold_accuracy.png`` and the job
files (see :mod:`crossd.evaluate.kfold`).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from operator import itemgetter
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from crossd.data.volumes import SampleSet, load_samples
from crossd.errors import DataError, SettingsError
from crossd.evaluate.config import EvaluateConfig
from crossd.evaluate.folds import Split, official_splits, paper_splits, stratified_splits
from crossd.evaluate.kfold import Job, Task, fit_best, fold_loader, run_kfold
from crossd.evaluate.methods import Method, build_network, new_layers, replace_head
from crossd.evaluate.protocols import Schedule, recalibrate_batchnorm
from crossd.evaluate.transforms import SampleDataset, intensity_bounds, protocol_transforms
from crossd.metrics import classification_metrics
from crossd.report.plots import plot_fold_accuracies
from crossd.report.tables import results_markdown
from crossd.results import FoldResult, MethodSummary, Results
from crossd.train.distributed import DistInfo
from crossd.train.engine import (
    Precision,
    Predictions,
    check_finite,
    cross_entropy_step,
    predict,
    sample_cross_entropy,
    train_one_epoch,
)

FOLD_PLOT = "fold_accuracy.png"


def make_splits(
    cfg: EvaluateConfig,
    labels: np.ndarray,
    official_test: np.ndarray | None = None,
    classes: list[str] | None = None,
) -> list[Split]:
    """The run's folds: the authors' KFold seeds for ``paper``, stratified folds seeded by ``cfg.seed`` else. With
    ``cfg.split == "official"``, ``official_test`` (the data's own test indices) is every job's test set and the
    folds of the other samples give training and validation (:func:`crossd.evaluate.folds.official_splits`, with
    the same seeds: ``paper`` unstratified from ``split_seed_base + seed + 1``). A class with fewer samples than
    folds, named from ``classes``, is warned about when folds would be stratified (:func:`stratified_splits`)."""
    folds, repeats, c = cfg.resolved("folds"), cfg.resolved("repeats"), cfg.constants
    if len(labels) < folds:
        raise DataError(f"{folds} is too many for {len(labels)} samples", field="folds")
    if cfg.split == "official":
        if official_test is None or len(official_test) == 0:
            raise SettingsError(
                f"official needs a MedMNIST .npz with a test split (test_images, test_labels); {cfg.data} has none",
                field="split",
            )
        paper = cfg.protocol == "paper"
        seed = c.split_seed_base + cfg.seed + 1 if paper else cfg.seed
        splits = official_splits(labels, official_test, folds, repeats, seed, stratify=not paper, classes=classes)
    elif cfg.protocol == "paper":
        splits = paper_splits(len(labels), folds, repeats, c.split_seed_base + cfg.seed, c.val_fraction)
    else:
        splits = stratified_splits(labels, folds, repeats, cfg.seed, c.val_fraction, classes)
    if any(len(s.val) == 0 or len(s.train) == 0 for s in splits):
        raise DataError(f"{folds} is too many: {len(labels)} samples are too few for a validation split", field="folds")
    return splits


def fold_loaders(
    cfg: EvaluateConfig, samples: SampleSet, bounds: tuple, split: Split, seed: int
) -> dict[str, DataLoader]:
    """``train`` (augmented, shuffled by ``seed``), ``val``, ``test`` and ``calibration`` (the training samples
    without augmentation) loaders of one fold."""
    train_tf, eval_tf = protocol_transforms(cfg.protocol, cfg.constants, samples.spatial_dims, cfg.image_size, seed)
    batch = cfg.resolved("batch_size")

    def loader(indices: np.ndarray, transform, train: bool) -> DataLoader:
        dataset = SampleDataset(samples.images, samples.labels, bounds, indices, transform, cfg.normalize)
        return fold_loader(dataset, batch, train, seed, cfg.num_workers)

    return {
        "train": loader(split.train, train_tf, True),
        "val": loader(split.val, eval_tf, False),
        "test": loader(split.test, eval_tf, False),
        "calibration": loader(split.train, eval_tf, False),
    }


def _accuracy(predictions: Predictions) -> float:
    return float((predictions.topk[:, 0] == predictions.targets).mean())


class Classification(Task):
    """Every method on every fold of a labelled 2D or 3D dataset (see :class:`EvaluateConfig`)."""

    name, metric = "classification", "accuracy"
    cfg: EvaluateConfig

    def load(self) -> None:
        cfg = self.cfg
        self.samples = samples = load_samples(cfg.data, cfg.size, cfg.spatial_dims, cfg.num_classes, cfg.slice_axis)
        self.splits = make_splits(cfg, samples.labels, samples.split_indices.get("test"), samples.classes)
        self.bounds = intensity_bounds(samples.images, cfg.constants.scaling, cfg.window)
        self.data_record = {
            "path": str(cfg.data),
            "samples": len(samples.labels),
            "num_classes": samples.num_classes,
            "classes": samples.classes,
            "class_counts": np.bincount(samples.labels, minlength=samples.num_classes).tolist(),
            "spatial_dims": samples.spatial_dims,
            "shape": list(samples.images.shape[1:]),
        }
        if cfg.split == "official":
            self.data_record["test_samples"] = len(self.splits[0].test)  # the same test set in every job

    def build(self, method: Method) -> tuple[nn.Module, dict]:
        cfg = self.cfg
        model, loading = build_network(
            method, self.samples.spatial_dims, cfg.arch, cfg.align, cfg.drop_bn_stats, cfg.slice_pool
        )
        return model, {**loading, "spatial_dims": self.samples.spatial_dims}

    def run_job(self, job: Job, template: nn.Module, device: torch.device, on_epoch: Callable[[], None]) -> dict:
        cfg, split = self.cfg, job.split
        model = copy.deepcopy(template)
        trained = new_layers(model, replace_head(model, self.samples.num_classes))
        model.to(device)
        schedule = Schedule(cfg.protocol, model, trained, self.epochs, cfg.resolved("lr"), cfg.constants)
        loaders = fold_loaders(cfg, self.samples, self.bounds, split, job.seed)
        if cfg.recalibrate_bn:
            recalibrate_batchnorm(model, loaders["calibration"], device)
        info, precision, step = DistInfo(device=device), Precision(), cross_entropy_step()

        def train_epoch(epoch: int) -> dict[str, float]:
            schedule.begin_epoch(epoch)
            lr = schedule.lr
            header = f"{job.name} epoch {epoch}"
            stats = train_one_epoch(
                model, loaders["train"], step, None, schedule.optimizer, info, precision, header=header
            )  # in the protocol's training mode since begin_epoch
            schedule.end_epoch()
            val = predict(model, loaders["val"], sample_cross_entropy, info, precision)
            check_finite(val.loss, f"{header} validation")
            on_epoch()
            return {"train_loss": stats.loss, "val_loss": val.loss, "val_accuracy": _accuracy(val), "lr": lr}

        select = cfg.constants.select
        best_epoch, history = fit_best(
            model, self.epochs, train_epoch, (lambda r: -r["val_loss"]) if select == "val_loss" else itemgetter(select)
        )
        test = predict(model, loaders["test"], sample_cross_entropy, info, precision)
        return {
            **classification_metrics(test.targets, test.topk[:, 0]),
            "predicted_classes": len(np.unique(test.topk[:, 0])),
            "best_epoch": best_epoch,
            "n_train": len(split.train),
            "n_val": len(split.val),
            "n_test": len(split.test),
            "history": history,
        }

    def method_summary(self, method: Method, loading: dict, folds: list[dict]) -> MethodSummary:
        return MethodSummary(
            method.name, method.init, method.checkpoint, loading, [FoldResult.from_json(f) for f in folds]
        )

    def render(self, results: Results) -> str:
        return results_markdown(results)

    def plot(self, results: Results, out_dir: Path) -> None:
        plot_fold_accuracies(results, out_dir / FOLD_PLOT)


def evaluate(cfg: EvaluateConfig, shard: tuple[int, int] | None = None) -> Results:
    """Run every method of ``cfg`` on every fold under ``cfg.protocol`` (this process's share of the jobs under
    ``torchrun`` or with ``shard=(K, N)``) and write the results (see :func:`crossd.evaluate.kfold.run_kfold`).

    Returns the :class:`~crossd.results.Results` that ``results.json`` holds: one
    :class:`~crossd.results.MethodSummary` per method, its folds as
    :class:`~crossd.results.FoldResult` (history: ``train_loss``, ``val_loss``, ``val_accuracy``, ``lr``),
    and each method's :class:`~crossd.results.Comparison` with the reference.
    """
    return run_kfold(Classification(cfg), shard)
