"""``crossd pretrain`` flags and its bad-input behaviour: one line, exit code 2, nothing written deleted."""

import argparse
import os

import numpy as np
import pytest
import torch
from image_data import write_image_folder

from crossd.cli import main
from crossd.commands import pretrain as command
from crossd.errors import SettingsError
from crossd.models import ModelSpec
from crossd.nn import CrossDConv
from crossd.train import PretrainConfig
from crossd.train.model import build_model

TINY_FLAGS = ["--epochs", "1", "-b", "4", "-j", "0", "--train-crop-size", "16", "--val-resize-size", "20"]
TINY_FLAGS += ["--val-crop-size", "16"]


def _parse(argv):
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    return command.config_from_args(parser.parse_args(argv))


def test_flags_map_to_the_config():
    cfg = _parse(["--data-path", "d", "--rot", "--wd", "0.05", "--lr-scheduler", "cosineannealinglr", "--sync-bn"])
    assert cfg.conv == "crossd" and cfg.weight_decay == 0.05 and cfg.sync_bn
    assert cfg.lr_scheduler == "cosineannealinglr"
    defaults = _parse(["--data-path", "d"])
    # the paper's recipe: AdamW 1e-3, wd 0.01, StepLR 30/0.1, 90 (workers fit the machine: crossd.train.defaults)
    assert defaults == PretrainConfig(data_path="d", workers=min(4, os.cpu_count()))
    assert (defaults.opt, defaults.lr, defaults.weight_decay, defaults.epochs) == ("adamw", 1e-3, 0.01, 90)


def _corrupt_checkpoint(tmp_path):
    write_image_folder(tmp_path / "data", classes=2, per_class=2)
    (tmp_path / "bad.pt").write_bytes(b"\x80\x04 not a zip")
    return ["--data-path", str(tmp_path / "data"), "--resume", str(tmp_path / "bad.pt")]


def _npz_without_keys(tmp_path):
    np.savez(tmp_path / "x.npz", pixels=np.zeros((2, 4, 4)))
    return ["--data-path", str(tmp_path / "x.npz")]


def _one_class(tmp_path):
    write_image_folder(tmp_path / "data", classes=1, per_class=2)
    return ["--data-path", str(tmp_path / "data")]


def _empty_folder(tmp_path):
    (tmp_path / "data").mkdir()
    return ["--data-path", str(tmp_path / "data")]


def _other_model(tmp_path):
    write_image_folder(tmp_path / "data", classes=2, per_class=2)
    torch.save({"model": {}, "optimizer": {}, "lr_scheduler": {}, "epoch": 1, "rng": [],
                "arch": {"arch": "resnet50", "conv": "regular", "mode": "rotate", "num_classes": 2}},
               tmp_path / "other.pt")  # fmt: skip
    return ["--data-path", str(tmp_path / "data"), "--resume", str(tmp_path / "other.pt")]


@pytest.mark.parametrize("workers", ["0", "1"])
def test_a_corrupt_image_met_in_training_is_one_line_and_keeps_earlier_files(tmp_path, capsys, workers):
    write_image_folder(tmp_path / "data", classes=2, per_class=2)
    bad = next((tmp_path / "data" / "train").rglob("*.png"))
    bad.write_bytes(bad.read_bytes()[:40])  # truncated
    out = tmp_path / "out"
    out.mkdir()
    (out / "log.csv").write_text("earlier run\n")
    assert (
        main(["pretrain", "--data-path", str(tmp_path / "data"), "--output-dir", str(out), *TINY_FLAGS, "-j", workers])
        == 2
    )
    err = capsys.readouterr().err.strip()
    assert err.startswith("crossd pretrain: error: ") and "\n" not in err, err  # workers "1": re-raised by torch
    assert f"{bad}: not a readable image" in err and "Traceback" not in err
    assert (out / "log.csv").read_text() == "earlier run\n"


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda tmp_path: ["--data-path", str(tmp_path / "nowhere")], "--data-path "),
        (_empty_folder, "image folder not found"),
        (_one_class, "at least 2"),
        (_npz_without_keys, "expected keys"),
        (_other_model, "is a regular resnet50 with 2 classes but this run builds a regular resnet18"),
        (_corrupt_checkpoint, "corrupt or unreadable checkpoint"),
    ],
    ids=["missing", "empty", "one-class", "npz-keys", "other-model", "corrupt-checkpoint"],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, make, message):
    out = tmp_path / "out"
    out.mkdir()
    (out / "log.csv").write_text("earlier run\n")
    argv = ["pretrain", *make(tmp_path), "--output-dir", str(out), *TINY_FLAGS]
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("crossd pretrain: error: ") and message in err and "\n" not in err, err
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


def test_granularity_flag_sets_every_crossd_layer(tmp_path, monkeypatch):
    from crossd.nn import CrossDConv
    from crossd.train import loop

    built = []
    monkeypatch.setattr(loop, "build_model", lambda *a, **k: built.append(build_model(*a, **k)) or built[-1])
    write_image_folder(tmp_path / "data", classes=2, per_class=2)
    argv = ["pretrain", "--data-path", str(tmp_path / "data"), "--output-dir", str(tmp_path / "out"), *TINY_FLAGS]
    argv += ["--model", "small_cnn", "--rot", "--mode", "project", "--plane-sampling", "grid", "--granularity", "batch"]
    assert main(argv) == 0
    layers = [m for m in built[0].modules() if isinstance(m, CrossDConv)]
    assert layers and all(m.granularity == "batch" and m.plane_sampling == "grid" for m in layers)
    assert _parse(["--data-path", "d", "--rot"]).granularity == "sample"
    with pytest.raises(ValueError, match="granularity 'batch' needs a Cross-D model"):
        _parse(["--data-path", "d", "--granularity", "batch"]).validate()


def test_granularity_flag_takes_a_group_count_and_rejects_bad_values(capsys):
    cfg = _parse(["--data-path", "d", "--rot", "--granularity", "4"])
    assert cfg.granularity == 4
    cfg.validate()
    spec_layers = build_model(ModelSpec("small_cnn", "crossd", "project", 2), granularity=cfg.granularity).modules()
    assert {m.granularity for m in spec_layers if isinstance(m, CrossDConv)} == {4}
    for bad in ("0", "pixel"):
        assert main(["pretrain", "--data-path", "d", "--rot", "--granularity", bad]) == 2
        err = capsys.readouterr().err
        assert "--granularity must be 'sample', 'batch' or a positive integer" in err, err
    with pytest.raises(SettingsError, match="granularity 4 needs a Cross-D model") as exc:
        _parse(["--data-path", "d", "--granularity", "4"]).validate()
    assert exc.value.field == "granularity"
