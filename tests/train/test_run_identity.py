"""A pretraining run is known by what it read and owns its folder: the same data under another spelling resumes,
other data under the same name is refused, a checkpoint never continues into another run's folder, two runs
never share one, and bad images or weights stop the run before the first step."""

import json
import os
import socket

import numpy as np
import pytest
import torch
from image_data import write_image_folder, write_medmnist_npz
from PIL import Image

from crossd.cli import main
from crossd.train import load_training_checkpoint

FLAGS = ["--epochs", "1", "-b", "4", "-j", "0", "--train-crop-size", "16", "--val-resize-size", "20"]
FLAGS += ["--val-crop-size", "16", "--model", "small_cnn", "--quiet"]


def _run(data, out, *extra):
    return main(["pretrain", "--data-path", str(data), "--output-dir", str(out), *FLAGS, *extra])


def _error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("crossd pretrain: error: ") and "\n" not in err, err
    return err


def _files(folder):
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


def test_the_same_data_under_another_spelling_resumes(tmp_path, monkeypatch):
    write_medmnist_npz(tmp_path / "d.npz")
    monkeypatch.chdir(tmp_path)
    assert _run("d.npz", "out") == 0
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # another working directory, absolute paths, another spelling of the file
    out = tmp_path / "out"
    assert _run(f"{tmp_path}/./d.npz", out, "--epochs", "2", "--resume", str(out / "checkpoint.pt")) == 0
    assert load_training_checkpoint(out / "checkpoint.pt")["epoch"] == 2


def test_other_data_under_the_same_name_is_refused_unless_allowed(tmp_path, capsys):
    write_medmnist_npz(tmp_path / "d.npz")
    out = tmp_path / "out"
    assert _run(tmp_path / "d.npz", out) == 0
    write_medmnist_npz(tmp_path / "d.npz", per_split=12)  # another file under the same name
    before = _files(out)
    argv = ["--epochs", "2", "--resume", str(out / "checkpoint.pt")]
    assert _run(tmp_path / "d.npz", out, *argv) == 2
    err = _error(capsys)
    assert err.startswith(f"crossd pretrain: error: --resume {out / 'checkpoint.pt'} was trained with other settings")
    assert f"--data-path {tmp_path / 'd.npz'} is not the content recorded (then: " in err
    assert "bytes, modified " in err and "; now: " in err and "or pass --allow-changed to continue" in err
    assert _files(out) == before  # nothing touched, no temporary left
    assert _run(tmp_path / "d.npz", out, *argv, "--allow-changed") == 0
    assert load_training_checkpoint(out / "checkpoint.pt")["epoch"] == 2


def test_a_checkpoint_of_another_run_is_not_resumed_into_a_folder_holding_a_run(tmp_path, capsys):
    write_medmnist_npz(tmp_path / "d.npz")
    assert _run(tmp_path / "d.npz", tmp_path / "a") == 0
    assert _run(tmp_path / "d.npz", tmp_path / "b") == 0
    before = _files(tmp_path / "b")
    argv = ["--epochs", "2", "--resume", str(tmp_path / "a" / "checkpoint.pt")]
    assert _run(tmp_path / "d.npz", tmp_path / "b", *argv) == 2
    assert f"--output-dir {tmp_path / 'b'} holds another run (its checkpoint.pt, epoch 1)" in _error(capsys)
    assert _files(tmp_path / "b") == before
    # a copy of a run resumes into its own folder (same run id), and into an empty one
    (tmp_path / "copy.pt").write_bytes((tmp_path / "a" / "checkpoint.pt").read_bytes())
    assert _run(tmp_path / "d.npz", tmp_path / "a", "--epochs", "2", "--resume", str(tmp_path / "copy.pt")) == 0
    run_id = load_training_checkpoint(tmp_path / "a" / "checkpoint.pt")["run_id"]
    assert _run(tmp_path / "d.npz", tmp_path / "c", "--epochs", "2", "--resume", str(tmp_path / "copy.pt")) == 0
    assert load_training_checkpoint(tmp_path / "c" / "checkpoint.pt")["run_id"] == run_id


def test_a_second_pretraining_on_a_folder_in_use_is_refused_and_a_stale_lock_taken_over(tmp_path, capsys):
    write_medmnist_npz(tmp_path / "d.npz")
    out = tmp_path / "out"
    out.mkdir()
    host = socket.gethostname()
    (out / ".lock").write_text(json.dumps({"holders": [{"pid": os.getppid(), "host": host, "since": "now"}]}))
    assert _run(tmp_path / "d.npz", out) == 2
    assert f"is in use by pid {os.getppid()} on {host} (since now)" in _error(capsys)
    assert sorted(p.name for p in out.iterdir()) == [".lock"]  # nothing written
    dead = max(2**22, os.getpid() + 10**6)  # no such process
    (out / ".lock").write_text(json.dumps({"pid": dead, "host": host, "since": "then"}))  # an older format
    assert _run(tmp_path / "d.npz", out) == 0 and not (out / ".lock").exists()


def test_a_truncated_image_is_refused_before_the_first_step_and_the_check_is_cached(tmp_path, capsys, monkeypatch):
    data = write_image_folder(tmp_path / "data", classes=2, per_class=2)
    bad = data / "train" / "class1" / "1.png"
    bad.write_bytes(bad.read_bytes()[:60])
    out = tmp_path / "out"
    assert _run(data, out) == 2
    assert f"--data-path {bad}: not a readable image" in _error(capsys)
    assert not (out / "checkpoint.pt").exists()  # refused before any step
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(bad)
    assert _run(data, out) == 0
    from crossd.data import image_check

    read = []
    monkeypatch.setattr(image_check, "read_rgb", lambda path: read.append(path))
    assert _run(data, out, "--epochs", "2", "--resume") == 0
    assert read == []  # every file unchanged since the check: nothing read again


def test_a_float_image_holding_nan_is_refused_before_the_first_step(tmp_path, capsys, monkeypatch):
    from crossd.train import loop

    epochs = []
    monkeypatch.setattr(loop, "train_one_epoch", lambda *a, **k: epochs.append(1))
    data = write_image_folder(tmp_path / "data", classes=2, per_class=2)
    pixels = np.ones((16, 16), np.float32)
    pixels[3, 3] = np.nan
    Image.fromarray(pixels).save(data / "val" / "class0" / "nan.tif")
    assert _run(data, tmp_path / "out") == 2
    assert f"{data / 'val' / 'class0' / 'nan.tif'}: sample 0 holds NaN values" in _error(capsys)
    assert not (tmp_path / "out" / "checkpoint.pt").exists() and epochs == []  # no training step


def test_an_image_broken_mid_run_is_named_the_checkpoint_kept_and_the_resume_command_given(tmp_path, capsys):
    from crossd.train import loop

    data = write_image_folder(tmp_path / "data", classes=2, per_class=2)
    bad = data / "train" / "class0" / "0.png"
    real = loop.save_checkpoint

    def save_then_break(output_dir, checkpoint):  # the file is damaged after the check, during epoch 1
        real(output_dir, checkpoint)
        bad.write_bytes(b"not a png")

    loop.save_checkpoint = save_then_break
    try:
        assert _run(data, tmp_path / "out", "--epochs", "2") == 2
    finally:
        loop.save_checkpoint = real
    err = _error(capsys)
    ckpt = tmp_path / "out" / "checkpoint.pt"
    assert f"{bad}: not a readable image" in err
    assert f"training stopped after epoch 1 of 2 (saved in {ckpt}); resume from {ckpt} with the same settings" in err
    assert load_training_checkpoint(ckpt)["epoch"] == 1


def test_a_checkpoint_with_nan_weights_is_refused_by_every_command_that_loads_it(tmp_path, capsys):
    write_medmnist_npz(tmp_path / "d.npz")
    out = tmp_path / "out"
    assert _run(tmp_path / "d.npz", out) == 0
    checkpoint = torch.load(out / "checkpoint.pt", weights_only=True)
    first = next(k for k, v in checkpoint["model"].items() if v.is_floating_point())
    checkpoint["model"] = {k: v * float("nan") if v.is_floating_point() else v for k, v in checkpoint["model"].items()}
    torch.save(checkpoint, tmp_path / "nan.pt")
    expected = f"{tmp_path / 'nan.pt'}: tensor {first} holds NaN/Inf"
    argv = ["--epochs", "2", "--resume", str(tmp_path / "nan.pt")]
    assert _run(tmp_path / "d.npz", tmp_path / "fresh", *argv) == 2
    assert expected in _error(capsys)
    weights = {k: v * float("nan") for k, v in torch.load(out / "checkpoint.pt")["model"].items()}
    torch.save(weights, tmp_path / "nan_state.pt")
    state_first = next(iter(weights))
    assert main(["transfer", str(tmp_path / "nan_state.pt"), "--init", "i3d", "--arch", "small_cnn",
                 "--output", str(tmp_path / "t.safetensors")]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert f"nan_state.pt: tensor {state_first} holds NaN/Inf" in err and not (tmp_path / "t.safetensors").exists()


@pytest.mark.parametrize("where", ["output_dir", "data_path"])
def test_a_name_too_long_is_one_line_naming_the_flag(tmp_path, capsys, where):
    write_medmnist_npz(tmp_path / "d.npz")
    long = tmp_path / ("x" * 300)
    data, out = (tmp_path / "d.npz", long) if where == "output_dir" else (long / "d.npz", tmp_path / "out")
    assert _run(data, out) == 2
    flag = "--" + where.replace("_", "-")
    assert f"{flag} " in (err := _error(capsys)) and ("File name too long" in err or "longer than the file" in err)
