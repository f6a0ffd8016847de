"""Output files: checked up front (every command), written atomically with ordinary permissions, old content
kept when writing fails (a full disk included), recognisable temporaries."""

import errno
import json
import os
import stat
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from crossd.cli import main
from crossd.io import (
    TEMP_PREFIX,
    OutputError,
    atomic_write,
    ensure_writable_dir,
    ensure_writable_file,
    first_missing,
    remove_empty_folders,
    remove_stale_temps,
    save_json,
    save_safetensors,
    save_torch,
)


def test_written_files_get_the_umask_mode(tmp_path):
    path = save_json({"a": 1}, tmp_path / "x.json")
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask
    assert path.read_text() == '{\n  "a": 1\n}\n'


def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = save_json({"old": True}, tmp_path / "x.json")

    def broken(tmp):
        tmp.write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(path, broken)
    assert path.read_text() == '{\n  "old": true\n}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.json"]


def test_ensure_writable_dir_creates_and_leaves_nothing_behind(tmp_path):
    assert ensure_writable_dir(tmp_path / "a" / "b", "output_dir") == tmp_path / "a" / "b"
    assert list((tmp_path / "a" / "b").iterdir()) == []


@pytest.mark.parametrize(
    "where, reason",
    [
        ("file", "is a file, not a folder"),
        ("under_file", r"cannot write there \(Not a directory\)"),
        ("proc", r"cannot write there \("),
    ],
)
def test_unwritable_folders_are_one_line_naming_the_field(tmp_path, where, reason):
    (tmp_path / "f").write_text("in the way")
    path = {"file": tmp_path / "f", "under_file": tmp_path / "f" / "out", "proc": Path("/proc/crossd-out")}[where]
    with pytest.raises(OutputError, match=rf"^output_dir {path}: {reason}") as info:
        ensure_writable_dir(path, "output_dir")
    assert "\n" not in str(info.value)
    assert (tmp_path / "f").read_text() == "in the way"


def test_a_read_only_folder_is_refused(tmp_path, monkeypatch):
    """Root ignores permission bits, so the refusal of the file system is simulated: creating a file raises EACCES."""

    def refuse(*args, **kwargs):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    with pytest.raises(OutputError, match=r"^json .*: cannot write there \(Permission denied\)$"):
        ensure_writable_file(tmp_path / "r.json", "json")


def test_ensure_writable_file_refuses_a_folder(tmp_path):
    with pytest.raises(OutputError, match="is a folder, not a file"):
        ensure_writable_file(tmp_path, "output")
    assert ensure_writable_file(tmp_path / "new" / "x.json", "output").parent.is_dir()


@pytest.mark.parametrize("save", ["json", "torch", "safetensors"])
def test_a_full_disk_is_one_line_and_keeps_the_previous_file(tmp_path, monkeypatch, save):
    path = tmp_path / f"x.{save}"
    write = {
        "json": lambda: save_json({"new": list(range(1000))}, path),
        "torch": lambda: save_torch({"w": torch.ones(1000)}, path),
        "safetensors": lambda: save_safetensors({"w": torch.ones(1000)}, path),
    }[save]
    path.write_bytes(b"previous")
    real_write = os.write

    def full(fd, data):
        real_write(fd, bytes(data[:10]))  # part of it lands, then the disk is full
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "write", full)
    with pytest.raises(OutputError, match=rf"^cannot write {path}: No space left on device; the previous") as info:
        write()
    assert "\n" not in str(info.value)
    assert path.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


def test_safetensors_are_written_without_foreign_temporary_files(tmp_path, monkeypatch):
    seen = []
    real_replace = os.replace
    monkeypatch.setattr(os, "replace", lambda src, dst: seen.append(Path(src).name) or real_replace(src, dst))
    save_safetensors({"w": torch.arange(4.0)}, tmp_path / "m.safetensors", metadata={"arch": "x"})
    assert len(seen) == 1 and seen[0].startswith(f"{TEMP_PREFIX}m.safetensors.")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors"]
    assert torch.equal(load_file(str(tmp_path / "m.safetensors"))["w"], torch.arange(4.0))


def test_remove_stale_temps_removes_only_crossd_temporaries(tmp_path):
    (tmp_path / f"{TEMP_PREFIX}checkpoint.pt.abc").write_bytes(b"half")
    (tmp_path / "checkpoint.pt").write_bytes(b"whole")
    (tmp_path / ".hidden").write_bytes(b"mine")
    assert [p.name for p in remove_stale_temps(tmp_path)] == [f"{TEMP_PREFIX}checkpoint.pt.abc"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".hidden", "checkpoint.pt"]
    assert remove_stale_temps(tmp_path / "missing") == []


@pytest.mark.parametrize(
    "argv, flag",
    [
        (["pretrain", "--data-path", "{data}", "--output-dir", "{blocked}"], "--output-dir"),
        (["evaluate", "--data", "{data}", "--output-dir", "{blocked}"], "--output-dir"),
        (["transfer", "{missing}", "--init", "random", "--arch", "resnet18", "--output", "{blocked}/m.safetensors"],
         "--output"),
        (["viz", "kernel3d", "{missing}", "--output", "{blocked}/k.png"], "--output"),
        (["bench", "--quick", "--json", "{blocked}/b.json"], "--json"),
        (["demo", "--quick", "--output-dir", "{blocked}"], "--output-dir"),
    ],
)  # fmt: skip
def test_every_command_checks_its_output_before_any_compute(tmp_path, capsys, argv, flag):
    """A file where the output folder should be: one line naming the flag, exit 2, before any data is read."""
    (tmp_path / "blocked").write_text("a file in the way")
    names = {"data": tmp_path / "no-data.npz", "blocked": tmp_path / "blocked", "missing": tmp_path / "no.pt"}
    assert main([a.format(**names) for a in argv]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    assert f"error: {flag} {tmp_path / 'blocked'}" in err, err


def test_first_missing_is_the_outermost_folder_a_command_would_create(tmp_path):
    assert first_missing(tmp_path) is None
    assert first_missing(tmp_path / "a" / "b" / "c") == tmp_path / "a"
    (tmp_path / "a").mkdir()
    assert first_missing(tmp_path / "a" / "b" / "c") == tmp_path / "a" / "b"
    assert first_missing(tmp_path / ("x" * 300) / "y") is None  # a name too long: the command reports it


def test_remove_empty_folders_keeps_every_file_and_the_folders_above_it(tmp_path):
    root = tmp_path / "run"
    (root / "jobs" / "crossd").mkdir(parents=True)
    (root / "jobs" / "acs").mkdir()
    (root / "ckpt").mkdir()
    (root / "ckpt" / "model.safetensors").write_bytes(b"weights")
    remove_empty_folders(root)
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*")) == ["ckpt", "ckpt/model.safetensors"]
    (root / "ckpt" / "model.safetensors").unlink()
    remove_empty_folders(root)
    assert not root.exists()
    remove_empty_folders(root)  # nothing there: nothing to do


@pytest.mark.parametrize("fresh", [True, False])
def test_a_command_refused_up_front_leaves_no_empty_output_folder(tmp_path, capsys, fresh):
    out = tmp_path / "runs" / "x" if fresh else tmp_path
    assert main(["evaluate", "--data", str(tmp_path / "no-data.npz"), "--output-dir", str(out)]) == 2
    assert "--data" in capsys.readouterr().err
    assert (tmp_path / "runs").exists() is False if fresh else tmp_path.is_dir()  # a folder that was there stays


def test_a_failed_command_keeps_what_it_wrote(tmp_path, monkeypatch, capsys):
    from crossd.commands import evaluate
    from crossd.errors import DataError

    def run(args):
        (Path(args.output_dir) / "jobs").mkdir(parents=True)
        (Path(args.output_dir) / "jobs" / "r0f0.json").write_text("{}")
        (Path(args.output_dir) / "empty").mkdir()
        raise DataError("label 7 at index 3 is outside 0..3", field="data")

    monkeypatch.setattr(evaluate, "run", run)
    out = tmp_path / "runs" / "x"
    assert main(["evaluate", "--data", "d.npz", "--output-dir", str(out)]) == 2
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == [
        "runs", "runs/x", "runs/x/jobs", "runs/x/jobs/r0f0.json"
    ]  # fmt: skip


def test_save_json_writes_paths_and_numpy_values_and_refuses_anything_else(tmp_path):
    path = save_json({"p": tmp_path, "x": np.float32(0.5), "a": np.arange(3)}, tmp_path / "x.json")
    assert json.loads(path.read_text()) == {"p": str(tmp_path), "x": 0.5, "a": [0, 1, 2]}
    with pytest.raises(TypeError, match="cannot write a method to JSON"):
        save_json({"loss": tmp_path.exists}, tmp_path / "y.json")  # a method where a number belongs
    assert not (tmp_path / "y.json").exists()
