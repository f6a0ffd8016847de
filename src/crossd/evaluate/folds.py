"""Cross-validation splits: outer folds x repeats, each training fold split again into train and validation.

Splits depend only on the labels, the protocol, the fold/repeat counts and the seed, so separate runs with the
same seed get the same folds, and all methods of one run share them.
"""

from __future__ import annotations

import warnings
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


def _stratifiable(labels: np.ndarray, folds: int, classes: list[str] | None) -> bool:
    """Whether every class has ``folds`` samples. When not, a :class:`UserWarning` names the first smaller class
    (``classes``: the names of labels ``0..C-1``) and its count; the command line prints it as one ``warning:``
    line."""
    counts = np.bincount(labels)
    if counts[counts > 0].min() >= folds:
        return True
    small = int(np.flatnonzero((counts > 0) & (counts < folds))[0])
    name = classes[small] if classes is not None and small < len(classes) else str(small)
    warnings.warn(
        f"class {name!r} has {counts[small]} sample(s), fewer than the {folds} folds: the folds are not "
        f"stratified and some test folds lack that class; lower the number of folds to stratify them",
        UserWarning,
        stacklevel=3,
    )
    return False


def _outer_folds(folds: int, state: int, stratify: bool) -> KFold | StratifiedKFold:
    """``StratifiedKFold(folds, shuffle=True, random_state=state)``, or plain ``KFold`` when not ``stratify``."""
    if stratify:
        return StratifiedKFold(folds, shuffle=True, random_state=state)
    return KFold(folds, shuffle=True, random_state=state)


def stratified_splits(
    labels: np.ndarray, folds: int, repeats: int, seed: int, val_fraction: float, classes: list[str] | None = None
) -> list[Split]:
    """``StratifiedKFold(folds, shuffle=True, random_state=seed + r)`` per repeat ``r``, and a stratified inner
    validation split with the same seed.

    A class with fewer samples than ``folds`` cannot be in every test fold: the folds are then plain ``KFold``
    ones (not stratified), and a :class:`UserWarning` names the class (``classes``: the names of labels
    ``0..C-1``) and its count. Lower ``folds`` to keep stratified folds."""
    labels = np.asarray(labels)
    stratify = _stratifiable(labels, folds, classes)
    splits = []
    for repeat in range(repeats):
        state = seed + repeat
        outer = _outer_folds(folds, state, stratify)
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
    labels: np.ndarray,
    test: np.ndarray,
    folds: int,
    repeats: int,
    seed: int,
    stratify: bool,
    classes: list[str] | None = None,
) -> list[Split]:
    """A dataset's own test split kept: ``test`` (sample indices) is the test set of every (repeat, fold); the
    other samples are cut into ``folds`` folds per repeat ``r`` (``random_state=seed + r``; stratified when
    ``stratify`` and every class has ``folds`` samples, else warned about as in :func:`stratified_splits`), the
    held-out fold is validation and the rest trains."""
    labels, test = np.asarray(labels), np.sort(np.asarray(test))
    pool = np.setdiff1d(np.arange(len(labels)), test)
    stratify = stratify and _stratifiable(labels[pool], folds, classes)
    splits = []
    for repeat in range(repeats):
        outer = _outer_folds(folds, seed + repeat, stratify)
        for fold, (train, val) in enumerate(outer.split(np.zeros(len(pool)), labels[pool])):
            splits.append(Split(repeat, fold, pool[train], pool[val], test))
    return splits
