"""Folds: the authors' KFold seeds for protocol paper, reproducible stratified folds otherwise."""

import numpy as np
from sklearn.model_selection import KFold

from crossd.evaluate import EvaluateConfig, make_splits


def _config(protocol, **kw):
    return EvaluateConfig("unused.npz", [("random", None)], "unused", protocol=protocol, **kw)


def test_paper_folds_are_kfold_with_seeds_43_to_45_and_first_fifth_validation():
    labels = np.arange(50) % 3
    splits = make_splits(_config("paper"), labels)
    assert len(splits) == 15
    expected = [
        (t - 1, f, train, test)
        for t in (1, 2, 3)
        for f, (train, test) in enumerate(KFold(5, shuffle=True, random_state=42 + t).split(labels))
    ]
    for split, (repeat, fold, train, test) in zip(splits, expected, strict=True):
        assert (split.repeat, split.fold) == (repeat, fold)
        np.testing.assert_array_equal(split.test, test)
        np.testing.assert_array_equal(split.val, train[:8])  # int(40 * 0.2)
        np.testing.assert_array_equal(split.train, train[8:])


def test_stratified_folds_partition_the_data_and_repeat_with_the_seed():
    labels = np.arange(60) % 3
    first = make_splits(_config("bn", folds=5, repeats=2, seed=7), labels)
    again = make_splits(_config("bn", folds=5, repeats=2, seed=7), labels)
    other = make_splits(_config("bn", folds=5, repeats=2, seed=8), labels)
    assert len(first) == 10
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a.test, b.test)
        np.testing.assert_array_equal(a.val, b.val)
    assert any(not np.array_equal(a.test, b.test) for a, b in zip(first, other, strict=True))
    for repeat in (0, 1):
        tests = np.concatenate([s.test for s in first if s.repeat == repeat])
        assert sorted(tests) == list(range(60))  # every sample tested once per repeat
    for s in first:
        assert len(set(s.train) | set(s.val) | set(s.test)) == 60
        assert not set(s.train) & set(s.val) and not set(s.train) & set(s.test) and not set(s.val) & set(s.test)
        assert np.bincount(labels[s.test]).tolist() == [4, 4, 4]  # stratified
