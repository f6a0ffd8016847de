"""Evaluation sample sources: npz layouts, NIfTI / DICOM / video CSVs, image folders, and their errors."""

import imageio
import nibabel as nib
import numpy as np
import pytest
from dicom_data import write_slice
from PIL import Image

from crossd.data.volumes import load_samples
from crossd.errors import DataError


def _nifti(path, volume):
    nib.save(nib.Nifti1Image(volume.astype(np.float32), np.eye(4)), str(path))


def test_npz_layouts_become_channels_first(tmp_path):
    np.savez(tmp_path / "p.npz", images=np.zeros((6, 4, 5, 7), np.uint8), labels=np.arange(6)[:, None] % 2)
    np.savez(
        tmp_path / "m.npz",
        train_images=np.zeros((4, 9, 9, 3), np.uint8),
        train_labels=np.array([[0], [1], [2], [0]]),
        test_images=np.ones((2, 9, 9, 3), np.uint8),
        test_labels=np.array([[1], [2]]),
    )
    pooled = load_samples(tmp_path / "p.npz")
    assert pooled.images.shape == (6, 1, 4, 5, 7) and pooled.spatial_dims == 3 and pooled.num_classes == 2
    medmnist = load_samples(tmp_path / "m.npz", size=6)
    assert medmnist.images.shape == (6, 3, 6, 6) and medmnist.spatial_dims == 2
    assert medmnist.labels.tolist() == [0, 1, 2, 0, 1, 2]  # train then test, pooled


def test_nifti_csv_resized_with_string_labels(tmp_path):
    (tmp_path / "vols").mkdir()
    rng = np.random.default_rng(0)
    rows = ["path,label"]
    for i, shape in enumerate([(6, 7, 8), (8, 8, 8), (5, 5, 5, 1)]):
        _nifti(tmp_path / "vols" / f"v{i}.nii.gz", rng.random(shape))
        rows.append(f"vols/v{i}.nii.gz,{'tumour' if i % 2 else 'healthy'}")
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    with pytest.raises(DataError, match=r"^size is needed: samples differ in shape") as info:
        load_samples(tmp_path / "labels.csv")
    assert info.value.field == "size"
    samples = load_samples(tmp_path, size=4)  # a folder with one .csv
    assert samples.images.shape == (3, 1, 4, 4, 4) and samples.images.dtype == np.float32
    assert samples.classes == ["healthy", "tumour"] and samples.labels.tolist() == [0, 1, 0]
    same = np.full((4, 4, 4), 2.5)
    _nifti(tmp_path / "vols" / "v0.nii.gz", same)
    assert np.allclose(load_samples(tmp_path / "labels.csv", size=4).images[0, 0], same)


def _dicom_slice(path, pixels, z, instance):
    write_slice(
        path,
        pixels,
        "CTImageStorage",
        ImagePositionPatient=[0, 0, z],
        ImageOrientationPatient=[1, 0, 0, 0, 1, 0],
        InstanceNumber=instance,
        RescaleSlope=2,
        RescaleIntercept=-100,
    )


def test_dicom_series_sorted_by_position(tmp_path):
    for series, label in (("a", 0), ("b", 1)):
        folder = tmp_path / series
        folder.mkdir()
        # file names and instance numbers in the wrong order; positions decide
        for i, z in enumerate([2.0, 0.0, 1.0]):
            _dicom_slice(folder / f"{i}.dcm", np.full((4, 5), 10 * z + label), z, instance=3 - i)
    (tmp_path / "series.csv").write_text("a,0\nb,1\n")  # no header
    samples = load_samples(tmp_path / "series.csv")
    assert samples.images.shape == (2, 1, 3, 4, 5)
    depth_values = samples.images[0, 0, :, 0, 0]
    assert depth_values.tolist() == [2 * 0 - 100, 2 * 10 - 100, 2 * 20 - 100]  # sorted, rescaled
    assert samples.images[1, 0, 0, 0, 0] == 2 * 1 - 100


@pytest.mark.parametrize("suffix, kwargs", [(".mp4", {}), (".avi", {"codec": "mjpeg"})])
def test_video_frames_become_depth(tmp_path, suffix, kwargs):
    frames = np.zeros((5, 16, 16, 3), np.uint8)
    frames[:, :, :, :] = (np.arange(5) * 50)[:, None, None, None]
    for i in range(2):
        imageio.mimwrite(tmp_path / f"v{i}{suffix}", frames, fps=5, **kwargs)
    (tmp_path / "videos.csv").write_text(f"path,label\nv0{suffix},0\nv1{suffix},1\n")
    samples = load_samples(tmp_path / "videos.csv")
    assert samples.images.shape == (2, 1, 5, 16, 16) and samples.spatial_dims == 3
    np.testing.assert_allclose(samples.images[0, 0, :, 8, 8], np.arange(5) * 50, atol=8)  # lossy codecs


def test_image_folder_2d(tmp_path):
    for c in ("benign", "malignant"):
        (tmp_path / c).mkdir()
        for i in range(3):
            Image.fromarray(np.full((10 + i, 12), 40 * i, np.uint8)).save(tmp_path / c / f"{i}.png")
    samples = load_samples(tmp_path, size=8)
    assert samples.images.shape == (6, 3, 8, 8) and samples.classes == ["benign", "malignant"]
    assert samples.labels.tolist() == [0, 0, 0, 1, 1, 1]
    _nifti(tmp_path / "benign" / "v.nii.gz", np.zeros((4, 4, 4)))
    with pytest.raises(ValueError, match="mix 2D images and volumes"):
        load_samples(tmp_path, size=8)


def test_class_folders_of_volumes(tmp_path):
    for c, name in enumerate(("ad", "cn")):
        (tmp_path / name).mkdir()
        for i in range(2):
            _nifti(tmp_path / name / f"s{i}.nii.gz", np.full((4, 5, 6), c + i))
    samples = load_samples(tmp_path)
    # (x, y, z) files become (z, y, x): docs/conventions.md, tests/data/test_orientation.py
    assert samples.images.shape == (4, 1, 6, 5, 4) and samples.labels.tolist() == [0, 0, 1, 1]
    assert samples.images[3].max() == 2 and samples.classes == ["ad", "cn"]


@pytest.mark.parametrize(
    "case, error, message",
    [
        ("missing", DataError, "data path not found"),
        ("missing_volume", DataError, "volume not found"),
        ("bad_nifti", ValueError, "not a readable NIfTI file"),
        ("no_label", ValueError, "row 1 has no label"),
        ("one_class", ValueError, "at least 2 classes"),
        ("unknown_type", ValueError, "unsupported volume type"),
        ("bad_video", ValueError, "not a readable video"),
        ("empty_folder", ValueError, "no samples in class sub-folders"),
        ("mismatch", ValueError, "5 images in 'images' but 4 labels"),
    ],
)
def test_errors_are_one_line(tmp_path, case, error, message):
    path = tmp_path / "data.csv"
    if case == "missing_volume":
        path.write_text("gone.nii.gz,0\n")
    elif case == "bad_nifti":
        (tmp_path / "a.nii").write_bytes(b"\x00" * 20)
        path.write_text("a.nii,0\n")
    elif case == "no_label":
        path.write_text("a.nii\n")
    elif case == "one_class":
        _nifti(tmp_path / "a.nii", np.zeros((3, 3, 3)))
        path.write_text("a.nii,1\na.nii,1\n")
    elif case == "unknown_type":
        (tmp_path / "a.txt").write_text("x")
        path.write_text("a.txt,0\n")
    elif case == "bad_video":
        (tmp_path / "a.mp4").write_bytes(b"garbage")
        path.write_text("a.mp4,0\n")
    elif case == "empty_folder":
        path = tmp_path
    elif case == "mismatch":
        path = tmp_path / "x.npz"
        np.savez(path, images=np.zeros((5, 8, 8)), labels=np.zeros(4))
    with pytest.raises(error, match=message) as info:
        load_samples(path)
    assert "\n" not in str(info.value)
