"""Cross-D study options of pretraining: random planes, fresh-kernel inits, and hybrid 2D+3D training."""

import csv
from dataclasses import replace

import numpy as np
import pytest
import torch
from image_data import write_medmnist_npz

from crossd.models import ModelSpec
from crossd.nn.crossd_conv import CrossDConv
from crossd.train import PretrainConfig, pretrain
from crossd.train.hybrid import VolumeBatches
from crossd.train.model import build_model


def _volumes(path, classes=3, n=8, size=8):
    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, (n, size, size, size), dtype=np.uint8)
    np.savez(path, train_images=images, train_labels=(np.arange(n) % classes).reshape(-1, 1))
    return path


def _config(tmp_path, **kwargs):
    data = write_medmnist_npz(tmp_path / "images.npz", size=16)
    defaults = dict(
        data_path=str(data),
        model="small_cnn",
        conv="crossd",
        epochs=1,
        batch_size=4,
        workers=0,
        output_dir=str(tmp_path / "run"),
        train_crop_size=16,
        val_resize_size=16,
        val_crop_size=16,
        device="cpu",
        print_freq=100,
        train_crop_scale=(1.0, 1.0),
    )
    return PretrainConfig(**{**defaults, **kwargs})


def test_hybrid_training_trains_on_volumes_and_logs_their_loss(tmp_path):
    volumes = _volumes(tmp_path / "volumes.npz")
    pretrain(_config(tmp_path, volumes=str(volumes), volume_every=1, volume_batch_size=2))
    with open(tmp_path / "run" / "log.csv") as f:
        row = next(csv.DictReader(f))
    assert np.isfinite(float(row["volume_loss"]))
    hybrid = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["model"]
    pretrain(_config(tmp_path, output_dir=str(tmp_path / "plain")))
    plain = torch.load(tmp_path / "plain" / "checkpoint.pt", weights_only=True)["model"]
    key = "features.0.0.weight"
    assert not torch.allclose(hybrid[key], plain[key]), "3D batches must change the shared 3D kernels"


@pytest.mark.parametrize("volume_init", ["i3d", "acs"])
def test_hybrid_training_of_a_regular_model_trains_its_2d_kernels_on_volumes(tmp_path, volume_init):
    volumes = _volumes(tmp_path / "volumes.npz")
    config = _config(tmp_path, conv="regular", volumes=str(volumes), volume_every=1, volume_batch_size=2)
    pretrain(replace(config, volume_init=volume_init))
    with open(tmp_path / "run" / "log.csv") as f:
        assert np.isfinite(float(next(csv.DictReader(f))["volume_loss"]))
    hybrid = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["model"]
    pretrain(_config(tmp_path, conv="regular", output_dir=str(tmp_path / "plain")))
    plain = torch.load(tmp_path / "plain" / "checkpoint.pt", weights_only=True)["model"]
    key = "features.0.0.weight"
    assert hybrid[key].dim() == 4
    assert not torch.allclose(hybrid[key], plain[key]), "3D batches must change the shared 2D kernels"


def test_symmetric_kl_is_zero_for_equal_predictions_and_matches_scipy():
    from scipy.stats import entropy

    from crossd.train.engine import symmetric_kl

    a, b = torch.randn(4, 3, dtype=torch.float64), torch.randn(4, 3, dtype=torch.float64)
    assert float(symmetric_kl(a, a)) == pytest.approx(0.0, abs=1e-12)
    p, q = a.softmax(1).numpy(), b.softmax(1).numpy()
    expected = np.mean([(entropy(p[i], q[i]) + entropy(q[i], p[i])) / 2 for i in range(4)])
    assert float(symmetric_kl(a, b)) == pytest.approx(expected, rel=1e-6)  # float32 inside: 1e-6 relative


def test_consistency_training_runs_two_slicings_per_batch(tmp_path, monkeypatch):
    from crossd.train import engine

    seen = []
    original = engine.symmetric_kl
    monkeypatch.setattr(engine, "symmetric_kl", lambda a, b: seen.append(torch.equal(a, b)) or original(a, b))
    pretrain(_config(tmp_path, plane_sampling="random", consistency=1.0))
    assert seen and not any(seen), "the two passes must slice differently"


def test_volume_batches_read_a_nifti_csv_resized_to_one_size(tmp_path):
    import nibabel as nib

    rows = ["path,label"]
    for i, shape in enumerate([(6, 6, 6), (8, 7, 6), (6, 6, 6), (5, 6, 7)]):
        nib.save(
            nib.Nifti1Image(np.random.default_rng(i).random(shape).astype(np.float32), np.eye(4)),
            tmp_path / f"{i}.nii.gz",
        )
        rows.append(f"{i}.nii.gz,{'ab'[i % 2]}")
    (tmp_path / "volumes.csv").write_text("\n".join(rows) + "\n")
    batches = VolumeBatches(tmp_path / "volumes.csv", 2, seed=0, num_classes=2, device=torch.device("cpu"), size=6)
    volumes, labels = next(batches.epoch(0))
    assert volumes.shape == (2, 3, 6, 6, 6) and set(labels.tolist()) <= {0, 1}
    with pytest.raises(ValueError, match="^volume_size is needed: samples differ in shape") as info:
        VolumeBatches(tmp_path / "volumes.csv", 2, seed=0, num_classes=2, device=torch.device("cpu"))
    assert info.value.field == "volume_size"  # the pretraining setting (--volume-size), not evaluate's size
    with pytest.raises(ValueError, match="^volume_slice_axis must be one of"):
        VolumeBatches(tmp_path / "volumes.csv", 2, 0, 2, torch.device("cpu"), size=6, slice_axis="oblique")


def test_volume_batches_are_deterministic_and_check_classes(tmp_path):
    path = _volumes(tmp_path / "v.npz", classes=3)
    batches = VolumeBatches(path, 4, seed=0, num_classes=3, device=torch.device("cpu"))
    first = next(batches.epoch(1))
    again = next(VolumeBatches(path, 4, seed=0, num_classes=3, device=torch.device("cpu")).epoch(1))
    assert first[0].shape == (4, 3, 8, 8, 8)
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    # min-max over the whole array, then the volume normalisation of evaluation (ImageNet's channel means)
    images = np.load(path)["train_images"].astype(np.float64)
    expected = ((images - images.min()) / (images.max() - images.min()) - 0.449) / 0.226
    torch.testing.assert_close(batches.images[:, 0].double(), torch.from_numpy(expected), rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="class-count mismatch"):
        VolumeBatches(path, 4, seed=0, num_classes=2, device=torch.device("cpu"))
    with pytest.raises(ValueError, match="holds 2D images, not 3D volumes"):
        VolumeBatches(write_medmnist_npz(tmp_path / "flat.npz"), 4, 0, 3, torch.device("cpu"))


def test_fresh_kernel_inits_and_plane_sampling():
    spec = ModelSpec("small_cnn", "crossd", "rotate", 3)
    center = build_model(spec, crossd_init="center", plane_sampling="random")
    layers = [m for m in center.modules() if isinstance(m, CrossDConv)]
    assert all(m.plane_sampling == "random" for m in layers)
    weight = layers[0].weight
    assert weight[:, :, [0, 2]].abs().sum() == 0 and weight[:, :, 1].abs().sum() > 0
    assert build_model(spec).features[0][0].weight[:, :, 0].abs().sum() > 0


def test_the_twin_of_a_regular_model_is_acs_unless_asked():
    assert PretrainConfig(conv="regular").twin_init == "acs"
    assert PretrainConfig(conv="regular", volume_init="i3d").twin_init == "i3d"
    assert PretrainConfig(conv="crossd").twin_init == "crossd"


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(plane_sampling="random", mode="shift"), "plane_sampling 'random' needs"),
        (dict(conv="regular", volumes="v.npz", volume_init="crossd"), "volume_init for a regular model"),
        (dict(volumes="v.npz", volume_init="i3d"), "volume_init for a crossd model"),
        (dict(train_crop_scale=(0.5, 0.2)), "train_crop_scale"),
        (dict(crossd_init="zeros"), "crossd_init"),
        (dict(consistency=1.0), "consistency needs random planes"),
    ],
)
def test_bad_study_settings(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        _config(tmp_path, **kwargs).validate()


def test_two_process_hybrid_steps_equal_one_process_with_the_same_global_batches(tmp_path):
    """2D and 3D batches sharded over 2 gloo processes (DDP for 2D, one all-reduce per 3D step) give the
    parameters and losses of one process that sees the same global batches, to float32 rounding."""
    import torch.multiprocessing as mp
    from hybrid_ranks import hybrid_steps, tiny_crossd_net

    volumes = str(_volumes(tmp_path / "volumes.npz", n=8))
    mp.spawn(hybrid_steps, args=(2, str(tmp_path / "store"), volumes, str(tmp_path / "two.pt")), nprocs=2)
    hybrid_steps(0, 1, "", volumes, str(tmp_path / "one.pt"))
    two, one = (torch.load(tmp_path / f"{n}.pt", weights_only=True) for n in ("two", "one"))
    assert two["loss"] == pytest.approx(one["loss"], rel=1e-5)
    assert two["volume_loss"] == pytest.approx(one["volume_loss"], rel=1e-5)
    start = tiny_crossd_net().state_dict()
    for key, value in one["state"].items():
        assert not torch.equal(value, start[key]), f"{key} was not trained"
        torch.testing.assert_close(two["state"][key], value, rtol=1e-5, atol=1e-6, msg=key)


def test_hybrid_pretraining_runs_under_two_processes_and_resumes(tmp_path):
    """``pretrain`` with ``--volumes`` as two DDP processes (gloo), then resumed for a second epoch."""
    import torch.multiprocessing as mp
    from hybrid_ranks import free_port, pretrain_rank

    config = vars(_config(tmp_path, volumes=str(_volumes(tmp_path / "volumes.npz")), volume_every=1))
    config |= {"volume_batch_size": 2, "quiet": True}
    mp.spawn(pretrain_rank, args=(2, free_port(), config), nprocs=2)
    config |= {"epochs": 2, "resume": str(tmp_path / "run" / "checkpoint.pt")}
    mp.spawn(pretrain_rank, args=(2, free_port(), config), nprocs=2)
    with open(tmp_path / "run" / "log.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert all(np.isfinite(float(r["volume_loss"])) for r in rows)
    assert torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["epoch"] == 2
