"""No raw ``OSError`` traceback from a user path: a name too long, no permission on a parent folder, a link
loop, a file where a folder belongs, a read-only file system are one line naming the flag and the reason, before
any work."""

import errno
import os

import numpy as np
import pytest

from crossd.cli import main
from crossd.errors import DataError
from crossd.io import check_input_path, user_path_errors


def _one_line(capsys, command):
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"crossd {command}: error: ") and "\n" not in err, err
    return err


@pytest.fixture
def vol(tmp_path):
    labels = np.arange(8) % 2
    np.savez(tmp_path / "v.npz", images=np.zeros((8, 8, 8, 8), np.uint8), labels=labels)
    return tmp_path / "v.npz"


@pytest.mark.parametrize("where", ["data", "output-dir", "checkpoint"])
def test_evaluate_names_the_flag_of_a_name_too_long(tmp_path, vol, capsys, where):
    long = tmp_path / ("y" * 300)
    paths = {"data": vol, "output-dir": tmp_path / "out", "checkpoint": vol, where: long}
    argv = ["evaluate", "--data", str(paths["data"]), "--output-dir", str(paths["output-dir"])]
    argv += ["--checkpoint", str(paths["checkpoint"]), "--init", "random"]
    assert main(argv) == 2
    err = _one_line(capsys, "evaluate")
    assert f"--{where} {long}" in err and ("too long" in err or "longer than the file system allows" in err)


@pytest.mark.parametrize("where", ["output", "checkpoint"])
def test_transfer_names_the_output_or_checkpoint_too_long(tmp_path, capsys, where):
    long = tmp_path / ("z" * 300)
    checkpoint = long if where == "checkpoint" else tmp_path / "c.pt"
    output = long.with_suffix(".safetensors") if where == "output" else tmp_path / "o.safetensors"
    assert main(["transfer", str(checkpoint), "--init", "random", "--output", str(output)]) == 2
    err = _one_line(capsys, "transfer")
    assert ("--output " if where == "output" else "checkpoint ") in err and "long" in err


def test_a_link_loop_and_a_file_as_a_folder_are_one_line(tmp_path, vol, capsys):
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    assert main(["evaluate", "--data", str(tmp_path / "loop"), "--output-dir", str(tmp_path / "o")]) == 2
    assert "--data " in (err := _one_line(capsys, "evaluate")) and "link loop" in err
    assert main(["evaluate", "--data", str(vol / "x.npz"), "--output-dir", str(tmp_path / "o")]) == 2
    assert "--data " in (err := _one_line(capsys, "evaluate")) and "a part of it is a file, not a folder" in err


@pytest.mark.parametrize(
    ("code", "reason"),
    [(errno.EACCES, "permission denied (on it or on a folder above it)"), (errno.EROFS, "read-only file system")],
)
def test_permission_and_read_only_errors_name_the_field(tmp_path, monkeypatch, code, reason):
    # the tests may run as root, whom permissions do not stop: the error is raised as the OS would
    def refuse(path, *args, **kwargs):
        raise OSError(code, os.strerror(code), str(path))

    monkeypatch.setattr(os, "stat", refuse)
    with pytest.raises(
        DataError, match=rf"^data_path /no/access/d.npz: {reason}$".replace("(", r"\(").replace(")", r"\)")
    ):
        check_input_path("/no/access/d.npz", "data_path")
    monkeypatch.undo()
    with pytest.raises(DataError, match="^output_dir x: link loop|^output_dir x: too many"):
        with user_path_errors("output_dir", "x"):
            raise OSError(errno.ELOOP, "loop")
