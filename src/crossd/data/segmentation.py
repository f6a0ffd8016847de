"""Image/label volume pairs for 3D segmentation: NIfTI pairs listed in a CSV, or blocks of the MNI152 template.

- ``.csv`` with an ``image,label`` header (paths relative to the CSV): NIfTI images and integer label maps of the
  same shape; volumes of different shapes need ``size`` (images resized trilinearly, labels by nearest voxel).
- ``"mni152"``: the MNI152 T1 template (nilearn, offline) cut into cubic blocks, each voxel labelled background
  (0), grey matter (1) or white matter (2) by the larger of ``1 - gm - wm``, ``gm`` and ``wm`` (nilearn's
  GM/WM probability maps). Blocks of one template are correlated: a demo and test set, not a benchmark.

Volumes are ``(D, H, W)`` in the orientation rule of :mod:`crossd.data.orientation` (``docs/conventions.md``):
RAS+ canonical, the ``slice_axis`` plane (axial by default) as ``(H, W)``; image and label get the same layout.
"""

from __future__ import annotations

import csv
import functools
import gzip
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from crossd.data.orientation import layout_affine, oriented
from crossd.data.volumes import mixed_shapes_error, read_nifti
from crossd.errors import DataError, SettingsError
from crossd.io import atomic_write, save_text

MNI152 = "mni152"
"""The ``data`` name of the template's blocks."""
MNI152_CLASSES = ["background", "grey matter", "white matter"]


@dataclass
class SegmentationSet:
    """Images ``(N, 1, D, H, W)`` float32 (intensities as read), labels ``(N, D, H, W)`` int64, class names."""

    images: np.ndarray
    labels: np.ndarray
    classes: list[str] = field(default_factory=list)

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def _resize(volume: np.ndarray, size: int | None, mode: str) -> np.ndarray:
    """``(D, H, W)`` -> ``(size, size, size)`` (``mode``: ``"trilinear"`` or ``"nearest"``)."""
    if size is None or volume.shape == (size,) * 3:
        return volume
    tensor = torch.from_numpy(np.ascontiguousarray(volume, dtype=np.float32))[None, None]
    kwargs = {"align_corners": False} if mode == "trilinear" else {}
    return F.interpolate(tensor, size=(size,) * 3, mode=mode, **kwargs)[0, 0].numpy()


def _grey(path: Path, slice_axis: str) -> np.ndarray:
    """A one-channel NIfTI volume as ``(D, H, W)``."""
    volume = read_nifti(path, slice_axis)
    if volume.shape[0] != 1:
        raise DataError(f"{path}: segmentation needs one-channel volumes, got {volume.shape[0]} channels")
    return volume[0]


def load_segmentation_csv(path: str | Path, size: int | None = None, slice_axis: str = "axial") -> SegmentationSet:
    """Image/label NIfTI pairs from a CSV with ``image`` and ``label`` columns; classes ``0..max label``."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"segmentation CSV not found: {path}")
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or not {"image", "label"} <= set(rows[0]):
        raise DataError(f"{path}: needs a header with 'image' and 'label' columns and at least one row")
    images, labels = [], []
    for row in rows:
        image = _grey(path.parent / row["image"], slice_axis)
        label = _grey(path.parent / row["label"], slice_axis)
        if image.shape != label.shape:
            raise DataError(f"{path}: {row['image']} {image.shape} and {row['label']} {label.shape} differ in shape")
        if np.any(label < 0) or np.any(label != np.round(label)):
            raise DataError(f"{path}: {row['label']} must hold non-negative integer labels")
        images.append(_resize(image, size, "trilinear"))
        labels.append(_resize(label, size, "nearest"))
    shapes = sorted({im.shape for im in images})
    if len(shapes) > 1:
        raise mixed_shapes_error(path, shapes[0], shapes[-1])
    stacked = np.stack(labels).astype(np.int64)
    classes = [str(c) for c in range(int(stacked.max()) + 1)]
    return SegmentationSet(np.stack(images)[:, None].astype(np.float32), stacked, classes)


@functools.lru_cache(maxsize=6)
def _mni152(resolution: int, slice_axis: str) -> tuple[np.ndarray, np.ndarray]:
    """The template ``(D, H, W)`` float32 and its labels ``(D, H, W)`` int64 in the layout of ``slice_axis``."""
    from nilearn import datasets

    t1, grey, white = (
        oriented(load(resolution=resolution), slice_axis)[0]
        for load in (
            datasets.load_mni152_template,
            datasets.load_mni152_gm_template,
            datasets.load_mni152_wm_template,
        )
    )
    labels = np.argmax(np.stack([1.0 - grey - white, grey, white]), axis=0)
    return t1, labels.astype(np.int64)


def mni152_blocks(
    block: int = 24, stride: int | None = None, resolution: int = 2, min_tissue: float = 0.3, slice_axis: str = "axial"
) -> SegmentationSet:
    """Cubic blocks ``block^3`` of the MNI152 T1 template with grey/white-matter labels (see module doc).

    Args:
        block: block side in voxels.
        stride: distance between block origins (default ``block``: no overlap).
        resolution: template resolution in mm (1 or 2).
        min_tissue: keep blocks whose grey + white fraction is at least this.
        slice_axis: the template's plane that becomes ``(H, W)`` (:mod:`crossd.data.orientation`).
    """
    if resolution not in (1, 2):
        raise SettingsError(f"must be 1 or 2 (mm), got {resolution}", field="resolution")
    t1, labels = _mni152(resolution, slice_axis)
    stride = stride or block
    images, targets = [], []
    for d in range(0, t1.shape[0] - block + 1, stride):
        for h in range(0, t1.shape[1] - block + 1, stride):
            for w in range(0, t1.shape[2] - block + 1, stride):
                window = (slice(d, d + block), slice(h, h + block), slice(w, w + block))
                if (labels[window] > 0).mean() >= min_tissue:
                    images.append(t1[window])
                    targets.append(labels[window])
    if not images:
        raise SettingsError(f"{block}: no MNI152 block of that side holds {min_tissue:.0%} tissue", field="block")
    return SegmentationSet(np.stack(images)[:, None].copy(), np.stack(targets).copy(), list(MNI152_CLASSES))


def write_segmentation_csv(data: SegmentationSet, output_dir: str | Path) -> Path:
    """Save every pair as ``image_<i>.nii.gz``/``label_<i>.nii.gz`` (1 mm voxels, the axial layout's affine
    :func:`~crossd.data.orientation.layout_affine`) plus ``pairs.csv``; returns the CSV path. The inverse of
    :func:`load_segmentation_csv` with the default ``slice_axis``."""
    import nibabel as nib

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    lines = ["image,label"]
    for i, (image, label) in enumerate(zip(data.images[:, 0], data.labels, strict=True)):
        for name, array in ((f"image_{i:03d}.nii.gz", image), (f"label_{i:03d}.nii.gz", label.astype(np.int16))):
            payload = gzip.compress(nib.Nifti1Image(np.ascontiguousarray(array), layout_affine()).to_bytes())
            atomic_write(out / name, lambda p, payload=payload: p.write_bytes(payload))
        lines.append(f"image_{i:03d}.nii.gz,label_{i:03d}.nii.gz")
    return save_text("\n".join(lines) + "\n", out / "pairs.csv")


def load_segmentation(data: str | Path, size: int | None = None, slice_axis: str = "axial") -> SegmentationSet:
    """``"mni152"`` (the template's blocks, :func:`mni152_blocks` defaults) or an ``image,label`` CSV."""
    if str(data) == MNI152:
        return mni152_blocks(slice_axis=slice_axis)
    return load_segmentation_csv(data, size, slice_axis)
