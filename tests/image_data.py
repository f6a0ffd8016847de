"""Tiny image data written by tests: class folders of PNGs and MedMNIST-layout ``.npz`` files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def write_image_folder(
    root: Path, classes: int = 3, per_class: int = 4, size: int = 16, splits=("train", "val", "test")
) -> Path:
    """``root/<split>/class<c>/<i>.png``; class ``c`` is brighter with ``c``; even images grey, odd ones RGB."""
    rng = np.random.default_rng(0)
    for split in splits:
        for c in range(classes):
            folder = root / split / f"class{c}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                grey = (rng.random((size, size)) * 60 + c * 60).astype(np.uint8)
                image = grey if i % 2 == 0 else np.stack([grey, grey // 2, 255 - grey], -1)
                Image.fromarray(image).save(folder / f"{i}.png")
    return root


def write_medmnist_npz(path: Path, classes: int = 3, per_split: int = 9, size: int = 16, splits=("train", "val")):
    """A MedMNIST-layout 2D ``.npz``: ``<split>_images (N, size, size)`` uint8, ``<split>_labels (N, 1)``."""
    rng = np.random.default_rng(1)
    arrays = {}
    for split in splits:
        arrays[f"{split}_images"] = rng.integers(0, 256, (per_split, size, size), dtype=np.uint8)
        arrays[f"{split}_labels"] = (np.arange(per_split) % classes).reshape(-1, 1)
    np.savez(path, **arrays)
    return path
