"""Folds: the authors' KFold seeds for protocol paper, reproducible stratified folds otherwise, and a MedMNIST
file's official test split kept (``split="official"``)."""

import numpy as np
import pytest
from sklearn.model_selection import KFold

from crossd.data.volumes import load_samples
from crossd.errors import SettingsError
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


def _medmnist_npz(path):
    rng = np.random.default_rng(0)
    sizes = {"train": 30, "val": 6, "test": 9}
    arrays = {}
    for split, n in sizes.items():
        arrays[f"{split}_images"] = rng.integers(0, 255, (n, 8, 8, 8), np.uint8)
        arrays[f"{split}_labels"] = (np.arange(n) % 3)[:, None]
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize("protocol", ["bn", "paper"])
def test_official_split_tests_every_job_on_the_files_test_split(tmp_path, protocol):
    path = _medmnist_npz(tmp_path / "m.npz")
    samples = load_samples(path)
    np.testing.assert_array_equal(samples.split_indices["test"], np.arange(36, 45))  # pooled train, val, test
    cfg = EvaluateConfig(path, [("random", None)], "unused", protocol=protocol, split="official", folds=3, repeats=2)
    splits = make_splits(cfg, samples.labels, samples.split_indices["test"])
    assert len(splits) == 6
    for repeat in (0, 1):
        vals = np.concatenate([s.val for s in splits if s.repeat == repeat])
        assert sorted(vals) == list(range(36))  # train + val cut into folds: each held out once as validation
    for s in splits:
        np.testing.assert_array_equal(s.test, np.arange(36, 45))
        assert sorted(np.concatenate([s.train, s.val])) == list(range(36))
        if protocol == "bn":
            assert np.bincount(samples.labels[s.val]).tolist() == [4, 4, 4]  # stratified
    assert not np.array_equal(splits[0].val, splits[3].val)  # repeats differ


def test_official_split_needs_a_test_split(tmp_path):
    np.savez(tmp_path / "p.npz", images=np.zeros((12, 8, 8, 8)), labels=np.arange(12) % 2)
    samples = load_samples(tmp_path / "p.npz")
    assert samples.split_indices == {}
    cfg = EvaluateConfig(tmp_path / "p.npz", [("random", None)], "unused", split="official", folds=2)
    with pytest.raises(SettingsError, match=r"^split official needs a MedMNIST .npz with a test split"):
        make_splits(cfg, samples.labels, samples.split_indices.get("test"))
    with pytest.raises(SettingsError, match="split must be one of"):
        EvaluateConfig("x.npz", [("random", None)], "unused", split="test").validate()
