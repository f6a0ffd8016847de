"""``--resume`` with other settings: refused in one line unless ``--allow-changed``, which then really uses them;
a non-finite loss stops the run and keeps the last good checkpoint."""

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from crossd.cli import main
from crossd.train import load_training_checkpoint, pretrain
from crossd.train.engine import NonFiniteLossError


@pytest.fixture
def first_epoch(tiny_config):
    """A finished one-epoch run (AdamW, lr 1e-3, batch 4, seed 0); returns its config."""
    cfg = tiny_config(quiet=True)
    pretrain(cfg)
    return cfg


def _resume(cfg, **changes):
    from dataclasses import replace

    return replace(cfg, resume=str(Path(cfg.output_dir) / "checkpoint.pt"), **changes)


def test_changed_settings_are_listed_in_one_line_and_nothing_is_touched(first_epoch):
    out = Path(first_epoch.output_dir)
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    with pytest.raises(ValueError) as info:
        pretrain(_resume(first_epoch, epochs=2, lr=0.01, batch_size=2, seed=1, opt="sgd"))
    message = str(info.value)
    assert "\n" not in message
    for change in ("lr 0.001 -> 0.01", "batch_size 4 -> 2", "seed 0 -> 1", "opt adamw -> sgd"):
        assert change in message
    assert message.startswith("resume ")
    assert message.endswith("or allow changed settings (allow_changed) to continue with the new ones")
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before


def test_more_epochs_are_a_faithful_resume_fewer_are_refused(first_epoch):
    pretrain(_resume(first_epoch, epochs=2))
    assert load_training_checkpoint(Path(first_epoch.output_dir) / "checkpoint.pt")["epoch"] == 2
    with pytest.raises(ValueError, match="^epochs 1 is fewer than the 2 the resumed checkpoint did$"):
        pretrain(_resume(first_epoch, epochs=1))


def test_a_cosine_schedule_counts_a_new_epoch_count_as_a_change(tiny_config):
    cfg = tiny_config(quiet=True, lr_scheduler="cosineannealinglr")
    pretrain(cfg)
    with pytest.raises(ValueError, match=r"\(epochs 1 -> 3\)"):
        pretrain(_resume(cfg, epochs=3))


def test_allow_changed_switches_the_optimizer_and_records_what_was_used(first_epoch):
    """Was ``KeyError: 'momentum'``: AdamW state loaded into SGD."""
    pretrain(_resume(first_epoch, epochs=2, opt="sgd", lr=0.05, momentum=0.8, allow_changed=True))
    checkpoint = load_training_checkpoint(Path(first_epoch.output_dir) / "checkpoint.pt")
    assert (checkpoint["args"]["opt"], checkpoint["args"]["lr"]) == ("sgd", 0.05)
    group = checkpoint["optimizer"]["param_groups"][0]
    assert (group["lr"], group["momentum"]) == (0.05, 0.8) and "betas" not in group
    assert all("momentum_buffer" in s for s in checkpoint["optimizer"]["state"].values())


def test_allow_changed_keeps_the_optimizer_state_and_takes_the_new_lr_and_schedule(first_epoch):
    steps_per_epoch = 3  # 12 training images, batch 4
    changed = _resume(first_epoch, epochs=3, lr=0.01, lr_step_size=1, lr_gamma=0.5, allow_changed=True)
    pretrain(changed)
    checkpoint = load_training_checkpoint(Path(first_epoch.output_dir) / "checkpoint.pt")
    assert all(float(s["step"]) == 3 * steps_per_epoch for s in checkpoint["optimizer"]["state"].values())
    lrs = [float(r["lr"]) for r in checkpoint["log"]]
    assert lrs == pytest.approx([1e-3, 0.01 * 0.5, 0.01 * 0.25])  # the new schedule, at the resumed epochs
    assert checkpoint["args"]["lr_step_size"] == 1
    pretrain(_resume(changed, epochs=3))  # the recorded settings are now the ones to repeat


def test_resume_through_the_cli_names_the_flags(first_epoch, capsys):
    argv = ["pretrain", "--data-path", first_epoch.data_path, "--output-dir", first_epoch.output_dir, "--quiet"]
    argv += ["--epochs", "2", "-b", "2", "-j", "0", "--train-crop-size", "16", "--val-resize-size", "20"]
    argv += ["--val-crop-size", "16", "--resume", str(Path(first_epoch.output_dir) / "checkpoint.pt")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "crossd pretrain: error: --resume " in err and "(batch_size 4 -> 2)" in err
    assert main([*argv, "--allow-changed"]) == 0


def test_a_non_finite_loss_stops_the_run_and_keeps_the_last_good_checkpoint(first_epoch):
    out = Path(first_epoch.output_dir)
    before = {name: (out / name).read_bytes() for name in ("checkpoint.pt", "log.csv")}
    diverging = _resume(first_epoch, epochs=2, opt="sgd", lr=1e38, allow_changed=True)
    with pytest.raises(NonFiniteLossError, match=r"non-finite training loss nan in epoch 2; .* \(epoch 1\) is kept"):
        pretrain(diverging)
    assert {name: (out / name).read_bytes() for name in before} == before
    weights, good = load_file(str(out / "model.safetensors")), load_training_checkpoint(out / "checkpoint.pt")["model"]
    assert weights.keys() == good.keys() and all(torch.equal(weights[k], good[k]) for k in good)


def test_a_non_finite_loss_is_one_line_from_the_cli(first_epoch, capsys):
    argv = ["pretrain", "--data-path", first_epoch.data_path, "--output-dir", first_epoch.output_dir, "--quiet"]
    argv += ["--epochs", "2", "-b", "4", "-j", "0", "--train-crop-size", "16", "--val-resize-size", "20"]
    argv += ["--val-crop-size", "16", "--resume", str(Path(first_epoch.output_dir) / "checkpoint.pt")]
    assert main([*argv, "--opt", "sgd", "--lr", "1e38", "--allow-changed"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("crossd pretrain: error: non-finite training loss") and "\n" not in err, err


def test_nan_volumes_for_hybrid_training_are_refused_before_training(tiny_config, tmp_path):
    volumes = np.zeros((6, 8, 8, 8), np.float32)
    volumes[4, 1, 1, 1] = np.nan
    np.savez(tmp_path / "v.npz", train_images=volumes, train_labels=np.arange(6) % 3)
    with pytest.raises(ValueError, match=r"v.npz: 'train_images': sample 4 holds NaN values"):
        pretrain(tiny_config(volumes=str(tmp_path / "v.npz"), volume_batch_size=2))
    assert not (Path(tiny_config().output_dir) / "checkpoint.pt").exists()
