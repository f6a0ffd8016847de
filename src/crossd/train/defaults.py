"""Defaults of ``crossd pretrain`` that fit the data and the machine instead of ImageNet on a GPU server.

torchvision's reference recipe crops 224 pixels out of photos resized to 256 and loads them with 4 workers per
process. On 32x32 MRI patches that upsamples every image 7x (49x the pixels) and, on a 2-core machine, runs more
loader processes than cores. :func:`fit_defaults` keeps the recipe's sizes for images at least as large as its
crop, and otherwise uses the images' own side; workers are ``min(4, CPU cores)``.
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

RECIPE_SIZES = (224, 256, 224)
"""torchvision's ``(train crop, val resize, val crop)``, kept for images of at least 224 pixels."""
MAX_WORKERS = 4
LARGE_CROP = 4
"""A crop this many times the image side (or more) gets a warning: mostly interpolated pixels, slow."""


@dataclass(frozen=True)
class FittedDefaults:
    """Values for the flags the user left out, and the sentences that say what was chosen and why."""

    train_crop_size: int
    val_resize_size: int
    val_crop_size: int
    workers: int
    notes: tuple[str, ...]


def _npy_shape(file) -> tuple[int, ...]:
    major, _ = np.lib.format.read_magic(file)
    read = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
    return read(file)[0]


def image_side(data_path: str | Path) -> int | None:
    """The smaller side of the first training image: from the array header of a ``.npz`` (``train_images`` or
    ``images``, nothing else is read) or the first file under ``train/`` of an image folder; ``None`` when there
    is none to read (the loader then reports the problem)."""
    path = Path(data_path)
    try:
        if path.suffix == ".npz":
            with zipfile.ZipFile(path) as archive:
                name = next(n for n in ("train_images.npy", "images.npy") if n in archive.namelist())
                with archive.open(name) as file:
                    return int(min(_npy_shape(file)[1:3]))
        from PIL import Image

        first = next(p for p in sorted((path / "train").rglob("*")) if p.is_file() and not p.name.startswith("."))
        with Image.open(first) as image:
            return int(min(image.size))
    except (OSError, StopIteration, ValueError, zipfile.BadZipFile):
        return None


def fit_defaults(
    data_path: str | Path,
    train_crop_size: int | None = None,
    val_resize_size: int | None = None,
    val_crop_size: int | None = None,
    workers: int | None = None,
) -> FittedDefaults:
    """Fill the ``None`` arguments from the data and the machine (see module doc); given values are kept, with
    a warning note when the training crop is :data:`LARGE_CROP` or more times the image side."""
    side = image_side(data_path)
    recipe = RECIPE_SIZES if side is None or side >= RECIPE_SIZES[0] else (side, side, side)
    given = (train_crop_size, val_resize_size, val_crop_size)
    train, resize, crop = (g if g is not None else r for g, r in zip(given, recipe, strict=True))
    notes = []
    if side is not None and None in given:
        source = "torchvision's recipe" if recipe == RECIPE_SIZES else "the images' side"
        notes.append(
            f"images are {side} px: train crop {train}, val resize {resize}, val crop {crop} ({source} for the "
            "sizes not given)"
        )
    if side is not None and train >= LARGE_CROP * side:
        notes.append(
            f"warning: --train-crop-size {train} is {train / side:.0f}x the {side}-px images: mostly interpolated "
            f"pixels and {(train / side) ** 2:.0f}x the compute; --train-crop-size {side} keeps them as they are"
        )
    if workers is None:
        workers = min(MAX_WORKERS, os.cpu_count() or 1)
        notes.append(f"{workers} data-loading workers (min({MAX_WORKERS}, CPU cores))")
    return FittedDefaults(train, resize, crop, workers, tuple(notes))
