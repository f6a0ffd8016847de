"""Read image/volume arrays from ``.npz`` files in the MedMNIST split layout or the authors' pooled layout.

- MedMNIST: ``train_images``, ``train_labels``, ``val_*``, ``test_*``; images ``(N, H, W)``, ``(N, H, W, 3)``
  (2D) or ``(N, D, H, W)`` (3D) uint8; labels ``(N, 1)`` or ``(N,)``.
- Pooled (the Enhanced-MedMNIST scripts): ``images`` and ``labels``, no splits.

Every array is checked on reading (:mod:`crossd.data.checks`): its layout by rule (channels first or last,
``spatial_dims`` settles ambiguous shapes), finite values, and labels in ``0..C-1``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from crossd.data.checks import Layout, check_finite, count_classes, infer_layout
from crossd.errors import DataError

SPLITS = ("train", "val", "test")


@dataclass
class ArraySplit:
    """Images ``(N, ...)`` and integer labels ``(N,)`` of one split."""

    images: np.ndarray
    labels: np.ndarray


@dataclass
class NpzData:
    """The splits of an ``.npz`` file (``{"all": ...}`` for the pooled layout), their layout and class count."""

    path: Path
    splits: dict[str, ArraySplit]
    layout: Layout
    channels: int
    num_classes: int

    @property
    def spatial_dims(self) -> int:
        return self.layout.spatial_dims

    def pooled(self) -> ArraySplit:
        """All splits concatenated in ``train, val, test`` order (how the paper pools MedMNIST)."""
        parts = [self.splits[name] for name in (*SPLITS, "all") if name in self.splits]
        return ArraySplit(np.concatenate([p.images for p in parts]), np.concatenate([p.labels for p in parts]))


def _labels(array: np.ndarray, path: Path, key: str) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 1:
        raise DataError(
            f"{path}: '{key}' must have shape (N,) or (N, 1) for single-label classification, got {array.shape}"
        )
    return array


def load_npz(path: str | Path, spatial_dims: int | None = None, num_classes: int | None = None) -> NpzData:
    """Read and check an ``.npz`` in either layout.

    ``spatial_dims`` settles ambiguous shapes; ``num_classes`` fixes
    ``C`` (else the number of distinct labels over all splits, which must be ``0..C-1``). Raises one-line
    :class:`~crossd.errors.DataError` for a missing file, missing keys, unknown or ambiguous layouts,
    NaN/Inf values and labels out of range.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data file not found: {path}")
    try:
        archive = np.load(path, allow_pickle=False)
        keys = set(archive.files)
    except Exception as exc:
        raise DataError(f"{path}: not a readable .npz file ({exc})") from None
    if {"images", "labels"} <= keys:
        names = {"all": ("images", "labels")}
    else:
        names = {s: (f"{s}_images", f"{s}_labels") for s in SPLITS if f"{s}_images" in keys}
        if not names:
            raise DataError(
                f"{path}: expected keys 'images'/'labels' or 'train_images'/'train_labels' "
                f"(MedMNIST), found {sorted(keys)}"
            )
    splits, layouts = {}, set()
    for split, (ikey, lkey) in names.items():
        if lkey not in keys:
            raise DataError(f"{path}: '{ikey}' has no matching '{lkey}'")
        images, labels = archive[ikey], _labels(archive[lkey], path, lkey)
        if len(images) != len(labels):
            raise DataError(f"{path}: {len(images)} images in '{ikey}' but {len(labels)} labels in '{lkey}'")
        layout = infer_layout(images.shape, spatial_dims, f"{path}: '{ikey}'")
        layouts.add((layout, layout.channels(images.shape)))
        check_finite(images, f"{path}: '{ikey}'")
        splits[split] = ArraySplit(images, labels)
    if len(layouts) != 1:
        raise DataError(f"{path}: splits disagree in image layout: {sorted(layouts, key=str)}")
    layout, channels = layouts.pop()
    labels = {f"{path}: '{names[s][1]}'": split.labels for s, split in splits.items()}
    classes = count_classes(labels, str(path), num_classes)
    for split in splits.values():
        split.labels = split.labels.astype(np.int64)
    return NpzData(path, splits, layout, channels, classes)
