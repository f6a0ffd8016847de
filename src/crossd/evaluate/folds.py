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


def stratified_splits(
    labels: np.ndarray, folds: int, repeats: int, seed: int, val_fraction: float, classes: list[str] | None = None
) -> list[Split]:
    """``StratifiedKFold(folds, shuffle=True, random_state=seed + r)`` per repeat ``r``, and a stratified inner
    validation split with the same seed.

    A class with fewer samples than ``folds`` cannot be in every test fold: the folds are then plain ``KFold``
    ones (not stratified), and a :class:`UserWarning` names the class (``classes``: the names of labels
    ``0..C-1``) and its count; the command line prints it as one ``warning:`` line. Lower ``folds`` to keep
    stratified folds."""
    labels = np.asarray(labels)
    counts = np.bincount(labels)
    stratify = counts[counts > 0].min() >= folds
    if not stratify:
        small = int(np.flatnonzero((counts > 0) & (counts < folds))[0])
        name = classes[small] if classes is not None and small < len(classes) else str(small)
        warnings.warn(
            f"class {name!r} has {counts[small]} sample(s), fewer than the {folds} folds: the folds are not "
            f"stratified and some test folds lack that class; lower the number of folds to stratify them",
            UserWarning,
            stacklevel=2,
        )
    splits = []
    for repeat in range(repeats):
        state = seed + repeat
        outer = (
            StratifiedKFold(folds, shuffle=True, random_state=state)
            if stratify
            else KFold(folds, shuffle=True, random_state=state)
        )
        for fold, (train, test) in enumerate(outer.split(np.zeros(len(labels)), labels)):
            try:
                train_part, val_part = train_test_split(
                    train, test_size=val_fraction, random_state=state, stratify=labels[train]
                )
            except ValueError:  # a class too small to appear in both parts
                train_part, val_part = train_test_split(train, test_size=val_fraction, random_state=state)
            splits.append(Split(repeat, fold, np.sort(train_part), np.sort(val_part), test))
    return splits
