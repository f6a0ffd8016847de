"""Pretraining datasets: image folders (grey -> 3 channels) and MedMNIST 2D npz, with clear errors."""

import numpy as np
import pytest
import torch
from image_data import write_image_folder, write_medmnist_npz
from PIL import Image

from crossd.data.images import ArrayImageDataset, detect_dataset_kind, load_image_splits, read_rgb
from crossd.errors import DataError

SIZES = {"train_crop_size": 12, "val_resize_size": 14, "val_crop_size": 12}


def test_image_folder_splits_give_three_channel_tensors(tmp_path):
    write_image_folder(tmp_path, classes=2, per_class=2)
    splits = load_image_splits(tmp_path, **SIZES)
    assert splits.classes == ["class0", "class1"]
    assert len(splits.train) == len(splits.val) == len(splits.test) == 4
    for dataset in (splits.train, splits.val, splits.test):
        shapes = {tuple(dataset[i][0].shape) for i in range(len(dataset))}  # grey and RGB files alike
        assert shapes == {(3, 12, 12)}
    grey_image, label = splits.val[0]
    assert label == 0 and torch.allclose(grey_image[0] * 0.229 + 0.485, grey_image[1] * 0.224 + 0.456, atol=1e-5)


def test_sixteen_bit_grey_images_are_scaled_not_clipped(tmp_path):
    values = np.arange(16 * 16, dtype=np.uint16).reshape(16, 16) * 16  # 0 .. 4080
    Image.fromarray(values).save(tmp_path / "deep.png")
    rgb = np.asarray(read_rgb(tmp_path / "deep.png"))
    assert rgb.shape == (16, 16, 3) and rgb.min() == 0 and rgb.max() == 255
    assert len(np.unique(rgb[..., 0])) > 200  # a saturating conversion would leave almost everything at 255


def test_image_folder_without_test_split(tmp_path):
    write_image_folder(tmp_path, classes=2, per_class=1, splits=("train", "val"))
    assert load_image_splits(tmp_path, **SIZES).test is None


@pytest.mark.parametrize(
    ("setup", "error", "match"),
    [
        (lambda root: None, DataError, "data path not found"),
        (lambda root: root.mkdir(), DataError, "image folder not found"),
        (lambda root: (root / "train").mkdir(parents=True), ValueError, "class folder"),
        (lambda root: write_image_folder(root, classes=1, per_class=1), ValueError, "at least 2"),
    ],
    ids=["missing", "empty", "no-classes", "one-class"],
)
def test_image_folder_errors(tmp_path, setup, error, match):
    root = tmp_path / "data"
    setup(root)
    with pytest.raises(error, match=match):
        load_image_splits(root, **SIZES)


def test_image_folder_val_classes_must_match_train(tmp_path):
    write_image_folder(tmp_path, classes=3, per_class=1, splits=("train",))
    write_image_folder(tmp_path, classes=2, per_class=1, splits=("val",))
    with pytest.raises(ValueError, match="differ"):
        load_image_splits(tmp_path, **SIZES)


def test_medmnist_npz_splits(tmp_path):
    path = write_medmnist_npz(tmp_path / "tiny.npz", classes=3, splits=("train", "val", "test"))
    assert detect_dataset_kind(path) == "medmnist"
    splits = load_image_splits(path, **SIZES)
    assert splits.classes == ["0", "1", "2"]
    image, label = splits.test[4]
    assert image.shape == (3, 12, 12) and label == 1


def test_float_arrays_are_min_max_scaled_to_uint8(tmp_path):
    images = np.linspace(-1, 3, 2 * 4 * 4, dtype=np.float32).reshape(2, 4, 4)
    np.savez(tmp_path / "f.npz", train_images=images, train_labels=[0, 1], val_images=images, val_labels=[1, 0])
    dataset = load_image_splits(tmp_path / "f.npz", train_crop_size=4, val_resize_size=4, val_crop_size=4).val
    assert isinstance(dataset, ArrayImageDataset)
    assert dataset.images.dtype == np.uint8 and dataset.images.min() == 0 and dataset.images.max() == 255


@pytest.mark.parametrize(
    ("arrays", "match"),
    [
        ({"x": np.zeros((2, 4, 4))}, "expected keys"),
        ({"images": np.zeros((4, 8, 8), np.uint8), "labels": np.arange(4) % 2}, "missing train, val"),
        ({"train_images": np.zeros((4, 8, 8), np.uint8), "train_labels": np.arange(4) % 2}, "missing val"),
        ({"train_images": np.zeros((2, 8, 8, 8), np.uint8), "train_labels": [0, 1]}, "3D volumes"),
    ],
    ids=["no-keys", "pooled", "no-val", "volumes"],
)
def test_npz_errors(tmp_path, arrays, match):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(ValueError, match=match):
        load_image_splits(tmp_path / "bad.npz", **SIZES)


def test_unknown_dataset_kind():
    with pytest.raises(ValueError, match="dataset must be one of"):
        detect_dataset_kind("x", "coco")


def test_a_window_clips_npz_images_before_8_bits_and_image_folders_refuse_one(tmp_path):
    from crossd.data.images import _as_uint8
    from crossd.errors import SettingsError
    from crossd.train import PretrainConfig

    hounsfield = np.array([[-3000, -1000, -300, 400, 3000]], dtype=np.int16)
    assert _as_uint8(hounsfield, (-1000, 400)).tolist() == [[0, 0, 128, 255, 255]]
    assert _as_uint8(hounsfield).tolist() == [[0, 85, 115, 144, 255]]  # min-max over the array without one
    (tmp_path / "folder").mkdir()
    with pytest.raises(SettingsError, match="window applies to .npz data and volumes"):
        PretrainConfig(data_path=str(tmp_path / "folder"), window=(-1000, 400)).validate()
