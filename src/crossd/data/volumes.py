"""Labelled samples for evaluation, from every source the paper's datasets come in, as one in-memory array.

- ``.npz``: MedMNIST split layout or the authors' pooled ``images``/``labels`` (all splits pooled,
  :func:`crossd.data.load_npz`).
- ``.csv`` of ``path,label`` rows (header optional; paths relative to the CSV) whose paths are NIfTI volumes
  (``.nii``/``.nii.gz``; ``(X, Y, Z)`` or channels ``(X, Y, Z, C)``), DICOM series folders, or ultrasound videos
  (``.mp4``/``.avi``/``.mov``, frames stacked as depth, grey); a folder holding exactly one ``.csv`` means that CSV.
  NIfTI files and DICOM series are oriented by one rule (:mod:`crossd.data.orientation`): RAS+ canonical, the
  ``slice_axis`` plane (axial by default) as ``(H, W)``, so the same anatomy lands on the same voxel in both
  formats. ``.npz`` arrays and videos are used as stored.
- A folder of class sub-folders (``root/<class>/*``) of 2D images, or of volumes (NIfTI, videos, DICOM series
  sub-folders).

Every sample becomes ``(C, *spatial)``, volumes ``(C, D, H, W)``; samples of different shapes need ``size``
(resized to ``size`` per axis).
Intensities are left as read: scaling belongs to the evaluation protocol. Every source is checked as it is read
(:mod:`crossd.data.checks`): NaN/Inf values and labels outside ``0..C-1`` are one-line errors naming the file.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from crossd.data.checks import check_finite, count_classes
from crossd.data.npz import load_npz
from crossd.data.orientation import (
    DEFAULT_ORIENTATION,
    check_slice_axis,
    dicom_affine,
    oriented,
    series_step,
    slice_normal,
)
from crossd.errors import DataError, SettingsError

NIFTI_SUFFIXES = (".nii", ".nii.gz")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


@dataclass
class SampleSet:
    """Images ``(N, C, H, W)`` or ``(N, C, D, H, W)`` (any numeric dtype), labels ``(N,)`` int64, class names, and
    the sample indices of the source's own splits (``{"train", "val", "test"}`` of a MedMNIST ``.npz``; empty for
    sources without splits)."""

    images: np.ndarray
    labels: np.ndarray
    classes: list[str] = field(default_factory=list)
    split_indices: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def spatial_dims(self) -> int:
        return self.images.ndim - 2

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def _resize(sample: np.ndarray, size: int | None) -> np.ndarray:
    """``(C, *spatial)`` -> ``(C, size, ...)`` by (tri/bi)linear interpolation; unchanged when ``size`` is None."""
    if size is None or all(s == size for s in sample.shape[1:]):
        return sample
    mode = "trilinear" if sample.ndim == 4 else "bilinear"
    tensor = torch.from_numpy(np.ascontiguousarray(sample, dtype=np.float32))[None]
    return F.interpolate(tensor, size=(size,) * (sample.ndim - 1), mode=mode, align_corners=False)[0].numpy()


def mixed_shapes_error(where: Path | str, first: tuple, last: tuple) -> DataError:
    """The error for samples of different shapes; it names the ``size`` setting that resizes them."""
    return DataError(
        f"is needed: samples differ in shape ({first} vs {last}) in {where}; it resizes every sample to that many "
        "voxels per spatial axis",
        field="size",
    )


def _stack(samples: list[np.ndarray], size: int | None, where: Path) -> np.ndarray:
    samples = [_resize(s, size) for s in samples]
    shapes = sorted({s.shape for s in samples})
    if len(shapes) > 1:
        raise mixed_shapes_error(where, shapes[0], shapes[-1])
    return np.stack(samples)


def _reason(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def read_nifti(path: Path, slice_axis: str = "axial") -> np.ndarray:
    """A NIfTI volume as ``(C, D, H, W)`` float32 in the layout of ``slice_axis`` (:mod:`crossd.data.orientation`:
    RAS+ canonical, ``D`` along the slice normal). ``(X, Y, Z)`` files give ``C = 1``; ``(X, Y, Z, C)`` and NIfTI's
    vector layout ``(X, Y, Z, 1, C)`` give ``C`` channels."""
    import nibabel as nib

    check_slice_axis(slice_axis)
    try:
        image = nib.load(str(path))
        shape = image.shape
    except Exception as exc:
        raise DataError(f"{path}: not a readable NIfTI file ({_reason(exc)})") from None
    if not (len(shape) in (3, 4) or (len(shape) == 5 and shape[3] == 1)):
        raise DataError(f"{path}: expected a volume (X, Y, Z) or channels (X, Y, Z, C), got shape {shape}")
    if len(shape) == 5:
        image = image.slicer[:, :, :, 0]
    try:
        return oriented(image, slice_axis)
    except Exception as exc:
        raise DataError(f"{path}: not a readable NIfTI file ({_reason(exc)})") from None


def read_dicom_series(folder: Path, slice_axis: str = "axial") -> np.ndarray:
    """A DICOM series folder as ``(C, D, H, W)`` float32 in the layout of ``slice_axis``, the same as a NIfTI file
    of the same patient (:mod:`crossd.data.orientation`): slices sorted by ``ImagePositionPatient`` along the slice
    normal, rescale slope/intercept applied, then reoriented by the series' RAS affine (from
    ``ImageOrientationPatient``, ``PixelSpacing`` and the positions). Axial, coronal, sagittal and oblique series
    are supported (oblique ones by their closest axes); a series without positions is sorted by ``InstanceNumber``
    and, without ``ImageOrientationPatient``, taken as axial (:data:`~crossd.data.orientation.DEFAULT_ORIENTATION`).
    Colour slices (``SamplesPerPixel`` 3) give 3 channels."""
    import nibabel as nib
    import pydicom

    check_slice_axis(slice_axis)
    slices = []
    for file in sorted(p for p in folder.iterdir() if p.is_file()):
        try:
            slices.append(pydicom.dcmread(str(file)))
        except Exception:
            continue  # DICOMDIR-style folders hold non-DICOM files too
    slices = [s for s in slices if "PixelData" in s]
    if not slices:
        raise DataError(f"{folder}: no readable DICOM slices")
    orientations = {
        tuple(round(float(v), 4) for v in getattr(s, "ImageOrientationPatient", DEFAULT_ORIENTATION)) for s in slices
    }
    if len(orientations) > 1:
        raise DataError(f"{folder}: slices differ in ImageOrientationPatient (several series in one folder?)")
    orientation = orientations.pop()
    normal = slice_normal(orientation)
    positions = np.stack(
        [
            np.array(s.ImagePositionPatient, float)
            if "ImagePositionPatient" in s
            else normal * float(getattr(s, "InstanceNumber", 0))
            for s in slices
        ]
    )
    order = np.argsort(positions @ normal, kind="stable")
    slices, positions = [slices[i] for i in order], positions[order]
    try:
        planes = [
            s.pixel_array.astype(np.float32) * float(getattr(s, "RescaleSlope", 1))
            + float(getattr(s, "RescaleIntercept", 0))
            for s in slices
        ]
        volume = np.stack(planes)
    except Exception as exc:
        raise DataError(f"{folder}: DICOM slices cannot be stacked ({_reason(exc)})") from None
    spacing = [float(v) for v in getattr(slices[0], "PixelSpacing", (1.0, 1.0))]
    affine = dicom_affine(positions[0], orientation, spacing, series_step(positions, orientation, str(folder)))
    return oriented(nib.Nifti1Image(volume, affine), slice_axis)


def read_video(path: Path) -> np.ndarray:
    """An ultrasound video as ``(1, T, H, W)`` float32 grey frames (RGB averaged), frames as depth."""
    import imageio.v3 as iio

    try:
        frames = np.asarray(iio.imread(str(path)), dtype=np.float32)
    except Exception as exc:
        raise DataError(f"{path}: not a readable video ({_reason(exc)})") from None
    if frames.ndim == 4:
        frames = frames[..., :3].mean(-1)
    if frames.ndim != 3:
        raise DataError(f"{path}: expected frames (T, H, W[, 3]), got shape {frames.shape}")
    return frames[None]


def _read_volume(path: Path, slice_axis: str = "axial") -> np.ndarray:
    if not path.exists():
        raise DataError(f"volume not found: {path}")
    name = path.name.lower()
    if path.is_dir():
        return read_dicom_series(path, slice_axis)
    if name.endswith(NIFTI_SUFFIXES):
        return read_nifti(path, slice_axis)
    if name.endswith(VIDEO_SUFFIXES):
        return read_video(path)
    raise DataError(
        f"{path}: unsupported volume type; expected NIfTI {NIFTI_SUFFIXES}, a DICOM series folder or a video "
        f"{VIDEO_SUFFIXES}"
    )


def _class_indices(names: list[str], source: str, num_classes: int | None) -> tuple[np.ndarray, list[str]]:
    """Integer labels stay themselves and must be ``0..C-1`` (:func:`crossd.data.checks.count_classes`); other
    labels are class names, numbered in sorted order."""
    if all(n.lstrip("-").isdigit() for n in names):
        labels = np.array([int(n) for n in names], dtype=np.int64)
        return labels, [str(c) for c in range(count_classes(labels, source, num_classes))]
    classes = sorted(set(names))
    _check_class_count(classes, source, num_classes)
    return np.array([classes.index(n) for n in names], dtype=np.int64), classes


def _check_class_count(classes: list[str], source: str | Path, num_classes: int | None) -> None:
    if num_classes is not None and num_classes != len(classes):
        raise DataError(
            f"{num_classes}, but the data names {len(classes)} classes {classes} ({source})", field="num_classes"
        )


def load_csv(
    path: Path, size: int | None = None, num_classes: int | None = None, slice_axis: str = "axial"
) -> SampleSet:
    """Volumes listed in a ``path,label`` CSV (paths relative to the CSV's folder)."""
    with open(path, newline="") as f:
        rows = [r for r in csv.reader(f) if r and any(c.strip() for c in r)]
    if rows and rows[0][0].strip().lower() in ("path", "file", "filename", "image", "volume"):
        rows = rows[1:]
    if not rows:
        raise DataError(f"{path}: no 'path,label' rows")
    bad = [i for i, r in enumerate(rows) if len(r) < 2]
    if bad:
        raise DataError(f"{path}: row {bad[0] + 1} has no label; expected 'path,label'")
    volumes = [_read_volume(path.parent / r[0].strip(), slice_axis) for r in rows]
    labels, classes = _class_indices([r[1].strip() for r in rows], f"{path}: labels", num_classes)
    return SampleSet(_checked_stack(volumes, size, path, [r[0].strip() for r in rows]), labels, classes)


def _read_image(file: Path) -> np.ndarray:
    """A 2D image as ``(3, H, W)`` uint8 RGB (grey repeated)."""
    from PIL import Image

    try:
        return np.asarray(Image.open(file).convert("RGB")).transpose(2, 0, 1)
    except Exception as exc:
        raise DataError(f"{file}: not a readable image ({_reason(exc)})") from None


def _is_volume(entry: Path) -> bool:
    return entry.is_dir() or entry.name.lower().endswith(NIFTI_SUFFIXES + VIDEO_SUFFIXES)


def load_class_folders(
    root: Path, size: int | None = None, num_classes: int | None = None, slice_axis: str = "axial"
) -> SampleSet:
    """Samples in class sub-folders ``root/<class>/*``: 2D images (``(N, 3, H, W)``), or volumes (NIfTI files,
    videos, DICOM series sub-folders: ``(N, C, D, H, W)``); one kind per dataset."""
    classes = sorted(d.name for d in root.iterdir() if d.is_dir())
    entries = [
        (index, entry)
        for index, name in enumerate(classes)
        for entry in sorted((root / name).iterdir())
        if entry.suffix.lower() in IMAGE_SUFFIXES or _is_volume(entry)
    ]
    if not entries:
        raise DataError(
            f"{root}: no samples in class sub-folders (expected root/<class>/*.png, *.nii.gz, videos or DICOM "
            "series folders) and no .csv file"
        )
    kinds = {_is_volume(entry) for _, entry in entries}
    if len(kinds) > 1:
        raise DataError(f"{root}: class folders mix 2D images and volumes; keep one kind")
    _check_class_count(classes, root, num_classes)
    volumes = kinds.pop()
    samples = [_read_volume(entry, slice_axis) if volumes else _read_image(entry) for _, entry in entries]
    images = _checked_stack(samples, size, root, [str(entry.relative_to(root)) for _, entry in entries])
    return SampleSet(images, np.array([i for i, _ in entries], dtype=np.int64), classes)


def _checked_stack(samples: list[np.ndarray], size: int | None, where: Path, names: list[str]) -> np.ndarray:
    """:func:`_stack` after refusing NaN/Inf (the message names the sample's file)."""
    check_finite(samples, str(where), names)
    return _stack(samples, size, where)


def load_npz_samples(
    path: Path, size: int | None = None, spatial_dims: int | None = None, num_classes: int | None = None
) -> SampleSet:
    """All splits of an ``.npz`` pooled, channels first (:func:`crossd.data.load_npz` reads the layout):
    ``(N,H,W)`` -> ``(N,1,H,W)``, ``(N,H,W,3)`` -> ``(N,3,H,W)`` (2D RGBA: alpha dropped), ``(N,D,H,W)`` ->
    ``(N,1,D,H,W)``."""
    data = load_npz(path, spatial_dims, num_classes)
    pooled = data.pooled()
    images = data.layout.channels_first(pooled.images)
    if data.spatial_dims == 2 and images.shape[1] == 4:
        images = images[:, :3]
    if size is not None:
        images = _stack(list(images), size, path)
    bounds = np.cumsum([0] + [len(split.labels) for split in data.splits.values()])
    indices = {name: np.arange(bounds[i], bounds[i + 1]) for i, name in enumerate(data.splits) if name != "all"}
    return SampleSet(images, pooled.labels, [str(c) for c in range(data.num_classes)], indices)


def load_samples(
    path: str | Path,
    size: int | None = None,
    spatial_dims: int | None = None,
    num_classes: int | None = None,
    slice_axis: str = "axial",
) -> SampleSet:
    """Every labelled sample under ``path`` (see the module docstring for the accepted layouts).

    ``spatial_dims`` (2 or 3) settles ambiguous ``.npz`` shapes and must agree with other
    sources; ``num_classes`` fixes the class count (see :mod:`crossd.data.checks`);
    ``slice_axis`` (``axial``, ``coronal`` or ``sagittal``) is the anatomical plane of NIfTI and DICOM volumes
    that becomes the ``(H, W)`` plane (:mod:`crossd.data.orientation`).

    Raises a one-line :class:`~crossd.errors.DataError` for missing
    paths, unreadable files, unknown or ambiguous layouts, NaN/Inf values, labels out of range, label/image
    count mismatches and fewer than two classes.
    """
    path = Path(path)
    check_slice_axis(slice_axis)
    if not path.exists():
        raise DataError(f"data path not found: {path}")
    if path.is_dir():
        csvs = sorted(path.glob("*.csv"))
        if len(csvs) > 1:
            raise DataError(f"{path}: several .csv files ({', '.join(c.name for c in csvs)}); pass one of them")
        samples = (
            load_csv(csvs[0], size, num_classes, slice_axis)
            if csvs
            else load_class_folders(path, size, num_classes, slice_axis)
        )
    elif path.suffix == ".npz":
        if slice_axis != "axial":
            raise SettingsError(
                f"{slice_axis} applies to NIfTI and DICOM volumes; {path} is used as stored", field="slice_axis"
            )
        samples = load_npz_samples(path, size, spatial_dims, num_classes)
    elif path.suffix == ".csv":
        samples = load_csv(path, size, num_classes, slice_axis)
    else:
        raise DataError(f"{path}: expected a .npz file, a path,label .csv, or a folder (of class folders or one .csv)")
    kinds = {2: "2D images", 3: "3D volumes"}
    if spatial_dims is not None and samples.spatial_dims != spatial_dims:
        raise DataError(f"{spatial_dims}, but {path} holds {kinds[samples.spatial_dims]}", field="spatial_dims")
    if len(np.unique(samples.labels)) < 2:
        raise DataError(f"{path}: all samples have the same label; classification needs at least 2 classes")
    return samples
