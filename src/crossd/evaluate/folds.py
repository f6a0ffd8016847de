"""Cross-validation splits: outer folds x repeats, each training fold split again into train and validation.

Splits depend only on the labels, the protocol, the fold/repeat counts and the seed, so separate runs with the
same seed get the same folds, and all methods of one run share them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import KFold, StratifiedKFold, train_test_split


@dataclass
class Split:
    """Sample indices of one (repeat, fold): train, validation (best epoch) and test (scored once)."""

    repeat: int
    fold: int
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray


def paper_splits(n: int, folds: int, repeats: int, seed_base: int, val_fraction: float) -> list[Split]:
    """The authors' splits: ``KFold(folds, shuffle=True, random_state=seed_base + t)`` for ``t = 1..repeats``;
    the first ``val_fraction`` of each training fold (in KFold's order) is validation."""
    splits = []
    for repeat in range(repeats):
        kfold = KFold(folds, shuffle=True, random_state=seed_base + repeat + 1)
        for fold, (train, test) in enumerate(kfold.split(np.arange(n))):
            n_val = int(len(train) * val_fraction)
            splits.append(Split(repeat, fold, train[n_val:], train[:n_val], test))
    return splits


def _outer_folds(labels: np.ndarray, folds: int, state: int, stratify: bool = True) -> KFold | StratifiedKFold:
    """``StratifiedKFold(folds, shuffle=True, random_state=state)``, or plain ``KFold`` when ``stratify`` is
    false or a class has fewer than ``folds`` samples."""
    counts = np.bincount(labels)
    if stratify and counts[counts > 0].min() >= folds:
        return StratifiedKFold(folds, shuffle=True, random_state=state)
    return KFold(folds, shuffle=True, random_state=state)


def stratified_splits(labels: np.ndarray, folds: int, repeats: int, seed: int, val_fraction: float) -> list[Split]:
    """``StratifiedKFold(folds, shuffle=True, random_state=seed + r)`` per repeat ``r`` (plain ``KFold`` when a
    class has fewer than ``folds`` samples), and a stratified inner validation split with the same seed."""
    labels = np.asarray(labels)
    splits = []
    for repeat in range(repeats):
        state = seed + repeat
        outer = _outer_folds(labels, folds, state)
        for fold, (train, test) in enumerate(outer.split(np.zeros(len(labels)), labels)):
            try:
                train_part, val_part = train_test_split(
                    train, test_size=val_fraction, random_state=state, stratify=labels[train]
                )
            except ValueError:  # a class too small to appear in both parts
                train_part, val_part = train_test_split(train, test_size=val_fraction, random_state=state)
            splits.append(Split(repeat, fold, np.sort(train_part), np.sort(val_part), test))
    return splits


def official_splits(
    labels: np.ndarray, test: np.ndarray, folds: int, repeats: int, seed: int, stratify: bool
) -> list[Split]:
    """A dataset's own test split kept: ``test`` (sample indices) is the test set of every (repeat, fold); the
    other samples are cut into ``folds`` folds per repeat ``r`` (``random_state=seed + r``; stratified when
    ``stratify`` and every class has ``folds`` samples), the held-out fold is validation and the rest trains."""
    labels, test = np.asarray(labels), np.sort(np.asarray(test))
    pool = np.setdiff1d(np.arange(len(labels)), test)
    splits = []
    for repeat in range(repeats):
        outer = _outer_folds(labels[pool], folds, seed + repeat, stratify)
        for fold, (train, val) in enumerate(outer.split(np.zeros(len(pool)), labels[pool])):
            splits.append(Split(repeat, fold, pool[train], pool[val], test))
    return splits
