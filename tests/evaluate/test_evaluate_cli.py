"""`crossd evaluate` from the command line: a full run, and one-line errors for bad input."""

import json

import nibabel as nib
import numpy as np
import pytest

from crossd.cli import main
from crossd.commands.evaluate import add_arguments, parse_methods, segmentation_config_from_args


def _evaluate(tmp_path, *argv):
    return main(
        [
            "evaluate",
            "--output-dir",
            str(tmp_path / "out"),
            "--folds",
            "2",
            "--repeats",
            "1",
            "--epochs",
            "1",
            "--no-progress",
            *map(str, argv),
        ]
    )


def test_cli_runs_methods_with_their_own_checkpoints(data_dir, tmp_path, capsys):
    code = _evaluate(
        tmp_path,
        "--data",
        data_dir / "vol.npz",
        "--checkpoint",
        data_dir / "crossd.safetensors",
        "--init",
        "crossd",
        f"acs={data_dir / 'regular.safetensors'}",
        "--protocol",
        "linear",
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "crossd: accuracy" in out and "acs: accuracy" in out and "results.md" in out


def test_parse_methods():
    assert parse_methods(["crossd", "acs=r.pt", "random"], "c.pt") == [
        ("crossd", "c.pt"),
        ("acs", "r.pt"),
        ("random", "c.pt"),
    ]
    with pytest.raises(ValueError, match="no checkpoint after"):
        parse_methods(["acs="], None)


def _error(capsys):
    err = capsys.readouterr().err.strip()
    assert err.startswith("crossd evaluate: error: ") and "\n" not in err
    return err


@pytest.mark.parametrize(
    "case, message",
    [
        ("unknown_keys", "expected keys 'images'/'labels'"),
        ("count_mismatch", "30 images in 'images' but 24 labels"),
        ("regular2d_3d", "--init 'regular2d' runs the plain 2D network on 2D data"),
        ("acs_2d", "--init 'acs' builds a 3D model, but the data holds 2D images"),
        ("crossd_regular_ckpt", "needs a Cross-D checkpoint"),
        ("missing_data", "--data "),
        ("missing_checkpoint", "--init acs="),
        ("no_checkpoint", "--init 'i3d' needs a 2D checkpoint to transfer"),
        ("bad_nifti", "not a readable NIfTI file"),
        ("bad_device", "--device 'gpu0' is not a device"),
        ("slices_2d", "--init 'slices' runs the 2D network on the slices of 3D volumes, but the data holds 2D images"),
        (
            "slices_segmentation",
            "--init 'slices3' builds no 3D segmentation encoder: slice aggregation gives one label per volume",
        ),
        ("mixed_shapes", "--size is needed: samples differ in shape ((1, 6, 5, 4) vs (1, 8, 8, 8))"),
        ("no_official_split", "--split official needs a MedMNIST .npz with a test split"),
    ],
)
def test_bad_input_gives_one_line_errors(data_dir, tmp_path, capsys, case, message):
    vol, img = data_dir / "vol.npz", data_dir / "img.npz"
    regular = data_dir / "regular.safetensors"
    if case == "unknown_keys":
        np.savez(tmp_path / "x.npz", volumes=np.zeros((4, 8, 8, 8)), y=np.zeros(4))
        argv = ["--data", tmp_path / "x.npz", "--init", "random"]
    elif case == "count_mismatch":
        np.savez(tmp_path / "x.npz", images=np.zeros((30, 8, 8, 8)), labels=np.zeros(24))
        argv = ["--data", tmp_path / "x.npz", "--init", "random"]
    elif case == "regular2d_3d":
        argv = ["--data", vol, "--init", f"regular2d={regular}"]
    elif case == "acs_2d":
        argv = ["--data", img, "--init", f"acs={regular}"]
    elif case == "crossd_regular_ckpt":
        argv = ["--data", vol, "--init", f"crossd={regular}"]
    elif case == "missing_data":
        argv = ["--data", tmp_path / "nope.npz", "--init", "random"]
    elif case == "missing_checkpoint":
        argv = ["--data", vol, "--init", f"acs={tmp_path / 'nope.pt'}"]
    elif case == "no_checkpoint":
        argv = ["--data", vol, "--init", "i3d"]
    elif case == "bad_device":
        argv = ["--data", vol, "--init", "random", "--device", "gpu0"]
    elif case == "slices_2d":
        argv = ["--data", img, "--init", f"slices={regular}"]
    elif case == "slices_segmentation":
        argv = ["--task", "segmentation", "--data", "mni152", "--init", "acs", "slices3", "--checkpoint", regular]
    elif case == "mixed_shapes":
        for name, shape in (("a", (4, 5, 6)), ("b", (8, 8, 8))):
            nib.save(nib.Nifti1Image(np.zeros(shape, np.float32), np.eye(4)), str(tmp_path / f"{name}.nii.gz"))
        (tmp_path / "labels.csv").write_text("path,label\na.nii.gz,0\nb.nii.gz,1\n")
        argv = ["--data", tmp_path / "labels.csv", "--init", "random"]
    elif case == "no_official_split":
        argv = ["--data", vol, "--init", "random", "--split", "official"]
    else:
        (tmp_path / "a.nii.gz").write_bytes(b"not a nifti file")
        (tmp_path / "labels.csv").write_text("path,label\na.nii.gz,0\n")
        argv = ["--data", tmp_path / "labels.csv", "--init", "random"]
    assert _evaluate(tmp_path, *argv) == 2
    assert message in _error(capsys)


def test_task_segmentation_dispatches_to_the_segmentation_evaluation(tmp_path, capsys):
    from crossd.data.segmentation import SegmentationSet, write_segmentation_csv

    rng = np.random.default_rng(0)
    labels = (rng.random((10, 8, 8, 8)) > 0.5).astype(np.int64)
    images = (labels + 0.3 * rng.random(labels.shape))[:, None].astype(np.float32)
    csv_path = write_segmentation_csv(SegmentationSet(images, labels, ["background", "tissue"]), tmp_path / "pairs")
    code = _evaluate(tmp_path, "--task", "segmentation", "--data", csv_path, "--init", "random", "--arch", "small_cnn")
    assert code == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "random: Dice" in out and (tmp_path / "out" / "results.md").is_file()


def test_flags_map_to_a_segmentation_config(tmp_path):
    import argparse

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    argv = ["--data", "mni152", "--init", "crossd=a.pt", "random", "--protocol", "linear", "--epochs", "3"]
    cfg = segmentation_config_from_args(parser.parse_args([*argv, "--output-dir", str(tmp_path), "--no-progress"]))
    assert cfg.methods == [("crossd", "a.pt"), ("random", None)]
    assert (cfg.protocol, cfg.epochs, cfg.folds, cfg.progress, cfg.device) == ("linear", 3, 5, False, None)
    cfg = segmentation_config_from_args(
        parser.parse_args([*argv, "--output-dir", str(tmp_path), "--resume", "-j", "2"])
    )
    assert cfg.resume and cfg.num_workers == 2  # from the shared k-fold runner
    for flags, message in [
        (["--recalibrate-bn"], "recalibrate_bn is for classification"),
        (["--split", "official"], "split official is for classification"),
    ]:
        with pytest.raises(ValueError, match=message):
            segmentation_config_from_args(parser.parse_args([*argv, "--output-dir", str(tmp_path), *flags]))


def test_task_segmentation_takes_mni152_as_data_and_refuses_a_missing_file(tmp_path, capsys, monkeypatch):
    import crossd.evaluate.segmentation

    def stop(cfg, shard=None):
        raise SystemExit(f"segmentation of {cfg.data}")

    monkeypatch.setattr(crossd.evaluate.segmentation, "evaluate_segmentation", stop)
    with pytest.raises(SystemExit, match="segmentation of mni152"):
        _evaluate(tmp_path, "--task", "segmentation", "--data", "mni152", "--init", "random")
    assert _evaluate(tmp_path, "--task", "segmentation", "--data", tmp_path / "nope.csv", "--init", "random") == 2
    assert "--data " in _error(capsys)


def test_bad_data_is_refused_before_any_fold_and_spatial_dims_settles_a_layout(tmp_path, capsys):
    rng = np.random.default_rng(0)
    labels = np.arange(24) % 2
    np.savez(tmp_path / "amb.npz", images=(rng.random((24, 16, 16, 1)) * 255).astype(np.uint8), labels=labels)
    volumes = rng.random((24, 8, 8, 8)).astype(np.float32)
    volumes[3, 1, 1, 1] = np.inf
    np.savez(tmp_path / "inf.npz", images=volumes, labels=labels)
    for name, message in [("amb", "error: --spatial-dims "), ("inf", "sample 3 holds")]:
        assert _evaluate(tmp_path, "--data", tmp_path / f"{name}.npz", "--init", "random") == 2
        assert message in _error(capsys)
        assert not (tmp_path / "out" / "jobs").exists()
    argv = ["--data", tmp_path / "amb.npz", "--init", "random", "--arch", "small_cnn", "--spatial-dims", "2"]
    assert _evaluate(tmp_path, *argv) == 0
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["data"]["spatial_dims"] == 2 and results["args"]["spatial_dims"] == 2
