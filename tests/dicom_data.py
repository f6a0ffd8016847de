"""Tiny DICOM slices written by tests: one file per slice, carrying only the tags a test names."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom import uid
from pydicom.dataset import Dataset, FileMetaDataset


def write_slice(path: Path, pixels: np.ndarray, sop_class: str, bits: int = 16, **tags) -> None:
    """Write ``pixels`` as one DICOM file of ``sop_class`` (a ``pydicom.uid`` name such as ``"CTImageStorage"``).

    ``pixels``: (R, C) grey or (R, C, 3) RGB, stored unsigned with ``bits`` (8 or 16) bits; ``tags`` are further
    attributes by keyword (``ImagePositionPatient=[0, 0, 2]``, ``InstanceNumber=3``, ...).
    """
    sop = getattr(uid, sop_class)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = sop, uid.generate_uid()
    meta.TransferSyntaxUID = uid.ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = sop, meta.MediaStorageSOPInstanceUID
    ds.Rows, ds.Columns = pixels.shape[:2]
    colour = pixels.ndim == 3
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = bits, bits, bits - 1, 0
    ds.SamplesPerPixel, ds.PhotometricInterpretation = (3, "RGB") if colour else (1, "MONOCHROME2")
    if colour:
        ds.PlanarConfiguration = 0
    for keyword, value in tags.items():
        setattr(ds, keyword, value)
    ds.PixelData = pixels.astype(np.uint16 if bits == 16 else np.uint8).tobytes()
    ds.save_as(str(path), enforce_file_format=True)
