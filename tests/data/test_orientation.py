"""One orientation rule: a marker voxel placed in patient (RAS) space lands on the same (d, h, w) whether the
volume comes as NIfTI (identity, LPS-flipped or axis-permuted affines) or as a DICOM series (axial or coronal
slices, files in shuffled order); the expected positions are worked out by hand from the rule in the docs."""

import nibabel as nib
import numpy as np
import pytest
from dicom_data import write_slice

from crossd.data.orientation import layout_affine
from crossd.data.volumes import load_samples, read_dicom_series, read_nifti
from crossd.errors import SettingsError

X, Y, Z = 5, 6, 7  # RAS grid: x towards the patient's right, y anterior, z superior (1 mm voxels)
MARKER = (1, 4, 2)  # RAS voxel (x, y, z) of the marker
# the rule (docs/conventions.md): D along the RAS axis, H and W reversed
EXPECTED = {
    "axial": (MARKER[2], Y - 1 - MARKER[1], X - 1 - MARKER[0]),
    "coronal": (MARKER[1], Z - 1 - MARKER[2], X - 1 - MARKER[0]),
    "sagittal": (MARKER[0], Z - 1 - MARKER[2], Y - 1 - MARKER[1]),
}
SHAPES = {"axial": (Z, Y, X), "coronal": (Y, Z, X), "sagittal": (X, Z, Y)}


def _ras_volume() -> np.ndarray:
    volume = np.zeros((X, Y, Z), np.float32)
    volume[MARKER] = 100.0
    volume[0, 0, 0] = 7.0  # a second voxel: left, posterior, inferior corner
    return volume


def _affine(columns, origin) -> np.ndarray:
    affine = np.eye(4)
    affine[:3, :3] = np.array(columns, float).T  # column a: the RAS direction of array axis a
    affine[:3, 3] = origin
    return affine


def _nifti_files(folder):
    """The same RAS volume stored three ways: identity (RAS), LPS-flipped (as a DICOM converter writes it), and
    axes permuted to (z, x, y) with x flipped."""
    ras = _ras_volume()
    files = {
        "ras": (ras, np.eye(4)),
        # array index i -> x = (X-1) - i: stored left-to-right flipped, and likewise y
        "lps": (ras[::-1, ::-1, :], _affine([(-1, 0, 0), (0, -1, 0), (0, 0, 1)], (X - 1, Y - 1, 0))),
        # axes (z, x reversed, y): array[k, i, j] = ras[X-1-i, j, k]
        "permuted": (
            np.transpose(ras[::-1], (2, 0, 1)),
            _affine([(0, 0, 1), (-1, 0, 0), (0, 1, 0)], (X - 1, 0, 0)),
        ),
    }
    paths = {}
    for name, (array, affine) in files.items():
        paths[name] = folder / f"{name}.nii.gz"
        nib.save(nib.Nifti1Image(np.ascontiguousarray(array), affine), str(paths[name]))
    return paths


def _dicom_slice(path, pixels, position, orientation, instance):
    write_slice(
        path,
        pixels,
        "MRImageStorage",
        ImagePositionPatient=list(position),
        ImageOrientationPatient=list(orientation),
        PixelSpacing=[1, 1],
        InstanceNumber=instance,
    )


def _dicom_series(folder, acquisition: str, seed: int = 0):
    """The RAS volume as DICOM slices (patient coordinates LPS: x_lps = -x, y_lps = -y, z_lps = z), written in a
    shuffled file order with shuffled instance numbers.

    axial: slice z, pixel (row i, column j) at RAS (X-1-j, Y-1-i, z); rows along +y_lps (posterior), columns
    along +x_lps (left). coronal: slice y, pixel (i, j) at RAS (X-1-j, y, Z-1-i); columns along +x_lps, rows
    along -z (inferior)."""
    ras = _ras_volume()
    folder.mkdir()
    if acquisition == "axial":
        orientation = (1, 0, 0, 0, 1, 0)
        slices = [(ras[::-1, ::-1, z].T, (-(X - 1), -(Y - 1), z)) for z in range(Z)]
    else:
        orientation = (1, 0, 0, 0, 0, -1)
        slices = [(ras[::-1, y, ::-1].T, (-(X - 1), -y, Z - 1)) for y in range(Y)]
    order = np.random.default_rng(seed).permutation(len(slices))
    for file_index, slice_index in enumerate(order):
        pixels, position = slices[slice_index]
        _dicom_slice(folder / f"{file_index}.dcm", pixels, position, orientation, instance=int(order[-file_index]))
    return folder


@pytest.mark.parametrize("slice_axis", ["axial", "coronal", "sagittal"])
def test_nifti_and_dicom_put_the_marker_on_the_same_voxel(tmp_path, slice_axis):
    volumes = {name: read_nifti(path, slice_axis) for name, path in _nifti_files(tmp_path).items()}
    for acquisition in ("axial", "coronal"):
        folder = _dicom_series(tmp_path / acquisition, acquisition)
        volumes[f"dicom_{acquisition}"] = read_dicom_series(folder, slice_axis)
    for name, volume in volumes.items():
        assert volume.shape == (1, *SHAPES[slice_axis]) and volume.dtype == np.float32, name
        assert np.unravel_index(volume[0].argmax(), volume[0].shape) == EXPECTED[slice_axis], name
        assert volume.sum() == 107.0, name
    corner = {"axial": (0, Y - 1, X - 1), "coronal": (0, Z - 1, X - 1), "sagittal": (0, Z - 1, Y - 1)}[slice_axis]
    assert volumes["ras"][(0, *corner)] == 7.0  # left-posterior-inferior: last row, last column, first slice


def test_axial_slices_display_radiologically(tmp_path):
    """Row 0 is anterior, column 0 the patient's right, d grows upwards: the DICOM axial pixel layout."""
    ras = np.zeros((X, Y, Z), np.float32)
    ras[X - 1, :, :] += 1  # the patient's right side
    ras[:, Y - 1, :] += 10  # the front
    ras[:, :, Z - 1] += 100  # the top
    nib.save(nib.Nifti1Image(ras, np.eye(4)), str(tmp_path / "v.nii"))
    volume = read_nifti(tmp_path / "v.nii")[0]
    assert volume[:, :, 0].min() >= 1 and volume[:, 0, :].min() >= 10 and volume[Z - 1].min() >= 100
    assert volume[0, Y - 1, X - 1] == 0


@pytest.mark.parametrize("slice_axis", ["axial", "coronal", "sagittal"])
def test_layout_affine_round_trips(tmp_path, slice_axis):
    array = np.random.default_rng(1).random((3, 4, 5)).astype(np.float32)
    nib.save(nib.Nifti1Image(array, layout_affine(slice_axis, (2.0, 1.0, 0.5))), str(tmp_path / "v.nii"))
    np.testing.assert_array_equal(read_nifti(tmp_path / "v.nii", slice_axis)[0], array)


def test_multichannel_nifti_becomes_channels(tmp_path):
    ras = np.stack([_ras_volume(), 2 * _ras_volume()], -1)  # (X, Y, Z, 2)
    lps = np.ascontiguousarray(ras[::-1, ::-1])
    nib.save(
        nib.Nifti1Image(lps, _affine([(-1, 0, 0), (0, -1, 0), (0, 0, 1)], (X - 1, Y - 1, 0))), str(tmp_path / "c.nii")
    )
    nib.save(nib.Nifti1Image(ras[:, :, :, None, :], np.eye(4)), str(tmp_path / "vector.nii"))  # (X, Y, Z, 1, C)
    for name in ("c.nii", "vector.nii"):
        volume = read_nifti(tmp_path / name)
        assert volume.shape == (2, Z, Y, X)
        assert volume[(0, *EXPECTED["axial"])] == 100 and volume[(1, *EXPECTED["axial"])] == 200
    (tmp_path / "data.csv").write_text("c.nii,0\nvector.nii,1\n")
    assert load_samples(tmp_path / "data.csv").images.shape == (2, 2, Z, Y, X)
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4, 2, 2), np.float32), np.eye(4)), str(tmp_path / "bad.nii"))
    with pytest.raises(ValueError, match=r"expected a volume .* got shape \(4, 4, 4, 2, 2\)"):
        read_nifti(tmp_path / "bad.nii")


def test_slice_axis_is_checked(tmp_path):
    paths = _nifti_files(tmp_path)
    with pytest.raises(SettingsError, match="slice_axis must be one of") as info:
        read_nifti(paths["ras"], "transverse")
    assert info.value.field == "slice_axis"
    np.savez(tmp_path / "a.npz", images=np.zeros((4, 8, 8, 8)), labels=np.arange(4) % 2)
    with pytest.raises(SettingsError, match="slice_axis coronal applies to NIfTI and DICOM"):
        load_samples(tmp_path / "a.npz", slice_axis="coronal")


def test_dicom_series_with_a_repeated_position_is_refused(tmp_path):
    folder = _dicom_series(tmp_path / "s", "axial")
    _dicom_slice(folder / "extra.dcm", np.zeros((Y, X)), (-(X - 1), -(Y - 1), 0), (1, 0, 0, 0, 1, 0), 99)
    with pytest.raises(ValueError, match="share one ImagePositionPatient"):
        read_dicom_series(folder)


def _bare_slice(path, pixels, instance, position=None):
    """A slice without orientation tags (and without a position unless given); RGB when ``pixels`` is (R, C, 3)."""
    tags = {} if position is None else {"ImagePositionPatient": list(position)}
    write_slice(path, pixels, "SecondaryCaptureImageStorage", bits=8, InstanceNumber=instance, **tags)


def test_dicom_without_tags_is_axial_in_instance_order_and_rgb_gives_channels(tmp_path):
    grey = tmp_path / "grey"
    grey.mkdir()
    pixels = np.arange(12).reshape(3, 4)
    for file_index, instance in enumerate((3, 1, 2)):
        _bare_slice(grey / f"{file_index}.dcm", pixels + 20 * instance, instance)
    volume = read_dicom_series(grey)
    assert volume.shape == (1, 3, 3, 4)
    np.testing.assert_array_equal(volume[0], [pixels + 20 * i for i in (1, 2, 3)])  # rows and columns as stored
    colour = tmp_path / "colour"
    colour.mkdir()
    rgb = np.stack([pixels, pixels + 100, pixels + 200], -1)  # (3, 4, 3): channel c holds pixels + 100 c
    for z in (1, 0):
        _bare_slice(colour / f"{z}.dcm", rgb + z, instance=5, position=(0, 0, z))
    volume = read_dicom_series(colour)
    assert volume.shape == (3, 2, 3, 4)
    for c in range(3):
        np.testing.assert_array_equal(volume[c], [pixels + 100 * c + z for z in (0, 1)])
