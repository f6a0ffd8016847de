"""The demo's MRI-derived sets: labels, patch geometry, augmentation, MedMNIST files and caching."""

import json

import numpy as np
import pytest

from crossd.data import load_npz
from crossd.demo.data import (
    CLASSES,
    DemoDataConfig,
    augment,
    build_arrays,
    build_demo_data,
    extract_patches,
    load_volumes,
    sample_centres,
)

SMALL = DemoDataConfig(size_2d=12, size_3d=8, samples_2d=40, samples_3d=20, samples_3d_pretrain=12, seed=3)


def test_volume_labels_cover_the_four_tissues():
    volumes = load_volumes(2, 3)
    assert volumes.t1.shape == volumes.labels.shape == (99, 117, 95)
    counts = np.bincount(volumes.labels[volumes.labels >= 0].ravel(), minlength=4)
    assert (counts > 1000).all(), counts
    # the tissues order by T1 intensity: csf < grey < white
    means = [volumes.t1[volumes.labels == c].mean() for c in (1, 2, 3)]
    assert means[0] < means[1] < means[2]
    assert volumes.labels[0, 0, 0] == -1  # far from the brain: unlabelled


def test_extract_patches_cuts_slices_and_cubes_around_the_centre():
    volume = np.arange(10 * 11 * 12, dtype=np.float32).reshape(10, 11, 12)
    centres = np.array([[5, 5, 6], [5, 5, 6], [5, 5, 6], [0, 0, 0]])
    slices = extract_patches(volume, centres, 4, np.array([0, 1, 2, 0]))
    assert slices.shape == (4, 4, 4)
    np.testing.assert_array_equal(slices[0], volume[5, 3:7, 4:8])
    np.testing.assert_array_equal(slices[1], volume[3:7, 5, 4:8])
    np.testing.assert_array_equal(slices[2], volume[3:7, 3:7, 6])
    assert slices[3, 2, 2] == volume[0, 0, 0] and slices[3, 0, 0] == 0  # zero padding at the border
    cubes = extract_patches(volume, centres[:1], 5, None)
    np.testing.assert_array_equal(cubes[0], volume[3:8, 3:8, 4:9])


def test_sample_centres_are_balanced_and_from_one_hemisphere():
    labels = np.zeros((20, 6, 6), dtype=np.int8)
    labels[:, :, 1], labels[:, :, 2], labels[:, :, 3] = 1, 2, 3
    labels[:, :, 4:] = -1
    centres, targets = sample_centres(labels, 22, "right", np.random.default_rng(0))
    assert (centres[:, 0] >= 10).all()
    np.testing.assert_array_equal(labels[tuple(centres.T)], targets)
    assert np.bincount(targets).tolist() == [6, 6, 5, 5]
    assert len({tuple(c) for c in centres}) == 22
    with pytest.raises(ValueError, match="only"):
        sample_centres(labels, 1000, "left", np.random.default_rng(0))


def test_augment_changes_intensities_reproducibly():
    patches = np.full((64, 8, 8), 0.5)
    out = augment(patches, 0.08, np.random.default_rng(1))
    assert out.dtype == np.uint8 and out.shape == patches.shape
    np.testing.assert_array_equal(out, augment(patches, 0.08, np.random.default_rng(1)))
    means = out.reshape(64, -1).mean(1)
    assert means.std() > 10  # per-patch contrast/brightness differ
    assert out.reshape(64, -1).std(1).mean() > 3  # noise and bias field inside each patch


def test_build_arrays_is_deterministic():
    first, _ = build_arrays(SMALL)
    second, _ = build_arrays(SMALL)
    for key in first:
        np.testing.assert_array_equal(first[key], second[key])


def test_build_demo_data_writes_medmnist_files_and_reuses_them(tmp_path):
    data = build_demo_data(tmp_path, SMALL)
    pretrain, downstream = load_npz(data.pretrain_path), load_npz(data.downstream_path)
    assert set(pretrain.splits) == set(downstream.splits) == {"train", "val", "test"}
    assert (pretrain.spatial_dims, pretrain.channels, pretrain.num_classes) == (2, 1, len(CLASSES))
    assert (downstream.spatial_dims, downstream.channels, downstream.num_classes) == (3, 1, len(CLASSES))
    assert pretrain.splits["train"].images.shape[1:] == (12, 12)
    assert downstream.splits["train"].images.shape[1:] == (8, 8, 8)
    assert [len(pretrain.splits[s].labels) for s in ("train", "val", "test")] == [28, 4, 8]
    assert np.bincount(pretrain.pooled().labels).tolist() == [10] * 4
    with np.load(data.pretrain_path) as raw:
        assert raw["train_images"].dtype == np.uint8 and raw["train_labels"].shape == (28, 1)
    volumes = load_npz(data.volumes_path)
    assert (volumes.spatial_dims, volumes.num_classes, len(volumes.pooled().labels)) == (3, len(CLASSES), 12)
    assert not np.array_equal(volumes.splits["train"].images[:2], downstream.splits["train"].images[:2])
    described = json.loads((tmp_path / "mni152_tissue.json").read_text())
    assert described["config"]["samples_2d"] == 40 and described == data.description
    assert described["volumes"]["hemisphere"] == "left" and described["downstream"]["hemisphere"] == "right"

    stamp = data.pretrain_path.stat().st_mtime_ns
    assert build_demo_data(tmp_path, SMALL).pretrain_path.stat().st_mtime_ns == stamp
    rebuilt = build_demo_data(tmp_path, DemoDataConfig(**{**SMALL.__dict__, "seed": 4}))
    assert rebuilt.description["config"]["seed"] == 4
    assert not np.array_equal(load_npz(rebuilt.pretrain_path).splits["train"].images, pretrain.splits["train"].images)
