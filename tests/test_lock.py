"""The ``.lock`` of an output folder: one run alone, or the shards of one split together; stale holders of this
host taken over, other hosts' never; the file gone with its last holder."""

import json
import os
import socket
import subprocess
import sys

import pytest

from crossd.errors import OutputError
from crossd.lock import DirectoryLock


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def _write(path, *holders):
    path.write_text(json.dumps({"holders": list(holders)}))


def test_shards_share_the_lock_and_a_run_alone_does_not(tmp_path):
    path = tmp_path / ".lock"
    me = {"pid": os.getppid(), "host": socket.gethostname(), "since": "now"}
    _write(path, {**me, "shard": [1, 3]})
    second = DirectoryLock(path, (2, 3)).acquire()
    assert not second.sole and [h["shard"] for h in json.loads(path.read_text())["holders"]] == [[1, 3], [2, 3]]
    with pytest.raises(OutputError, match="in use by shard 1/3, .*a merge does not wait for running shards"):
        DirectoryLock(path).acquire()
    with pytest.raises(OutputError, match="in use by shard 1/3"):
        DirectoryLock(path, (1, 2)).acquire()  # another split of the same jobs
    second.release()
    assert [h["shard"] for h in json.loads(path.read_text())["holders"]] == [[1, 3]]
    _write(path, {**me, "shard": None})
    with pytest.raises(OutputError, match="a shard cannot join a run that holds the folder alone"):
        DirectoryLock(path, (1, 3)).acquire()


def test_stale_holders_of_this_host_are_dropped_and_other_hosts_kept(tmp_path):
    path = tmp_path / ".lock"
    _write(path, {"pid": _dead_pid(), "host": socket.gethostname(), "since": "then", "shard": None})
    lock = DirectoryLock(path).acquire()
    assert lock.sole
    lock.release()
    assert not path.exists()
    _write(path, {"pid": _dead_pid(), "host": "another-node", "since": "then", "shard": None})
    with pytest.raises(OutputError, match=r"in use by pid \d+ on another-node .*remove .*\.lock if that process"):
        DirectoryLock(path).acquire()


def test_an_empty_or_half_written_lock_is_stale(tmp_path):
    (tmp_path / ".lock").write_text('{"holders": [{"pid"')
    DirectoryLock(tmp_path / ".lock").acquire().release()
    assert not (tmp_path / ".lock").exists()
