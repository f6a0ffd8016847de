"""Segmentation evaluation: MNI152 GM/WM blocks, NIfTI pair CSVs, protocols, k-fold Dice with UNet3D."""

import json

import numpy as np
import pytest
import torch

from crossd.data.segmentation import (
    SegmentationSet,
    load_segmentation_csv,
    mni152_blocks,
    write_segmentation_csv,
)
from crossd.errors import DataError, SettingsError
from crossd.evaluate.methods import Method
from crossd.evaluate.segmentation import build_segmenter, evaluate_segmentation, prepare_volumes, trainable_parameters
from crossd.evaluate.segmentation_config import SegmentationConfig
from crossd.evaluate.transforms import SampleDataset, intensity_bounds
from crossd.io import save_safetensors
from crossd.models import ModelSpec, create_model


def _checkpoint(path, conv):
    spec = ModelSpec("small_cnn", conv, "rotate", 10)
    save_safetensors(create_model(spec.arch, spec.num_classes, conv).state_dict(), path, spec.metadata())
    return path


@pytest.fixture(scope="module")
def blocks():
    return mni152_blocks(block=16, min_tissue=0.5)


def test_mni152_blocks_hold_grey_and_white_matter(blocks):
    assert blocks.images.shape[1:] == (1, 16, 16, 16) and blocks.labels.shape[1:] == (16, 16, 16)
    assert blocks.classes == ["background", "grey matter", "white matter"]
    assert len(blocks.labels) >= 20 and set(np.unique(blocks.labels)) == {0, 1, 2}
    assert ((blocks.labels > 0).mean(axis=(1, 2, 3)) >= 0.5).all()
    # white matter is brighter than grey matter in a T1 image
    assert blocks.images[:, 0][blocks.labels == 2].mean() > blocks.images[:, 0][blocks.labels == 1].mean() + 0.1


def test_csv_of_nifti_pairs_round_trips(tmp_path, blocks):
    subset = SegmentationSet(blocks.images[:3], blocks.labels[:3], blocks.classes)
    csv_path = write_segmentation_csv(subset, tmp_path)
    loaded = load_segmentation_csv(csv_path)
    assert np.array_equal(loaded.labels, subset.labels) and np.allclose(loaded.images, subset.images)
    assert loaded.classes == ["0", "1", "2"]
    assert load_segmentation_csv(csv_path, size=8).images.shape == (3, 1, 8, 8, 8)
    (tmp_path / "bad.csv").write_text("path,label\nimage_000.nii.gz,1\n")
    with pytest.raises(ValueError, match="'image' and 'label' columns"):
        load_segmentation_csv(tmp_path / "bad.csv")
    with pytest.raises(DataError, match="segmentation CSV not found"):
        load_segmentation_csv(tmp_path / "missing.csv")


def test_protocols_choose_what_trains(tmp_path):
    ckpt = _checkpoint(tmp_path / "crossd.safetensors", "crossd")
    cfg = SegmentationConfig("unused", [("crossd", ckpt)], tmp_path, decoder_channels=(16, 8, 4, 4))
    net, loading = build_segmenter(Method("crossd", "crossd", str(ckpt)), 3, cfg)
    assert loading["source_conv"] == "crossd"
    encoder = {id(p) for p in net.encoder_parameters()}
    frozen = trainable_parameters(net, "linear")
    assert frozen and not any(id(p) in encoder for p in frozen)
    assert not any(p.requires_grad for p in net.encoder_parameters())
    bn = trainable_parameters(net, "bn")
    assert sum(id(p) in encoder for p in bn) == 8  # 4 BatchNorm3d x (weight, bias)
    assert all(p.requires_grad for p in trainable_parameters(net, "finetune"))
    with pytest.raises(ValueError, match="protocol must be one of .* for segmentation"):
        SegmentationConfig("x", [("crossd", ckpt)], tmp_path, protocol="paper").validate()


@pytest.mark.parametrize("init", ["slices", "slices3"])
def test_slice_aggregation_is_refused_in_one_line(tmp_path, init):
    cfg = SegmentationConfig("x", [("acs", "a.pt"), (init, "a.pt")], tmp_path)
    with pytest.raises(SettingsError) as caught:
        cfg.validate()
    assert str(caught.value) == (
        f"methods '{init}' builds no 3D segmentation encoder: slice aggregation gives one label per volume; use one "
        "of crossd, i3d, center, acs, random, 2.5d"
    )


def test_prepare_volumes_scales_repeats_and_normalises_as_classification_does():
    images = np.stack([np.linspace(0, 5, 8), np.linspace(10, 30, 8)]).reshape(2, 1, 2, 2, 2).astype(np.float32)
    out = prepare_volumes(images, "minmax")
    assert out.shape == (2, 3, 2, 2, 2) and torch.equal(out[:, 0], out[:, 2])
    assert out.amin(dim=(1, 2, 3, 4)).tolist() == [0, 0] and out.amax(dim=(1, 2, 3, 4)).tolist() == [1, 1]
    # every channel of a grey volume takes the channel means (0.449, 0.226), exactly as classification's samples
    out = prepare_volumes(images, "imagenet")
    assert torch.equal(out[:, 0], out[:, 1]) and torch.equal(out[:, 0], out[:, 2])
    expected = (torch.linspace(0, 1, 8, dtype=torch.float64) - 0.449) / 0.226
    torch.testing.assert_close(out[1, 0].flatten().double(), expected, rtol=1e-6, atol=1e-6)  # float32 rounding
    bounds = intensity_bounds(images, "per_sample")
    classification = SampleDataset(images, np.zeros(2), bounds, np.arange(2), lambda x: x, "imagenet")
    assert all(torch.equal(classification[i][0], out[i]) for i in range(2))


def test_kfold_dice_for_each_init(tmp_path, blocks):
    crossd = _checkpoint(tmp_path / "crossd.safetensors", "crossd")
    regular = _checkpoint(tmp_path / "regular.safetensors", "regular")
    data = SegmentationSet(blocks.images[:12], blocks.labels[:12], blocks.classes)
    cfg = SegmentationConfig(
        "mni152",
        [("crossd", crossd), ("i3d", regular), ("random", None)],
        tmp_path / "run",
        protocol="frozen",
        folds=2,
        epochs=1,
        batch_size=4,
        arch="small_cnn",
        decoder_channels=(16, 8, 4, 4),
        progress=False,
    )
    results = evaluate_segmentation(cfg, data)
    assert results.complete and results.args["protocol"] == "linear"
    assert [m.method for m in results.methods] == ["crossd", "i3d", "random"]
    for method in results.methods:
        assert len(method.folds) == 2
        for fold in method.folds:
            assert fold.n_train + fold.n_val + fold.n_test == 12 and len(fold.dice) == 2
            assert all(d is None or 0 <= d <= 1 for d in fold.dice)
        assert 0 <= method.mean() <= 1 and "dice_white matter_mean" in method.to_json()
    assert set(results.comparisons) == {"i3d", "random"}
    on_disk = json.loads((tmp_path / "run" / "results.json").read_text())
    assert on_disk == results.to_json()
    table = (tmp_path / "run" / "results.md").read_text()
    assert "| crossd |" in table and "Dice white matter" in table and "Cross-D 3D kernels copied" in table


def test_finetuning_learns_to_segment(tmp_path, blocks):
    """An honest check that the loop trains: grey/white matter Dice well above chance after a few epochs."""
    data = SegmentationSet(blocks.images[:20], blocks.labels[:20], blocks.classes)
    cfg = SegmentationConfig(
        "mni152",
        [("random", None)],
        tmp_path,
        folds=2,
        epochs=8,
        batch_size=2,
        lr=1e-2,
        arch="small_cnn",
        decoder_channels=(32, 16, 16, 16),
        progress=False,
    )
    results = evaluate_segmentation(cfg, data)
    # chance (every tissue voxel called grey matter) is about 0.3; this run reaches about 0.66
    assert results.methods[0].mean() > 0.5


def test_crossd_evaluate_task_segmentation_on_a_nifti_csv(tmp_path, blocks, capsys):
    from crossd.cli import main

    csv_path = write_segmentation_csv(SegmentationSet(blocks.images[:10], blocks.labels[:10], blocks.classes), tmp_path)
    common = ["evaluate", "--task", "segmentation", "--data", str(csv_path), "--init", "random", "--arch", "small_cnn"]
    out_dir = tmp_path / "run"
    argv = [*common, "--folds", "2", "--epochs", "1", "--output-dir", str(out_dir), "--no-progress"]
    assert main(argv) == 0
    assert "random: Dice" in capsys.readouterr().out
    results = json.loads((out_dir / "results.json").read_text())
    assert results["task"] == "segmentation" and len(results["results"][0]["folds"]) == 2
    assert (out_dir / "results.md").is_file()
    assert main([*common, "--protocol", "paper", "--output-dir", str(out_dir)]) == 2
    assert "error: --protocol must be one of" in capsys.readouterr().err


def test_segmentation_resumes_through_the_shared_runner(tmp_path, blocks, monkeypatch):
    from crossd.evaluate.segmentation import Segmentation

    data = SegmentationSet(blocks.images[:12], blocks.labels[:12], blocks.classes)
    kw = dict(folds=2, epochs=1, batch_size=4, arch="small_cnn", decoder_channels=(8, 4, 4, 4), progress=False)
    first = evaluate_segmentation(SegmentationConfig("mni152", [("random", None)], tmp_path, **kw), data)
    (tmp_path / "jobs" / "random" / "r0f0.json").unlink()
    calls = []
    original = Segmentation.run_job
    monkeypatch.setattr(
        Segmentation, "run_job", lambda self, job, *a: calls.append(job.split.fold) or original(self, job, *a)
    )
    again = evaluate_segmentation(SegmentationConfig("mni152", [("random", None)], tmp_path, resume=True, **kw), data)
    assert calls == [0] and again.methods[0].folds == first.methods[0].folds
