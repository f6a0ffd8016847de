"""``crossd pretrain`` defaults that fit the data: crop sizes from the images, workers from the machine."""

import argparse
import os

import numpy as np
from image_data import write_image_folder, write_medmnist_npz

from crossd.commands import pretrain as command
from crossd.train.defaults import RECIPE_SIZES, fit_defaults, image_side


def test_image_side_reads_npz_headers_and_image_folders(tmp_path):
    assert image_side(write_medmnist_npz(tmp_path / "a.npz", size=20)) == 20
    np.savez(tmp_path / "pooled.npz", images=np.zeros((3, 12, 40), np.uint8), labels=np.zeros(3))
    assert image_side(tmp_path / "pooled.npz") == 12  # the smaller side
    assert image_side(write_image_folder(tmp_path / "folder", size=24)) == 24
    assert image_side(tmp_path / "missing") is None


def test_small_images_keep_their_size_and_workers_fit_the_machine(tmp_path):
    fitted = fit_defaults(write_medmnist_npz(tmp_path / "a.npz", size=32))
    assert (fitted.train_crop_size, fitted.val_resize_size, fitted.val_crop_size) == (32, 32, 32)
    assert fitted.workers == min(4, os.cpu_count())
    assert any("images are 32 px" in note for note in fitted.notes)
    assert not any(note.startswith("warning") for note in fitted.notes)


def test_large_images_keep_the_recipe_and_given_values_win(tmp_path):
    big = fit_defaults(write_medmnist_npz(tmp_path / "big.npz", per_split=2, size=300), workers=0)
    assert (big.train_crop_size, big.val_resize_size, big.val_crop_size) == RECIPE_SIZES
    assert big.workers == 0 and not any("workers" in note for note in big.notes)
    given = fit_defaults(write_medmnist_npz(tmp_path / "small.npz", size=32), 224, 256, 224, 1)
    assert (given.train_crop_size, given.workers) == (224, 1)
    assert [n for n in given.notes if n.startswith("warning")] == [
        "warning: --train-crop-size 224 is 7x the 32-px images: mostly interpolated pixels and 49x the compute; "
        "--train-crop-size 32 keeps them as they are"
    ]


def test_the_command_says_at_start_up_what_it_chose(tmp_path, monkeypatch, capsys):
    ran = []
    monkeypatch.setattr(command, "pretrain", ran.append)
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    data = write_medmnist_npz(tmp_path / "a.npz", size=16)
    assert command.run(parser.parse_args(["--data-path", str(data), "--output-dir", str(tmp_path / "o")])) == 0
    assert ran[0].train_crop_size == 16 and ran[0].workers == min(4, os.cpu_count())
    out = capsys.readouterr().out
    assert "[crossd pretrain] images are 16 px: train crop 16, val resize 16, val crop 16" in out
    command.run(parser.parse_args(["--data-path", str(data), "--quiet", "--resume", "--output-dir", "o"]))
    assert capsys.readouterr().out == "" and ran[1].resume == os.path.join("o", "checkpoint.pt")


def test_pretrain_from_python_fits_the_sizes_as_the_command_does(tmp_path, capsys):
    from crossd.train import PretrainConfig, pretrain
    from crossd.train.checkpoint import load_training_checkpoint

    data = write_medmnist_npz(tmp_path / "a.npz", size=16)
    config = PretrainConfig(data_path=str(data), output_dir=str(tmp_path / "o"), epochs=1, batch_size=4, workers=0)
    assert config.train_crop_size is None
    fitted, notes = config.fitted()
    assert (fitted.train_crop_size, fitted.val_resize_size, fitted.val_crop_size, fitted.workers) == (16, 16, 16, 0)
    pretrain(config)
    assert "images are 16 px: train crop 16, val resize 16, val crop 16" in capsys.readouterr().out
    saved = load_training_checkpoint(tmp_path / "o" / "checkpoint.pt")["args"]
    assert (saved["train_crop_size"], saved["val_crop_size"], saved["workers"]) == (16, 16, 0)
