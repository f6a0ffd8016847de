"""The 2D downstream tasks built from images shipped in installed packages (crossd.demo.tasks_2d)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.datasets import load_digits

from crossd.data.npz import load_npz
from crossd.demo.tasks_2d import PLANES, build_task_2d
from crossd.errors import DataError, SettingsError


def _all(path) -> tuple[np.ndarray, np.ndarray]:
    arrays = np.load(path)
    images = np.concatenate([arrays[f"{s}_images"] for s in ("train", "val", "test")])
    return images, np.concatenate([arrays[f"{s}_labels"][:, 0] for s in ("train", "val", "test")])


def test_digits_are_scikit_learns_scans_resized_with_their_labels(tmp_path):
    path = build_task_2d("digits", tmp_path, size=32, samples=200)
    images, labels = _all(path)
    assert images.shape == (200, 32, 32) and images.dtype == np.uint8
    assert np.bincount(labels).tolist() == [20] * 10
    assert load_npz(path).num_classes == 10
    shipped = load_digits()
    reference = shipped.images.reshape(len(shipped.images), -1)
    reference = (reference - reference.mean(1, keepdims=True)) / reference.std(1, keepdims=True)
    for image, label in zip(images[:20], labels[:20], strict=True):
        pooled = image.reshape(8, 4, 8, 4).mean((1, 3)).ravel()  # back to 8 x 8 by 4 x 4 means
        pooled = (pooled - pooled.mean()) / pooled.std()
        assert shipped.target[np.argmax(reference @ pooled)] == label  # its nearest scan is a digit of its label


def test_mni_planes_are_balanced_slices_of_the_right_hemisphere(tmp_path):
    path = build_task_2d("mni_planes", tmp_path, size=24, samples=90)
    images, labels = _all(path)
    assert images.shape == (90, 24, 24) and np.bincount(labels).tolist() == [30, 30, 30]
    assert images.std() > 20  # brain tissue, not empty padding
    description = json.loads(path.with_suffix(".json").read_text())
    assert description["classes"] == list(PLANES) and sum(description["class_counts"]["test"]) == 18


def test_a_task_is_deterministic_reused_and_rebuilt_when_its_arguments_change(tmp_path):
    first = build_task_2d("digits", tmp_path / "a", samples=50, seed=3).read_bytes()
    path = build_task_2d("digits", tmp_path / "b", samples=50, seed=3)
    assert path.read_bytes() == first
    written = path.stat().st_mtime_ns
    assert build_task_2d("digits", tmp_path / "b", samples=50, seed=3).stat().st_mtime_ns == written
    assert build_task_2d("digits", tmp_path / "b", samples=50, seed=4).read_bytes() != first


@pytest.mark.parametrize(
    ("name", "samples", "error", "message"),
    [
        ("digit", 10, SettingsError, "'digit' is not a 2D task; expected one of digits, mni_planes"),
        ("digits", 0, SettingsError, "samples must be a positive integer, got 0"),
        ("digits", 5000, DataError, "ask for fewer samples"),
    ],
)
def test_a_bad_task_request_is_one_clear_error(tmp_path, name, samples, error, message):
    with pytest.raises(error, match=message):
        build_task_2d(name, tmp_path, samples=samples)
    assert not list(tmp_path.iterdir())  # nothing half-written
