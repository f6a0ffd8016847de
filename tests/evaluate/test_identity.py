"""An evaluation is known by what it read: data and checkpoints compared by content on ``--resume`` (never two
weights in one table), one ``.lock`` for shards and merges, and bad labels, folders or checkpoints refused before
any job is computed."""

import json
import os
import socket

import numpy as np
import pytest
import torch

from crossd.cli import main
from crossd.evaluate.classification import Classification
from crossd.io import TEMP_PREFIX, save_safetensors
from crossd.models import ModelSpec, create_model


def write_npz(path, n=24, seed=0):
    """``n`` random 8x8x8 uint8 volumes of 2 classes (brighter with the label), pooled layout."""
    labels = np.arange(n) % 2
    images = np.random.default_rng(seed).random((n, 8, 8, 8)) * 100 + labels[:, None, None, None] * 60
    np.savez(path, images=images.astype(np.uint8), labels=labels)
    return path


def write_checkpoint(path, seed=0):
    """A regular small_cnn (10 classes) as safetensors with crossd metadata; ``seed`` decides its weights."""
    torch.manual_seed(seed)
    spec = ModelSpec("small_cnn", "regular", "rotate", 10)
    save_safetensors(create_model(spec.arch, spec.num_classes).state_dict(), path, spec.metadata())
    return path


@pytest.fixture
def vol(tmp_path):
    return write_npz(tmp_path / "vol.npz")


def _argv(data, out, *init, extra=()):
    return [
        "evaluate", "--data", str(data), "--init", *init, "--arch", "small_cnn", "--folds", "2", "--repeats", "1",
        "--epochs", "1", "-b", "4", "--protocol", "finetune", "--no-progress", "--output-dir", str(out), *extra,
    ]  # fmt: skip


def _error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("crossd evaluate: error: ") and "\n" not in err, err
    return err


def _jobs(out) -> dict:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted((out / "jobs").rglob("*")) if p.is_file()}


@pytest.fixture
def counted(monkeypatch):
    """The number of jobs computed (``run_job`` calls) in this test."""
    calls = []
    real = Classification.run_job
    monkeypatch.setattr(Classification, "run_job", lambda self, *a: calls.append(1) or real(self, *a))
    return calls


def test_a_checkpoint_replaced_under_its_name_is_refused_or_its_jobs_discarded(vol, tmp_path, capsys):
    ckpt, out = write_checkpoint(tmp_path / "c.safetensors"), tmp_path / "out"
    assert main(_argv(vol, out, "random", f"i3d={ckpt}")) == 0
    old = json.loads((out / "results.json").read_text())
    write_checkpoint(ckpt, seed=1)  # another pretraining epoch rewrote the file
    jobs = _jobs(out)
    assert main(_argv(vol, out, "random", f"i3d={ckpt}", extra=["--resume"])) == 2
    err = _error(capsys)
    assert f"was computed from {ckpt} as it was then (" in err and "it holds other content now (" in err
    assert "pass --allow-changed to discard its finished jobs" in err
    assert _jobs(out) == jobs  # nothing lost, nothing mixed
    argv = _argv(vol, out, "random", f"i3d={ckpt}", extra=["--resume", "--allow-changed"])
    assert main(argv) == 0
    assert "discarded 2 finished job(s) of i3d" in capsys.readouterr().err
    new = json.loads((out / "results.json").read_text())
    (old_random, old_i3d), (new_random, new_i3d) = old["results"], new["results"]
    assert new_random["folds"] == old_random["folds"]  # the unchanged method's jobs are kept
    sha = {json.loads(p.read_text())["source"]["sha256"] for p in (out / "jobs" / "i3d").glob("*.json")}
    assert len(sha) == 1 and new_i3d["folds"] != old_i3d["folds"]
    assert not list(out.rglob(f"{TEMP_PREFIX}*"))


def test_the_same_files_under_other_spellings_resume_without_running_again(vol, tmp_path, monkeypatch, counted):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "vol.npz").write_bytes(vol.read_bytes())
    ckpt = write_checkpoint(tmp_path / "d" / "c.safetensors")
    monkeypatch.chdir(tmp_path)
    assert main(_argv("d/vol.npz", "out", "random", "i3d=d/c.safetensors")) == 0
    assert len(counted) == 4
    monkeypatch.chdir(tmp_path / "d")
    argv = _argv("./vol.npz", tmp_path / "out", "random", f"i3d={ckpt}", extra=["--resume"])
    assert main(argv) == 0 and len(counted) == 4  # nothing run again


def test_other_data_under_the_same_name_is_refused_with_both_dates_and_sizes(vol, tmp_path, capsys, counted):
    data, out = write_npz(tmp_path / "v.npz"), tmp_path / "out"
    assert main(_argv(data, out, "random")) == 0
    write_npz(data, n=30, seed=1)
    jobs = _jobs(out)
    assert main(_argv(data, out, "random", extra=["--resume"])) == 2
    err = _error(capsys)
    assert f"--data {data} is not the content recorded (then: " in err and "bytes, modified" in err
    assert "pass --allow-changed to discard the finished jobs" in err and "allow_changed" not in err
    assert _jobs(out) == jobs and len(counted) == 2
    assert main(_argv(data, out, "random", extra=["--resume", "--allow-changed"])) == 0
    assert "discarded 2 finished job(s) of all methods" in capsys.readouterr().err and len(counted) == 4


def test_a_merge_beside_a_running_shard_is_refused_and_shards_share_the_lock(vol, tmp_path, capsys, counted):
    out = tmp_path / "out"
    out.mkdir()
    shard = {"pid": os.getppid(), "host": socket.gethostname(), "since": "now", "shard": [1, 2]}
    (out / ".lock").write_text(json.dumps({"holders": [shard]}))
    assert main(_argv(vol, out, "random")) == 2
    assert "is in use by shard 1/2, pid" in _error(capsys) and len(counted) == 0
    assert main(_argv(vol, out, "random", extra=["--shard", "2/2"])) == 0  # the other shard
    assert json.loads((out / ".lock").read_text())["holders"] == [shard]  # its own entry removed
    assert main(_argv(vol, out, "random", extra=["--shard", "1/2"])) == 2  # the same shard twice
    assert "is in use by shard 1/2" in _error(capsys)


def test_a_temporary_file_is_removed_by_an_immediate_resume(vol, tmp_path):
    out = tmp_path / "out"
    assert main(_argv(vol, out, "random")) == 0
    temp = out / "jobs" / "random" / f"{TEMP_PREFIX}r0f0.json.x1"
    temp.write_text("{half")  # a run killed mid-write a moment ago
    assert main(_argv(vol, out, "random", extra=["--resume"])) == 0
    assert not temp.exists()


def test_other_settings_are_refused_showing_both_values(vol, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(_argv(vol, out, "random")) == 0
    assert main(_argv(vol, out, "random", extra=["--resume", "--epochs", "2"])) == 2
    assert _error(capsys).endswith("cannot resume, settings differ in --epochs (1 -> 2)")


def test_a_label_too_long_fails_before_any_job(vol, tmp_path, capsys, counted):
    out = tmp_path / "out"
    assert main(_argv(vol, out, "random", "random+" + "x" * 300)) == 2
    err = _error(capsys)
    assert err.startswith("crossd evaluate: error: --init ") and "longer than the file system allows" in err
    assert counted == []


def test_an_unwritable_jobs_folder_fails_before_any_job(vol, tmp_path, capsys, counted):
    out = tmp_path / "out"
    (out / "jobs").mkdir(parents=True)
    (out / "jobs" / "i3d").write_text("a file where the job folder belongs")  # like a read-only folder for root
    regular = write_checkpoint(tmp_path / "c.safetensors")
    assert main(_argv(vol, out, "random", f"i3d={regular}")) == 2
    assert "--init " in _error(capsys) and counted == [] and not list((out / "jobs").rglob("*.json"))


def test_a_missing_init_checkpoint_names_init(vol, tmp_path, capsys):
    assert main(_argv(vol, tmp_path / "out", "crossd=nope.pt")) == 2
    assert _error(capsys).endswith("error: --init crossd=nope.pt: no such file or folder")


def test_a_malicious_pickle_is_refused_naming_its_global_and_never_run(vol, tmp_path, capsys):
    marker = tmp_path / "executed"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"model": Evil()}, tmp_path / "evil.pt")
    assert main(_argv(vol, tmp_path / "out", f"i3d={tmp_path / 'evil.pt'}")) == 2
    err = _error(capsys)
    assert "refused to unpickle: posix.system" in err and "weights_only=False" not in err
    assert not marker.exists()


def test_an_empty_dataset_says_so(tmp_path, capsys):
    np.savez(tmp_path / "e.npz", images=np.zeros((0, 8, 8, 8), np.uint8), labels=np.zeros((0,), np.int64))
    assert main(_argv(tmp_path / "e.npz", tmp_path / "out", "random")) == 2
    assert "e.npz: holds no samples" in _error(capsys)


def test_a_checkpoint_with_nan_weights_is_refused_before_any_job(vol, tmp_path, capsys, counted):
    from safetensors.torch import load_file, save_file

    ckpt = write_checkpoint(tmp_path / "c.safetensors")
    state = load_file(ckpt)
    first = next(k for k, v in state.items() if v.is_floating_point())
    save_file({k: v * float("nan") if v.is_floating_point() else v for k, v in state.items()}, ckpt)
    assert main(_argv(vol, tmp_path / "out", f"i3d={ckpt}")) == 2
    assert f"{ckpt}: tensor {first} holds NaN/Inf" in _error(capsys) and counted == []
