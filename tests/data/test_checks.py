"""Data checks before any training: the layout rule, NaN/Inf, labels in 0..C-1; as functions, through the loaders
(``.npz``, CSV of NIfTI volumes, float TIFFs) and through ``crossd pretrain`` (one line, exit 2, no traceback)."""

import re

import nibabel as nib
import numpy as np
import pytest
from image_data import write_image_folder, write_medmnist_npz
from PIL import Image

from crossd.cli import main
from crossd.data import load_npz
from crossd.data.checks import Layout, check_finite, check_labels, count_classes, infer_layout
from crossd.data.images import read_rgb
from crossd.data.volumes import load_samples
from crossd.errors import CrossdError, DataError

TINY = ["--epochs", "1", "-b", "4", "-j", "0", "--train-crop-size", "16", "--val-resize-size", "20"]
TINY += ["--val-crop-size", "16", "--quiet"]


@pytest.mark.parametrize(
    "shape, layout",
    [
        ((5, 32, 32), Layout(2, None)),
        ((5, 28, 28, 3), Layout(2, -1)),  # MedMNIST RGB
        ((5, 28, 28, 4), Layout(2, -1)),  # RGBA
        ((5, 28, 28, 28), Layout(3, None)),
        ((5, 4, 5, 7), Layout(3, None)),  # tiny volume: no axis is large enough to sit beside a channel
        ((5, 3, 16, 16, 16), Layout(3, 1)),
        ((5, 16, 16, 16, 1), Layout(3, -1)),
    ],
)
def test_layouts_recognised_by_rule(shape, layout):
    assert infer_layout(shape) == layout


@pytest.mark.parametrize("shape", [(5, 32, 32, 1), (5, 1, 32, 32), (5, 3, 32, 32), (5, 4, 16, 16)])
def test_ambiguous_4d_shapes_need_spatial_dims(shape):
    with pytest.raises(DataError, match=r"^spatial_dims x.npz: shape .* is ambiguous .*; give 2 or 3$"):
        infer_layout(shape, source="x.npz")
    channel_axis = 1 if shape[1] < 8 else -1
    assert infer_layout(shape, 2) == Layout(2, channel_axis)
    assert infer_layout(shape, 3) == Layout(3, None)


@pytest.mark.parametrize(
    "shape, spatial_dims, message",
    [
        ((5, 16, 16, 16), 2, r"is not 2D images .*3D volumes \(N, D, H, W\)\?"),
        ((5, 16, 16), 3, "holds 2D images, not 3D volumes"),
        ((5, 16, 16, 16, 16), None, "cannot tell the channel axis"),
        ((5, 2), None, "fit no layout"),
        ((5, 16, 16), 4, "spatial_dims must be 2 or 3"),
    ],
)
def test_shapes_that_fit_no_reading(shape, spatial_dims, message):
    with pytest.raises(CrossdError, match=message):
        infer_layout(shape, spatial_dims)


def test_channels_first_view():
    images = np.arange(2 * 9 * 9 * 3).reshape(2, 9, 9, 3)
    first = Layout(2, -1).channels_first(images)
    assert first.shape == (2, 3, 9, 9) and first[1, 2, 4, 5] == images[1, 4, 5, 2]
    assert Layout(3, None).channels_first(np.zeros((2, 9, 9, 9))).shape == (2, 1, 9, 9, 9)


@pytest.mark.parametrize("bad, kind", [(np.nan, "NaN"), (np.inf, "Inf"), (-np.inf, "Inf")])
def test_check_finite_names_the_first_bad_sample(bad, kind):
    images = np.zeros((6, 4, 4), np.float32)
    images[3, 1, 2] = bad
    images[5, 0, 0] = bad
    with pytest.raises(DataError, match=rf"^f.npz: sample 3 holds {kind} values \(2 non-finite sample\(s\) in all\)$"):
        check_finite(images, "f.npz")
    check_finite(np.zeros((2, 3), np.uint8), "ints are always finite")


def test_labels_must_be_0_to_c_minus_1():
    assert count_classes(np.array([0, 2, 1, 1]), "f") == 3
    with pytest.raises(DataError, match=r"label 7 at index 3 is outside 0..3 \(the 4 distinct labels must be"):
        count_classes(np.array([0, 1, 2, 7, 1]), "f")  # not an 8-class set
    assert count_classes(np.array([0, 1, 2, 7]), "f", num_classes=8) == 8
    with pytest.raises(DataError, match=r"label 3 at index 1 is outside 0..2 \(3 classes\)"):
        check_labels(np.array([0, 3]), 3, "f")
    with pytest.raises(DataError, match="label -1 at index 0"):
        check_labels(np.array([-1, 0]), 3, "f")
    with pytest.raises(DataError, match="label 0.5 at index 1 is not an integer"):
        count_classes(np.array([0.0, 0.5]), "f")
    with pytest.raises(DataError, match="all samples have the same label"):
        count_classes(np.array([0, 0]), "f")


def test_npz_errors_name_the_key(tmp_path):
    path = write_medmnist_npz(tmp_path / "m.npz")
    arrays = dict(np.load(path))
    arrays["val_labels"] = arrays["val_labels"].copy()
    arrays["val_labels"][4] = 7
    np.savez(path, **arrays)
    with pytest.raises(DataError, match=r"m.npz: 'val_labels': label 7 at index 4 is outside 0..3"):
        load_npz(path)
    assert load_npz(path, num_classes=8).num_classes == 8


def test_npz_channel_axis_is_read_by_rule_or_by_spatial_dims(tmp_path):
    images = np.random.default_rng(0).integers(0, 255, (6, 1, 16, 16), dtype=np.uint8)
    np.savez(tmp_path / "c.npz", images=images, labels=np.arange(6) % 2)
    with pytest.raises(DataError, match="ambiguous"):
        load_samples(tmp_path / "c.npz")  # was: evaluated as 3D volumes (1, 16, 16)
    samples = load_samples(tmp_path / "c.npz", spatial_dims=2)
    assert samples.images.shape == (6, 1, 16, 16) and samples.spatial_dims == 2
    assert np.array_equal(samples.images, images)


def test_a_nan_voxel_in_a_nifti_csv_names_the_file(tmp_path):
    rows = []
    for i in range(3):
        volume = np.full((4, 4, 4), float(i), np.float32)
        if i == 2:
            volume[1, 2, 3] = np.nan
        nib.save(nib.Nifti1Image(volume, np.eye(4)), str(tmp_path / f"v{i}.nii.gz"))
        rows.append(f"v{i}.nii.gz,{i % 2}")
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    with pytest.raises(DataError, match=r"labels.csv: sample 2 \(v2.nii.gz\) holds NaN values") as info:
        load_samples(tmp_path / "labels.csv")
    assert "\n" not in str(info.value)


def test_integer_csv_labels_with_a_gap_are_refused(tmp_path):
    for i in range(3):
        nib.save(nib.Nifti1Image(np.zeros((4, 4, 4), np.float32), np.eye(4)), str(tmp_path / f"v{i}.nii"))
    (tmp_path / "labels.csv").write_text("v0.nii,0\nv1.nii,1\nv2.nii,7\n")
    with pytest.raises(DataError, match="label 7 at index 2 is outside 0..2"):
        load_samples(tmp_path / "labels.csv")
    assert load_samples(tmp_path / "labels.csv", num_classes=8).num_classes == 8


def test_a_float_tiff_with_nan_is_refused_not_scaled(tmp_path):
    pixels = np.ones((8, 8), np.float32)
    pixels[2, 2] = np.nan
    Image.fromarray(pixels, mode="F").save(tmp_path / "x.tif")
    with pytest.raises(DataError, match="x.tif: sample 0 holds NaN values"):
        read_rgb(tmp_path / "x.tif")


def _npz(tmp_path, case):
    path = write_medmnist_npz(tmp_path / f"{case}.npz", per_split=12)
    arrays = dict(np.load(path))
    if case in ("nan", "inf"):
        arrays = {k: v.astype(np.float32) if "images" in k else v for k, v in arrays.items()}
        arrays["train_images"][4, 3, 3] = np.nan if case == "nan" else np.inf
    elif case == "label7":
        arrays["train_labels"][5] = 7
    elif case == "volumes":
        arrays["train_images"] = np.zeros((12, 16, 16, 16), np.uint8)
        arrays["val_images"] = np.zeros((12, 16, 16, 16), np.uint8)
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize(
    "case, message",
    [
        ("nan", r"nan.npz: 'train_images': sample 4 holds NaN values"),
        ("inf", r"inf.npz: 'train_images': sample 4 holds Inf values"),
        ("label7", r"label7.npz: 'train_labels': label 7 at index 5 is outside 0..3"),
        ("volumes", r"volumes.npz: 'train_images': shape \(12, 16, 16, 16\) is not 2D images"),
    ],
)
def test_pretrain_refuses_bad_data_in_one_line_before_training(tmp_path, capsys, case, message):
    out = tmp_path / "out"
    assert main(["pretrain", "--data-path", str(_npz(tmp_path, case)), "--output-dir", str(out), *TINY]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("crossd pretrain: error: ") and "\n" not in err and "Traceback" not in err, err
    assert re.search(message, err), err
    assert not (out / "checkpoint.pt").exists()


def test_pretrain_num_classes_flag(tmp_path, capsys):
    data = write_image_folder(tmp_path / "data", classes=2, per_class=2)
    argv = ["pretrain", "--data-path", str(data), "--output-dir", str(tmp_path / "o"), *TINY, "--num-classes", "3"]
    assert main(argv) == 2
    assert "--num-classes 3, but the image folders of " in capsys.readouterr().err
    path = _npz(tmp_path, "label7")
    assert (
        main(["pretrain", "--data-path", str(path), "--output-dir", str(tmp_path / "p"), *TINY, "--num-classes", "8"])
        == 0
    )
