"""Read image/volume arrays from ``.npz`` files in the MedMNIST split layout or the authors' pooled layout.

- MedMNIST: ``train_images``, ``train_labels``, ``val_*``, ``test_*``; images ``(N, H, W)``, ``(N, H, W, 3)``
  (2D) or ``(N, D, H, W)`` (3D) uint8; labels ``(N, 1)`` or ``(N,)``.
- Pooled (the Enhanced-MedMNIST scripts): ``images`` and ``labels``, no splits.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

SPLITS = ("train", "val", "test")


@dataclass
class ArraySplit:
    """Images ``(N, ...)`` and integer labels ``(N,)`` of one split."""

    images: np.ndarray
    labels: np.ndarray


@dataclass
class NpzData:
    """The splits of an ``.npz`` file (``{"all": ...}`` for the pooled layout) and its inferred geometry."""

    path: Path
    splits: dict[str, ArraySplit]
    spatial_dims: int
    channels: int

    def pooled(self) -> ArraySplit:
        """All splits concatenated in ``train, val, test`` order (how the paper pools MedMNIST)."""
        parts = [self.splits[name] for name in (*SPLITS, "all") if name in self.splits]
        return ArraySplit(np.concatenate([p.images for p in parts]), np.concatenate([p.labels for p in parts]))

    @property
    def num_classes(self) -> int:
        return int(max(int(s.labels.max()) for s in self.splits.values() if len(s.labels)) + 1)


def _labels(array: np.ndarray, path: Path, key: str) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 1:
        raise ValueError(
            f"{path}: '{key}' must have shape (N,) or (N, 1) for single-label classification, got {array.shape}"
        )
    if not np.issubdtype(array.dtype, np.integer):
        if not np.all(np.equal(np.mod(array, 1), 0)):
            raise ValueError(f"{path}: '{key}' must hold integer class labels")
        array = array.astype(np.int64)
    if len(array) and array.min() < 0:
        raise ValueError(f"{path}: '{key}' has negative labels")
    return array.astype(np.int64)


def _geometry(images: np.ndarray, path: Path) -> tuple[int, int]:
    """``(spatial_dims, channels)``: ``(N,H,W)`` -> (2, 1), ``(N,H,W,3)`` -> (2, 3), ``(N,D,H,W)`` -> (3, 1)."""
    if images.ndim == 3:
        return 2, 1
    if images.ndim == 4 and images.shape[-1] in (3, 4) and images.shape[1] > 4:
        return 2, images.shape[-1]
    if images.ndim == 4:
        return 3, 1
    raise ValueError(f"{path}: images must be (N, H, W), (N, H, W, 3) or (N, D, H, W), got shape {images.shape}")


def load_npz(path: str | Path) -> NpzData:
    """Read and validate an ``.npz`` in either layout; raises one-line ``ValueError``/``FileNotFoundError``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"data file not found: {path}")
    try:
        archive = np.load(path, allow_pickle=False)
        keys = set(archive.files)
    except Exception as exc:
        raise ValueError(f"{path}: not a readable .npz file ({exc})") from None
    if {"images", "labels"} <= keys:
        names = {"all": ("images", "labels")}
    else:
        names = {s: (f"{s}_images", f"{s}_labels") for s in SPLITS if f"{s}_images" in keys}
        if not names:
            raise ValueError(
                f"{path}: expected keys 'images'/'labels' or 'train_images'/'train_labels' "
                f"(MedMNIST), found {sorted(keys)}"
            )
    splits = {}
    for split, (ikey, lkey) in names.items():
        if lkey not in keys:
            raise ValueError(f"{path}: '{ikey}' has no matching '{lkey}'")
        images, labels = archive[ikey], _labels(archive[lkey], path, lkey)
        if len(images) != len(labels):
            raise ValueError(f"{path}: {len(images)} images in '{ikey}' but {len(labels)} labels in '{lkey}'")
        splits[split] = ArraySplit(images, labels)
    geometries = {_geometry(s.images, path) for s in splits.values()}
    if len(geometries) != 1:
        raise ValueError(f"{path}: splits disagree in image geometry: {sorted(geometries)}")
    spatial_dims, channels = geometries.pop()
    return NpzData(path, splits, spatial_dims, channels)
