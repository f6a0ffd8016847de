"""Fault injection: ``crossd pretrain`` killed (SIGKILL) or terminated (SIGTERM) at chosen points, then resumed.

A driver process runs the real CLI with one hook: at a chosen point it writes a marker file and waits, and this
test sends the signal from outside. Points: inside the training of epoch 2, with the temporary file of the epoch-2
checkpoint complete but not yet renamed, and just after that rename (before ``model.safetensors``/``log.csv`` are
derived from it). After a resume, everything must equal an uninterrupted run bit for bit.
"""

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from image_data import write_medmnist_npz
from safetensors.torch import load_file

from crossd.cli import main
from crossd.io import TEMP_PREFIX
from crossd.train import PretrainConfig, load_training_checkpoint, pretrain

EPOCHS = 3
FLAGS = ["--epochs", str(EPOCHS), "-b", "4", "-j", "0", "--train-crop-size", "16", "--val-resize-size", "20"]
FLAGS += ["--val-crop-size", "16", "--quiet"]

DRIVER = """
import os, sys, time
from pathlib import Path

import torch

torch.set_num_threads(1)
import crossd.io
from crossd.cli import main

point, count, marker = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
seen = 0


def pause():
    marker.write_text("paused")
    while True:
        time.sleep(0.05)


if point == "step":  # inside an epoch: the count-th optimizer step
    real_step = torch.optim.AdamW.step

    def step(self, *args, **kwargs):
        global seen
        seen += 1
        if seen == count:
            pause()
        return real_step(self, *args, **kwargs)

    torch.optim.AdamW.step = step
else:  # around the count-th rename of checkpoint.pt into place
    real_replace = os.replace

    def replace(src, dst):
        global seen
        if Path(dst).name == "checkpoint.pt":
            seen += 1
            if seen == count and point == "before-rename":
                pause()
        real_replace(src, dst)
        if Path(dst).name == "checkpoint.pt" and seen == count and point == "after-rename":
            pause()

    crossd.io.os.replace = replace
sys.exit(main(["pretrain", *sys.argv[4:]]))
"""


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Resumes run in this process with one torch thread, like the driver and the reference."""


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_medmnist_npz(tmp_path_factory.mktemp("data") / "tiny.npz", per_split=12)


@pytest.fixture(scope="module")
def reference(data, tmp_path_factory):
    """An uninterrupted run of the same flags (in this process, one thread like the driver)."""
    out = tmp_path_factory.mktemp("reference")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cfg = PretrainConfig(data_path=str(data), output_dir=str(out), epochs=EPOCHS, batch_size=4, workers=0)
        cfg.train_crop_size, cfg.val_resize_size, cfg.val_crop_size, cfg.quiet = 16, 20, 16, True
        pretrain(cfg)
    finally:
        torch.set_num_threads(threads)
    return out


def _interrupt(tmp_path, data, point, count, sig):
    """Run the driver until it pauses at ``point``, send ``sig``; returns (output folder, completed process)."""
    out, marker = tmp_path / "out", tmp_path / "paused"
    (tmp_path / "driver.py").write_text(DRIVER)
    argv = [sys.executable, str(tmp_path / "driver.py"), point, str(count), str(marker)]
    argv += ["--data-path", str(data), "--output-dir", str(out), *FLAGS]
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not marker.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert marker.exists(), process.communicate(timeout=60)
    process.send_signal(sig)
    stdout, stderr = process.communicate(timeout=60)
    return out, subprocess.CompletedProcess(argv, process.returncode, stdout, stderr)


def _resume(data, out, capsys):
    """The same flags plus ``--resume``, in this process (one thread, like the driver)."""
    assert (
        main(
            [
                "pretrain",
                "--data-path",
                str(data),
                "--output-dir",
                str(out),
                *FLAGS,
                "--resume",
                str(out / "checkpoint.pt"),
            ]
        )
        == 0
    )
    assert capsys.readouterr().err == ""


def _temps(out: Path) -> list[str]:
    return sorted(p.name for p in out.glob(f"{TEMP_PREFIX}*"))


def _log(path: Path) -> list[list[str]]:
    """``log.csv`` rows without the timing columns."""
    lines = [line.split(",") for line in path.read_text().splitlines()]
    keep = [i for i, name in enumerate(lines[0]) if name not in ("img/s", "data_wait", "seconds")]
    return [[row[i] for i in keep] for row in lines]


def _assert_same_as_reference(out: Path, reference: Path):
    assert _temps(out) == []
    checkpoint = load_training_checkpoint(out / "checkpoint.pt")
    expected = load_training_checkpoint(reference / "checkpoint.pt")["model"]
    assert checkpoint["epoch"] == EPOCHS
    assert all(torch.equal(checkpoint["model"][k], expected[k]) for k in expected)
    exported = load_file(str(out / "model.safetensors"))
    assert exported.keys() == checkpoint["model"].keys()
    assert all(torch.equal(exported[k], checkpoint["model"][k]) for k in exported)
    assert _log(out / "log.csv") == _log(reference / "log.csv")
    assert [row[0] for row in _log(out / "log.csv")[1:]] == [str(e) for e in range(1, EPOCHS + 1)]
    assert (out / "metrics.json").read_text() == (reference / "metrics.json").read_text()


def test_sigkill_mid_write_leaves_a_temporary_that_the_resume_removes(tmp_path, data, reference, capsys):
    out, killed = _interrupt(tmp_path, data, "before-rename", 2, signal.SIGKILL)
    assert killed.returncode == -signal.SIGKILL
    temps = _temps(out)
    assert len(temps) == 1 and temps[0].startswith(f"{TEMP_PREFIX}checkpoint.pt."), temps
    assert load_training_checkpoint(out / "checkpoint.pt")["epoch"] == 1
    _resume(data, out, capsys)
    _assert_same_as_reference(out, reference)


def test_sigkill_between_checkpoint_and_exports_at_the_final_epoch(tmp_path, data, reference, capsys):
    """checkpoint.pt holds the last epoch; model.safetensors, log.csv and metrics.json lag behind it."""
    out, killed = _interrupt(tmp_path, data, "after-rename", EPOCHS, signal.SIGKILL)
    assert killed.returncode == -signal.SIGKILL
    assert load_training_checkpoint(out / "checkpoint.pt")["epoch"] == EPOCHS
    assert len(_log(out / "log.csv")) == EPOCHS  # header + EPOCHS - 1 rows: the last row lives in the checkpoint
    assert not (out / "metrics.json").exists()
    _resume(data, out, capsys)
    _assert_same_as_reference(out, reference)


@pytest.mark.parametrize("point, count, epochs_done", [("step", 5, 1), ("before-rename", 2, 1), ("after-rename", 2, 2)])
def test_sigterm_is_one_line_with_how_to_resume_and_leaves_no_temporary(
    tmp_path, data, reference, point, count, epochs_done, capsys
):
    out, terminated = _interrupt(tmp_path, data, point, count, signal.SIGTERM)
    assert terminated.returncode == 143, terminated.stderr
    err = terminated.stderr.strip()
    assert "Traceback" not in err and "\n" not in err, err
    assert err.startswith(f"crossd pretrain: interrupted (SIGTERM) after epoch {epochs_done} of {EPOCHS}")
    assert err.endswith(f"resume from {out / 'checkpoint.pt'} with the same settings")
    assert _temps(out) == []
    _resume(data, out, capsys)
    _assert_same_as_reference(out, reference)
