"""2D image datasets for pretraining: image folders (ImageNet/RadImageNet layout) and MedMNIST 2D ``.npz`` files.

- Image folder: ``root/train/<class>/*.png``, ``root/val/<class>/...`` and optionally ``root/test/<class>/...``;
  every image is read as 3-channel RGB (grey images are repeated to 3 channels, 16-bit ones scaled to 8 bits).
- MedMNIST ``.npz``: ``train_images``/``train_labels``, ``val_*`` and optionally ``test_*``, read once into memory
  (:func:`crossd.data.load_npz`); samples become PIL images so the same transforms serve both kinds.

Transforms follow torchvision's classification reference: random-resized crop + horizontal flip for training,
resize + centre crop for evaluation, ImageNet normalisation. Samples are ``(image (3, H, W) float32, label int)``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from torch.utils.data import Dataset
from torchvision import datasets, transforms

from crossd.data.checks import check_finite
from crossd.data.npz import ArraySplit, load_npz
from crossd.data.preprocessing import NORMALIZATION, scale_to_unit
from crossd.errors import DataError, SettingsError

DATASET_KINDS = ("imagefolder", "medmnist")
PRETRAIN_NORMALIZATION = "imagenet"
"""The normalisation of pretraining (recorded in its checkpoints: :class:`crossd.data.preprocessing.Preprocessing`)."""
IMAGENET_MEAN, IMAGENET_STD = NORMALIZATION[PRETRAIN_NORMALIZATION]


@dataclass
class ImageSplits:
    """The datasets of a pretraining run; ``test`` is ``None`` when the data has no test split."""

    train: Dataset
    val: Dataset
    test: Dataset | None
    classes: list[str]


def classification_transforms(
    train_crop_size: int = 224,
    val_resize_size: int = 256,
    val_crop_size: int = 224,
    train_crop_scale: tuple[float, float] = (0.08, 1.0),
) -> tuple[Callable, Callable]:
    """``(train, eval)`` transforms from PIL images to normalised tensors ``(3, crop, crop)``."""
    normalize = transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)
    train = transforms.Compose(
        [
            transforms.RandomResizedCrop(train_crop_size, scale=tuple(train_crop_scale), antialias=True),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            normalize,
        ]
    )
    evaluation = transforms.Compose(
        [
            transforms.Resize(val_resize_size, antialias=True),
            transforms.CenterCrop(val_crop_size),
            transforms.ToTensor(),
            normalize,
        ]
    )
    return train, evaluation


class ArrayImageDataset(Dataset):
    """2D images held in memory as a uint8 array ``(N, H, W)`` or ``(N, H, W, 3)`` with labels ``(N,)``.

    Items are ``(transform(PIL RGB image), label)``; grey images are repeated to 3 channels.
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform: Callable | None = None):
        if len(images) != len(labels):
            raise DataError(f"{len(images)} images but {len(labels)} labels")
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        image = Image.fromarray(self.images[index]).convert("RGB")
        return (self.transform(image) if self.transform else image), int(self.labels[index])


def _as_uint8(images: np.ndarray, window: tuple[float, float] | None = None) -> np.ndarray:
    """``images`` clipped to ``window`` and scaled to ``0..255`` when one is given; else uint8 images unchanged and
    anything else min-max scaled over the whole array to ``0..255``."""
    if window is None and images.dtype == np.uint8:
        return images
    lo, hi = window if window is not None else (float(images.min()), float(images.max()))
    return np.round(scale_to_unit(images, lo, hi if hi > lo else lo + 1.0) * 255).astype(np.uint8)


def read_rgb(path: str | Path) -> Image.Image:
    """An image file as 8-bit RGB; 16-bit and float grey images (common in medical PNG/TIFF) are min-max scaled
    to ``0..255`` first instead of being clipped. An unreadable or truncated file raises a
    :class:`~crossd.errors.DataError` naming it."""
    try:
        with Image.open(path) as image:
            image.load()
            if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
                pixels = np.asarray(image, dtype=np.float32)
                check_finite([pixels], str(path))
                image = Image.fromarray(_as_uint8(pixels))
            return image.convert("RGB")
    except OSError as exc:  # PIL's UnidentifiedImageError and truncated files are OSErrors
        raise DataError(f"{path}: not a readable image ({exc}); remove or replace the file") from None


def _check_classes(classes: list[str], where: Path | str) -> None:
    if len(classes) < 2:
        raise DataError(f"{where}: found {len(classes)} class(es) {classes}; classification needs at least 2")


def _image_folder(root: Path, transform: Callable) -> datasets.ImageFolder:
    if not root.is_dir():
        raise DataError(f"image folder not found: {root}")
    try:
        return datasets.ImageFolder(str(root), transform=transform, loader=read_rgb)
    except FileNotFoundError as exc:  # torchvision: no class folders, or class folders without images
        raise DataError(f"{root}: {str(exc).splitlines()[0]}") from None


def load_image_folders(root: str | Path, train_transform: Callable, eval_transform: Callable) -> ImageSplits:
    """``root/train``, ``root/val`` and optional ``root/test`` as ``ImageFolder`` datasets with one class list."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"data path not found: {root}")
    train = _image_folder(root / "train", train_transform)
    _check_classes(train.classes, root / "train")
    splits = {"val": _image_folder(root / "val", eval_transform)}
    if (root / "test").is_dir():
        splits["test"] = _image_folder(root / "test", eval_transform)
    for name, split in splits.items():
        if split.classes != train.classes:
            raise DataError(
                f"{root / name}: class folders {split.classes} differ from those of {root / 'train'} {train.classes}"
            )
    return ImageSplits(train, splits["val"], splits.get("test"), list(train.classes))


def load_medmnist(
    path: str | Path,
    train_transform: Callable,
    eval_transform: Callable,
    num_classes: int | None = None,
    window: tuple[float, float] | None = None,
) -> ImageSplits:
    """A MedMNIST 2D ``.npz`` (``train_*``, ``val_*``, optional ``test_*``) as in-memory datasets; images may be
    stored ``(N, H, W)``, ``(N, H, W, C)`` or ``(N, C, H, W)`` (read as 2D, :func:`crossd.data.load_npz`) and are
    clipped to ``window`` and scaled to 8 bits when one is given."""
    data = load_npz(path, spatial_dims=2, num_classes=num_classes)
    missing = [s for s in ("train", "val") if s not in data.splits]
    if missing:
        raise DataError(
            f"{path}: pretraining needs MedMNIST splits 'train_images'/'val_images' (+ labels); "
            f"missing {', '.join(missing)} (found splits: {', '.join(sorted(data.splits))})"
        )
    classes = [str(c) for c in range(data.num_classes)]

    def dataset(split: ArraySplit, transform: Callable) -> ArrayImageDataset:
        images = np.moveaxis(data.layout.channels_first(split.images), 1, -1)  # (N, H, W, C) for PIL
        images = images[..., 0] if images.shape[-1] == 1 else images
        return ArrayImageDataset(_as_uint8(images, window), split.labels, transform)

    test = data.splits.get("test")
    return ImageSplits(
        dataset(data.splits["train"], train_transform),
        dataset(data.splits["val"], eval_transform),
        dataset(test, eval_transform) if test is not None else None,
        classes,
    )


def detect_dataset_kind(data_path: str | Path, dataset: str | None = None) -> str:
    """``dataset`` if given, else ``"medmnist"`` for a ``.npz`` path and ``"imagefolder"`` otherwise."""
    if dataset is None:
        return "medmnist" if Path(data_path).suffix == ".npz" else "imagefolder"
    if dataset not in DATASET_KINDS:
        raise SettingsError(f"must be one of {DATASET_KINDS}, got {dataset!r}", field="dataset")
    return dataset


def load_image_splits(
    data_path: str | Path,
    dataset: str | None = None,
    train_crop_size: int = 224,
    val_resize_size: int = 256,
    val_crop_size: int = 224,
    train_crop_scale: tuple[float, float] = (0.08, 1.0),
    num_classes: int | None = None,
    window: tuple[float, float] | None = None,
) -> ImageSplits:
    """Train/val(/test) datasets of an image folder or a MedMNIST 2D ``.npz`` with the reference transforms.

    ``num_classes``: the class count of an ``.npz`` (default: its distinct labels, which must
    be ``0..C-1``) or the number of class folders an image folder must have. ``window``: ``(low, high)`` intensity
    window of an ``.npz`` (:mod:`crossd.data.preprocessing`); image folders hold 8-bit images and refuse one.

    Raises a one-line :class:`~crossd.errors.DataError` (:class:`~crossd.errors.SettingsError` for an unknown
    ``dataset``) for a missing or empty path, fewer than two classes,
    an ``.npz`` without the expected keys, or with NaN/Inf values, labels out of range or a layout not 2D.
    """
    if not str(data_path):
        raise SettingsError("is empty", field="data_path")
    train_tf, eval_tf = classification_transforms(train_crop_size, val_resize_size, val_crop_size, train_crop_scale)
    if detect_dataset_kind(data_path, dataset) == "medmnist":
        return load_medmnist(data_path, train_tf, eval_tf, num_classes, window)
    if window is not None:
        raise SettingsError("applies to .npz data (and volumes), not to image folders of 8-bit images", field="window")
    splits = load_image_folders(data_path, train_tf, eval_tf)
    if num_classes is not None and num_classes != len(splits.classes):
        raise DataError(
            f"{num_classes}, but the image folders of {data_path} hold {len(splits.classes)} classes {splits.classes}",
            field="num_classes",
        )
    return splits
