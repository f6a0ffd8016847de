"""Atomic writes: complete files with ordinary permissions, old content kept when writing fails."""

import os
import stat

import pytest

from crossd.io import atomic_write, save_json


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
