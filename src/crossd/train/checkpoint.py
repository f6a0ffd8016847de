"""Pretraining checkpoints: write them atomically, read them back safely, and carry the RNG state for exact resume.

``checkpoint.pt`` is a dict of tensors and plain containers (it loads with ``torch.load(weights_only=True)``):
``model``, ``optimizer``, ``lr_scheduler``, ``scaler`` (fp16 AMP only), ``epoch`` (epochs completed), ``args``
(the :class:`~crossd.train.PretrainConfig` as a dict), ``arch`` (the :class:`~crossd.models.ModelSpec` as a dict,
so :func:`crossd.models.load_2d_model` rebuilds the model), ``preprocessing`` (the
:class:`~crossd.data.preprocessing.Preprocessing` of its inputs as a dict; absent from checkpoints of older
versions), ``classes``, ``rng`` (one RNG state per process) and
``log`` (the ``log.csv`` rows of every epoch done).

It is the single source of truth of a run: ``model.safetensors`` and ``log.csv`` are derived from it
(:func:`export_run_files`) right after it is written, and again when a run resumes from it, so a kill between
two writes never leaves them describing another epoch.
"""

from __future__ import annotations

import csv
import random
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from crossd.convert.published import torch_load
from crossd.data.preprocessing import Preprocessing
from crossd.errors import CheckpointError
from crossd.io import save_safetensors, save_torch
from crossd.models import ModelSpec
from crossd.train.engine import NonFiniteLossError
from crossd.train.progress import write_log_csv

REQUIRED_KEYS = ("model", "optimizer", "lr_scheduler", "epoch", "arch", "rng")


def rng_state(device: torch.device) -> dict[str, Any]:
    """This process's torch (and CUDA), numpy and python RNG states, as ``weights_only``-loadable values."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)),
        "python": random.getstate(),
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    """Restore a state from :func:`rng_state`."""
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def save_checkpoint(output_dir: Path, checkpoint: dict[str, Any]) -> None:
    """Write ``checkpoint.pt`` atomically; then call :func:`export_run_files` for the files derived from it.

    Raises :class:`~crossd.train.engine.NonFiniteLossError` (and writes nothing) when a weight holds NaN/Inf: a
    non-finite model never replaces the last good checkpoint.
    """
    bad = [k for k, v in checkpoint["model"].items() if v.is_floating_point() and not bool(v.isfinite().all())]
    if bad:
        raise NonFiniteLossError(
            f"{len(bad)} tensor(s) of the model hold NaN/Inf (first: {bad[0]}); checkpoint not written"
        )
    save_torch(checkpoint, output_dir / "checkpoint.pt")


def export_run_files(output_dir: Path, checkpoint: dict[str, Any], spec: ModelSpec) -> None:
    """``model.safetensors`` (the checkpoint's weights; ``spec`` and its ``preprocessing``, when recorded, as
    metadata) and ``log.csv`` (its ``log`` rows), both rewritten atomically from ``checkpoint``."""
    metadata = spec.metadata()
    if "preprocessing" in checkpoint:
        metadata.update(Preprocessing.from_dict(checkpoint["preprocessing"]).metadata())
    save_safetensors(checkpoint["model"], output_dir / "model.safetensors", metadata=metadata)
    write_log_csv(checkpoint.get("log", []), output_dir / "log.csv")


def load_training_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a ``checkpoint.pt`` written by :func:`crossd.train.pretrain` (``weights_only=True``).

    Raises a one-line :class:`~crossd.errors.CheckpointError` for a missing, corrupt or foreign file.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    checkpoint = torch_load(path, "corrupt or unreadable checkpoint")
    if not isinstance(checkpoint, dict) or any(k not in checkpoint for k in REQUIRED_KEYS):
        found = sorted(checkpoint) if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise CheckpointError(
            f"{path}: not a crossd pretrain checkpoint (expected keys {REQUIRED_KEYS}, found {found})"
        )
    return checkpoint


def saved_epoch(path: Path) -> int | None:
    """The ``epoch`` of the checkpoint at ``path`` (memory-mapped, so cheap for large files); ``None`` when there
    is no readable checkpoint."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return int(torch.load(path, map_location="cpu", weights_only=True, mmap=True)["epoch"])
    except Exception:  # missing, truncated or foreign: nothing to resume from
        return None


def log_rows(checkpoint: dict[str, Any], output_dir: Path) -> list[dict[str, str]]:
    """The ``log.csv`` rows of the epochs ``checkpoint`` has done: its ``log``, or for a checkpoint written before
    logs were kept in it, the rows of ``output_dir/log.csv`` up to its epoch."""
    if "log" in checkpoint:
        return list(checkpoint["log"])
    path, epochs = output_dir / "log.csv", int(checkpoint["epoch"])
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return [r for r in csv.DictReader(f) if r.get("epoch", "").isdigit() and int(r["epoch"]) <= epochs]


def check_same_model(checkpoint: dict[str, Any], spec: ModelSpec, path: str | Path) -> None:
    """Raise a one-line :class:`~crossd.errors.CheckpointError` when ``checkpoint`` was written for another model
    than ``spec``."""
    saved = checkpoint["arch"]
    if saved != asdict(spec):
        raise CheckpointError(
            f"{path}: checkpoint is a {_describe(saved)} but this run builds a {_describe(asdict(spec))}; "
            "resume with the same model, conv, mode and data"
        )


def _describe(arch: dict[str, Any]) -> str:
    mode = f" ({arch.get('mode')})" if arch.get("conv") == "crossd" else ""
    return f"{arch.get('conv')} {arch.get('arch')}{mode} with {arch.get('num_classes')} classes"
