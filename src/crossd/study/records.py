"""What a study keeps of its pretraining runs: each run's 2D test accuracy (``metrics.json``), its wall time
(``wall_time.json``) and the off-centre / centre energy of its 3x3x3 Cross-D kernels (``kernel_energy.json``,
computed once from the checkpoints, so that an archive without checkpoints still has it).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from safetensors.torch import load_file

from crossd.convert.kernels import shift_align
from crossd.io import save_json
from crossd.study.config import StudyConfig
from crossd.train import PretrainConfig

CLASSIFIER_METRICS = ("precision_macro", "recall_macro", "f1_macro", "balanced_accuracy", "accuracy")
"""The seed paper's Table 1 metrics of a 2D classifier, as ``metrics.json`` names them (fractions)."""


@dataclass(frozen=True)
class PretrainRecord:
    """One arm's pretraining over the seeds that finished it: mean 2D test accuracy (percent; ``None`` without a
    2D test set), mean off/centre kernel energy (``None`` for regular networks), median wall time in seconds
    (robust to a run slowed by other processes; ``None`` when no run recorded it), how many of the timed runs
    were resumed (timed after resuming only) and, per seed, the network's :data:`CLASSIFIER_METRICS` on the
    pretraining task's held-out test images (fractions)."""

    accuracy: float | None
    energy: float | None
    seconds: float | None
    resumed: int = 0
    scores: dict[int, dict[str, float]] = field(default_factory=dict)


def energy_ratio(path: Path, shift: bool) -> float:
    """Energy of the off-centre depth slices over that of the centre slice, summed over the 3x3x3 kernels of one
    Cross-D checkpoint, in the plane used at angle 0 (``roll(W, (1, 1, 1))`` when ``shift``). Summed in float64, so
    that the value does not depend on torch's thread count (float32 sums did, in the 7th digit)."""
    centre = off = 0.0
    for key, w in load_file(str(path)).items():
        if w.dim() != 5 or w.shape[-1] != 3 or "rotation_head" in key:
            continue
        w = (shift_align(w) if shift else w).double()
        centre += float(w[:, :, 1].square().sum())
        off += float(w[:, :, [0, 2]].square().sum())
    return off / centre


def _mode(config: StudyConfig, name: str) -> str:
    arm = config.arm(config.arm(name).run_name)
    return {**config.pretrain, **arm.pretrain}.get("mode", PretrainConfig.mode)


def seed_kernel_energy(config: StudyConfig, seed_dir: Path) -> dict[str, float]:
    """Per Cross-D arm (not aligned) with a checkpoint in ``seed_dir/checkpoints``: its :func:`energy_ratio`.

    Kept in ``seed_dir/kernel_energy.json``: a checkpoint is read only when that file lacks it or is older than it,
    and an archive without checkpoints reads the file alone."""
    cache = seed_dir / "kernel_energy.json"
    ratios = json.loads(cache.read_text()) if cache.is_file() else {}
    written = cache.stat().st_mtime if cache.is_file() else float("-inf")
    wanted = [a.name for a in config.arms if a.init == "crossd" and not a.align]
    stale = [
        path
        for path in (seed_dir / "checkpoints" / f"{n}.safetensors" for n in wanted)
        if path.is_file() and (path.stem not in ratios or path.stat().st_mtime > written)
    ]
    for path in stale:
        ratios[path.stem] = energy_ratio(path, _mode(config, path.stem) == "shift")
    if stale:
        save_json(dict(sorted(ratios.items())), cache)
    return {n: ratios[n] for n in wanted if n in ratios}


def _read(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def pretrain_records(config: StudyConfig, output_dir: Path, seeds: list[int]) -> dict[str, PretrainRecord]:
    """Per arm with any record over ``seeds`` (a reused run listed once, by its own name; energies per checkpoint
    copy): its :class:`PretrainRecord`, in arm order."""
    accuracy: dict[str, list[float]] = {}
    scores: dict[str, dict[int, dict[str, float]]] = {}
    seconds: dict[str, list[float]] = {}
    resumed: dict[str, int] = {}
    energy: dict[str, list[float]] = {}
    for seed in seeds:
        seed_dir = output_dir / f"seed{seed}"
        for arm in (a for a in config.arms if a.source is None):
            test = (_read(seed_dir / arm.name / "metrics.json") or {}).get("test")
            if test:
                accuracy.setdefault(arm.name, []).append(100 * test["accuracy"])
                scores.setdefault(arm.name, {})[seed] = {m: test[m] for m in CLASSIFIER_METRICS if m in test}
            wall = _read(seed_dir / arm.name / "wall_time.json")
            if wall:
                seconds.setdefault(arm.name, []).append(wall["seconds"])
                resumed[arm.name] = resumed.get(arm.name, 0) + bool(wall.get("resumed"))
        for name, ratio in seed_kernel_energy(config, seed_dir).items():
            energy.setdefault(name, []).append(ratio)

    def mean(values: dict[str, list[float]], name: str) -> float | None:
        return float(np.mean(values[name])) if name in values else None

    def median(values: dict[str, list[float]], name: str) -> float | None:
        return float(np.median(values[name])) if name in values else None

    names = [a.name for a in config.arms if {a.name} & (accuracy.keys() | seconds.keys() | energy.keys())]
    return {
        n: PretrainRecord(mean(accuracy, n), mean(energy, n), median(seconds, n), resumed.get(n, 0), scores.get(n, {}))
        for n in names
    }
