"""``evaluate(cfg)``: every method on every shared fold, results written after each fold so nothing finished is lost.

Outputs in ``cfg.output_dir``: ``results.json`` (settings, data, per-method summaries, per-fold metrics and
per-epoch history, paired tests against ``crossd``), ``results.md`` (the table) and ``fold_accuracy.png``.
"""

from __future__ import annotations

import copy
import json
from dataclasses import fields
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from crossd.data.volumes import SampleSet, load_samples
from crossd.evaluate.config import EvaluateConfig
from crossd.evaluate.folds import Split, paper_splits, stratified_splits
from crossd.evaluate.methods import Method, build_network, method_names, replace_head
from crossd.evaluate.protocols import Schedule, recalibrate_batchnorm
from crossd.evaluate.stats import paired_wilcoxon, summarize
from crossd.evaluate.training import train_fold
from crossd.evaluate.transforms import SampleDataset, intensity_bounds, protocol_transforms
from crossd.io import save_json, save_text
from crossd.report.plots import plot_fold_accuracies
from crossd.report.tables import results_markdown

RESULTS_JSON, RESULTS_MD, FOLD_PLOT = "results.json", "results.md", "fold_accuracy.png"
# settings that change the numbers: a resumed run must agree on all of them
_RESUME_KEYS = (
    "data",
    "protocol",
    "folds",
    "repeats",
    "epochs",
    "batch_size",
    "lr",
    "normalize",
    "seed",
    "size",
    "image_size",
    "align",
    "arch",
    "drop_bn_stats",
    "recalibrate_bn",
    "protocol_constants",
)


def make_splits(cfg: EvaluateConfig, labels: np.ndarray) -> list[Split]:
    """The run's folds: the authors' KFold seeds for ``paper``, stratified folds seeded by ``cfg.seed`` else."""
    folds, repeats, c = cfg.resolved("folds"), cfg.resolved("repeats"), cfg.constants
    if len(labels) < folds:
        raise ValueError(f"{len(labels)} samples cannot make {folds} folds")
    if cfg.protocol == "paper":
        splits = paper_splits(len(labels), folds, repeats, c.split_seed_base + cfg.seed, c.val_fraction)
    else:
        splits = stratified_splits(labels, folds, repeats, cfg.seed, c.val_fraction)
    if any(len(s.val) == 0 or len(s.train) == 0 for s in splits):
        raise ValueError(f"{len(labels)} samples are too few for {folds} folds with a validation split")
    return splits


def _device(cfg: EvaluateConfig) -> torch.device:
    """``cfg.device``, or CUDA when available; a one-line error for a CUDA device that is not there."""
    try:
        device = torch.device(cfg.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    except RuntimeError as exc:
        raise ValueError(f"unknown device {cfg.device!r} ({exc})") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {cfg.device!r} asked for, but no CUDA device is available; use --device cpu")
    return device


def _fold_seed(cfg: EvaluateConfig, split: Split) -> int:
    """The same for every method on a fold, so heads start equal and batches come in the same order."""
    return cfg.seed * 100_003 + split.repeat * 1_000 + split.fold


def _loaders(cfg: EvaluateConfig, samples: SampleSet, bounds: tuple, split: Split, seed: int) -> dict:
    train_tf, eval_tf = protocol_transforms(
        cfg.protocol, cfg.constants, samples.spatial_dims, cfg.image_size, seed=seed
    )
    batch = cfg.resolved("batch_size")

    def loader(indices: np.ndarray, transform, train: bool) -> DataLoader:
        return DataLoader(
            SampleDataset(samples.images, samples.labels, bounds, indices, transform, cfg.normalize),
            batch_size=batch,
            shuffle=train,
            drop_last=train and len(indices) % batch == 1 and len(indices) > 1,  # BatchNorm needs 2 samples
            num_workers=cfg.num_workers,
            generator=torch.Generator().manual_seed(seed) if train else None,
        )

    return {
        "train": loader(split.train, train_tf, True),
        "val": loader(split.val, eval_tf, False),
        "test": loader(split.test, eval_tf, False),
        "calibration": loader(split.train, eval_tf, False),  # the training samples without augmentation
    }


def _data_record(cfg: EvaluateConfig, samples: SampleSet) -> dict:
    return {
        "path": str(cfg.data),
        "samples": len(samples.labels),
        "num_classes": samples.num_classes,
        "classes": samples.classes,
        "class_counts": np.bincount(samples.labels, minlength=samples.num_classes).tolist(),
        "spatial_dims": samples.spatial_dims,
        "shape": list(samples.images.shape[1:]),
    }


def _load_previous(cfg: EvaluateConfig, path: Path) -> dict | None:
    """Finished folds of an earlier run (``resume``), after checking it ran with the same settings."""
    if not path.is_file():
        return None
    try:
        previous = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc}); move it away to start afresh") from None
    if not cfg.resume:
        if any(m.get("folds") for m in previous.get("results", [])):
            raise ValueError(f"{path} already holds results; pass --resume to continue it or use another --output-dir")
        return None
    record = json.loads(json.dumps(cfg.record(), default=str))
    before = previous.get("args", {})
    defaults = {f.name: f.default for f in fields(EvaluateConfig)}  # a setting added since that run: its default
    changed = [k for k in _RESUME_KEYS if before.get(k, defaults.get(k)) != record.get(k)]
    if changed:
        raise ValueError(f"{path}: cannot resume, settings differ in {', '.join(changed)}")
    return previous


def _summarise(results: dict) -> None:
    """Refresh per-method means/stds and the paired tests against ``crossd`` in place."""
    for method in results["results"]:
        method["folds"].sort(key=lambda f: (f["repeat"], f["fold"]))
        method.update(summarize(method["folds"]))
    reference = next((m for m in results["results"] if m["method"] == "crossd"), None)
    results["comparisons"] = (
        {}
        if reference is None
        else {
            m["method"]: paired_wilcoxon(reference["folds"], m["folds"])
            for m in results["results"]
            if m is not reference
        }
    )


def _save(results: dict, out_dir: Path) -> None:
    _summarise(results)
    save_json(results, out_dir / RESULTS_JSON)
    save_text(results_markdown(results), out_dir / RESULTS_MD)
    if any(m["folds"] for m in results["results"]):
        plot_fold_accuracies(results, out_dir / FOLD_PLOT)


def evaluate(cfg: EvaluateConfig) -> dict:
    """Run every method of ``cfg`` on every fold under ``cfg.protocol`` and write the results.

    Returns the ``results.json`` dictionary: ``{"args", "data", "results": [{"method", "init", "checkpoint",
    "loading", "accuracy_mean", "accuracy_std", ... , "folds": [{"repeat", "fold", "accuracy", "f1_macro",
    "balanced_accuracy", "precision_macro", "recall_macro", "best_epoch", "n_train", "n_val", "n_test",
    "history": {"train_loss", "val_loss", "val_accuracy", "lr"}}]}], "comparisons", "complete"}``.
    """
    cfg.validate()
    _device(cfg)
    out_dir = Path(cfg.output_dir)
    previous = _load_previous(cfg, out_dir / RESULTS_JSON)  # before any slow loading
    samples = load_samples(cfg.data, cfg.size)
    methods = method_names(cfg.methods)
    networks, loadings = {}, {}
    torch.manual_seed(cfg.seed)  # a random init draws from here: the same seed gives the same network
    for method in methods:  # build everything first: bad checkpoints fail before any training
        networks[method.name], loadings[method.name] = build_network(
            method, samples.spatial_dims, cfg.arch, cfg.align, cfg.drop_bn_stats
        )
        loadings[method.name]["spatial_dims"] = samples.spatial_dims
    splits = make_splits(cfg, samples.labels)
    # finished folds of the same method (label, init and checkpoint); methods added since run from scratch
    done = {(m["method"], m["init"], m["checkpoint"]): m["folds"] for m in previous["results"]} if previous else {}
    results = {
        "args": cfg.record(),
        "data": _data_record(cfg, samples),
        "results": [
            {
                "method": m.name,
                "init": m.init,
                "checkpoint": m.checkpoint,
                "loading": loadings[m.name],
                "folds": list(done.get((m.name, m.init, m.checkpoint), [])),
            }
            for m in methods
        ],
        "complete": False,
    }
    bounds = intensity_bounds(samples.images, cfg.constants.scaling)
    epochs = cfg.resolved("epochs")
    by_name = {r["method"]: r for r in results["results"]}
    bar = tqdm(total=len(splits) * len(methods) * epochs, disable=not cfg.progress, desc="evaluate", unit="epoch")
    try:
        for split in splits:
            for method in methods:
                record = by_name[method.name]
                if any((f["repeat"], f["fold"]) == (split.repeat, split.fold) for f in record["folds"]):
                    bar.update(epochs)
                    continue
                record["folds"].append(_run_fold(cfg, method, networks[method.name], samples, bounds, split, bar))
                _save(results, out_dir)
    finally:
        bar.close()
    results["complete"] = True
    _save(results, out_dir)
    return results


def _run_fold(
    cfg: EvaluateConfig,
    method: Method,
    template: torch.nn.Module,
    samples: SampleSet,
    bounds: tuple[np.ndarray, np.ndarray],
    split: Split,
    bar: tqdm,
) -> dict:
    """Train a fresh copy of ``template`` on one fold and return its fold record."""
    seed = _fold_seed(cfg, split)
    torch.manual_seed(seed)
    device = _device(cfg)
    model = copy.deepcopy(template)
    head = replace_head(model, samples.num_classes)
    model.to(device)
    epochs = cfg.resolved("epochs")
    schedule = Schedule(cfg.protocol, model, head, epochs, cfg.resolved("lr"), cfg.constants)
    loaders = _loaders(cfg, samples, bounds, split, seed)
    if cfg.recalibrate_bn:
        recalibrate_batchnorm(model, loaders["calibration"], device)

    def on_epoch(epoch: int, row: dict) -> None:
        bar.set_postfix(method=method.name, fold=f"{split.repeat}.{split.fold}", val_acc=f"{row['val_accuracy']:.3f}")
        bar.update(1)

    outcome = train_fold(model, schedule, loaders, epochs, cfg.constants.select, device, on_epoch)
    return {
        "repeat": split.repeat,
        "fold": split.fold,
        **outcome.metrics,
        "best_epoch": outcome.best_epoch,
        "n_train": len(split.train),
        "n_val": len(split.val),
        "n_test": len(split.test),
        "history": outcome.history,
    }
