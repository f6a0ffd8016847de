"""One orientation rule for medical volumes: every NIfTI file and DICOM series becomes ``(C, D, H, W)`` with the
same anatomy at the same voxel, whatever order the file stores it in.

1. The volume is reoriented to RAS+ (``nibabel.as_closest_canonical``): array axes ``(x, y, z)`` increase
   towards the patient's Right, Anterior and Superior. A DICOM series gets its RAS affine from its tags first
   (:func:`dicom_affine`), so both formats go through the same step.
2. ``slice_axis`` picks the plane that becomes the kernel's ``(h, w)`` slice, i.e. the ``d`` axis is its normal;
   ``D`` runs along the RAS+ axis (towards R, A or S), ``H`` and ``W`` are laid out as a radiologist displays that
   plane (``volume[c, d]`` shown with row 0 on top looks like the scanner's viewer):

   ============  ===========================  ==============================  ===============================
   slice_axis    D (index increases towards)  H (row 0 is the ...)            W (column 0 is the ...)
   ============  ===========================  ==============================  ===============================
   ``axial``     superior (RAS ``z``)         most anterior (``y`` reversed)  patient's right (``x`` reversed)
   ``coronal``   anterior (RAS ``y``)         most superior (``z`` reversed)  patient's right (``x`` reversed)
   ``sagittal``  right (RAS ``x``)            most superior (``z`` reversed)  most anterior (``y`` reversed)
   ============  ===========================  ==============================  ===============================

So for ``axial`` (the default) ``volume[c, d, h, w] = ras[c, X-1-w, Y-1-h, d]``: an axial slice looks from the
feet, anterior up, the patient's right on the left of the image -- the layout of a standard axial DICOM slice.

Oblique acquisitions are assigned to the closest axes (no resampling). See ``docs/conventions.md``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from crossd.errors import DataError, SettingsError

SLICE_AXES = {"axial": (2, 1, 0), "coronal": (1, 2, 0), "sagittal": (0, 2, 1)}
"""``slice_axis`` -> the RAS+ axes that become ``(D, H, W)`` (``H`` and ``W`` reversed, see the module doc)."""

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])
"""DICOM's patient axes (x to the Left, y to Posterior, z to Superior) in RAS+ terms."""


def check_slice_axis(slice_axis: str, field: str = "slice_axis") -> None:
    """Raise :class:`~crossd.errors.SettingsError` (naming ``field``) for an unknown slice axis."""
    if slice_axis not in SLICE_AXES:
        raise SettingsError(f"must be one of {tuple(SLICE_AXES)}, got {slice_axis!r}", field=field)


def ras_to_layout(ras: np.ndarray, slice_axis: str = "axial") -> np.ndarray:
    """A RAS+ array ``(X, Y, Z)`` or ``(X, Y, Z, C)`` as ``(C, D, H, W)`` (see the module doc); a view."""
    check_slice_axis(slice_axis)
    if ras.ndim == 3:
        ras = ras[..., None]
    d, h, w = SLICE_AXES[slice_axis]
    return np.transpose(ras, (3, d, h, w))[:, :, ::-1, ::-1]


def oriented(image, slice_axis: str = "axial") -> np.ndarray:
    """A nibabel image (3D, or 4D ``(X, Y, Z, C)`` with channels last) as ``(C, D, H, W)`` float32 in the layout
    of ``slice_axis``: reoriented with ``nibabel.as_closest_canonical``, then :func:`ras_to_layout`."""
    import nibabel as nib

    canonical = nib.as_closest_canonical(image)
    return np.ascontiguousarray(ras_to_layout(np.asarray(canonical.get_fdata(dtype=np.float32)), slice_axis))


def layout_affine(slice_axis: str = "axial", spacing: Sequence[float] = (1.0, 1.0, 1.0)) -> np.ndarray:
    """The 4x4 RAS affine of an array stored in this layout's ``(D, H, W)`` order: writing a ``(D, H, W)`` array
    with it (``nibabel.Nifti1Image(array, layout_affine())``) and reading it back gives the same array.
    ``spacing``: voxel sizes along ``D``, ``H``, ``W`` in mm."""
    check_slice_axis(slice_axis)
    affine = np.eye(4)
    affine[:3, :3] = 0.0
    for axis, (ras_axis, sign) in enumerate(zip(SLICE_AXES[slice_axis], (1.0, -1.0, -1.0), strict=True)):
        affine[ras_axis, axis] = sign * spacing[axis]
    return affine


def dicom_affine(
    first_position: Sequence[float],
    orientation: Sequence[float],
    pixel_spacing: Sequence[float],
    slice_step: Sequence[float],
) -> np.ndarray:
    """The RAS affine of a DICOM series stacked as ``(slice, row, column)``.

    Args:
        first_position: ``ImagePositionPatient`` of the first slice (LPS, mm): the centre of its pixel (0, 0).
        orientation: ``ImageOrientationPatient``: the direction of increasing column index along a row, then of
            increasing row index along a column (LPS direction cosines).
        pixel_spacing: ``PixelSpacing``: (distance between rows, distance between columns) in mm.
        slice_step: LPS vector from one slice's position to the next one's.
    """
    orientation = np.asarray(orientation, float)
    along_row, along_column = orientation[:3], orientation[3:]
    lps = np.eye(4)
    lps[:3, 0] = np.asarray(slice_step, float)
    lps[:3, 1] = along_column * float(pixel_spacing[0])
    lps[:3, 2] = along_row * float(pixel_spacing[1])
    lps[:3, 3] = np.asarray(first_position, float)
    ras = np.eye(4)
    ras[:3] = LPS_TO_RAS @ lps[:3]
    return ras


DEFAULT_ORIENTATION = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
"""``ImageOrientationPatient`` assumed when a series has none: axial slices, rows to the patient's left, columns
to posterior (the usual axial display)."""


def slice_normal(orientation: Sequence[float]) -> np.ndarray:
    """The LPS normal (row direction x column direction) of slices with ``ImageOrientationPatient``."""
    orientation = np.asarray(orientation, float)
    return np.cross(orientation[:3], orientation[3:])


def series_step(positions: np.ndarray, orientation: Sequence[float], where: str) -> np.ndarray:
    """The LPS step between consecutive slices of a sorted series (``positions (S, 3)``, LPS mm): the mean step;
    one unit along the slice normal for a single slice. Raises :class:`~crossd.errors.DataError` when slices
    share a position."""
    if len(positions) < 2:
        return slice_normal(orientation)
    steps = np.diff(positions, axis=0)
    if np.any(np.linalg.norm(steps, axis=1) < 1e-6):
        raise DataError(f"{where}: two DICOM slices share one ImagePositionPatient (several series in one folder?)")
    return steps.mean(0)
