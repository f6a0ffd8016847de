"""One owner per output folder: the ``.lock`` file that names the processes using it, so that a second run
refuses instead of racing the first (``crossd pretrain`` and ``crossd evaluate`` take the same file).

``.lock`` holds ``{"holders": [{"pid", "host", "since", "shard"}]}``. A run takes it alone (``shard=None``:
pretraining, evaluation, the merge of evaluation shards); shards of one evaluation (``shard=(K, N)``) share it
with each other, never with a run that holds it alone, nor with another ``K/N`` split. So a merge started while
a shard runs is refused (it does not wait), and a shard started during a merge is refused too; run the merge again
when the shards are done.

Every change to the file happens under a POSIX record lock (``fcntl.lockf``) on the file itself, so concurrent
takers cannot both succeed. A holder whose process is gone on this host (SIGKILL) is dropped (a stale lock is taken
over). Shared file systems (NFS, Lustre, GPFS): the record lock works where the file system supports POSIX locks
(NFSv4, or NFSv3 with lockd); a holder on **another host** cannot be checked for liveness and is never dropped
automatically: the message names it, and its line (or the file) is removed by hand once that process is known
to be gone.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from crossd.errors import OutputError

LOCK_NAME = ".lock"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _holders(text: str) -> list[dict[str, Any]]:
    """The holders in a lock file's text (also the single-holder ``{"pid", "host", "since"}`` of older
    versions); an empty or half-written file (a process killed while writing it) holds none."""
    try:
        data = json.loads(text or "{}")
    except json.JSONDecodeError:
        return []
    if not isinstance(data, dict):
        return []
    holders = data.get("holders", [data] if "pid" in data else [])
    return [h for h in holders if isinstance(h, dict) and isinstance(h.get("pid"), int)]


class DirectoryLock:
    """The ``.lock`` of folder ``path.parent`` (``path``: the lock file). :meth:`acquire` adds this process as a
    holder or raises a one-line :class:`~crossd.errors.OutputError` naming the holder in the way; :meth:`release`
    removes it (and the file with the last holder). ``shard``: ``(K, N)`` for a shard of an evaluation (see the
    module docstring). After :meth:`acquire`, ``sole`` says whether no other process held the folder."""

    def __init__(self, path: str | Path, shard: tuple[int, int] | None = None):
        self.path = Path(path)
        self.shard = None if shard is None else list(shard)
        self.owner = {"pid": os.getpid(), "host": socket.gethostname()}
        self.sole = False

    @contextlib.contextmanager
    def _locked(self) -> Iterator[IO[str]]:
        """The lock file open for reading and writing under an exclusive record lock (created if missing; opened
        again when another process removed it meanwhile)."""
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            f = os.fdopen(fd, "r+")
            try:
                fcntl.lockf(f, fcntl.LOCK_EX)
                try:
                    current = os.stat(self.path).st_ino
                except FileNotFoundError:
                    current = None
                if current == os.fstat(fd).st_ino:
                    yield f
                    return
            finally:
                f.close()  # closing drops the record lock

    def _is_mine(self, holder: dict[str, Any]) -> bool:
        return holder.get("pid") == self.owner["pid"] and holder.get("host") == self.owner["host"]

    def _live(self, holders: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [h for h in holders if h.get("host") != self.owner["host"] or _alive(h["pid"])]

    def _conflicts(self, holder: dict[str, Any]) -> bool:
        theirs = holder.get("shard")
        if self.shard is None or theirs is None:
            return True
        return theirs == self.shard or theirs[1] != self.shard[1]

    def acquire(self) -> DirectoryLock:
        """Take the lock (creating the folder), or raise the one-line error naming the holder in the way."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._locked() as f:
            holders = self._live(_holders(f.read()))
            blocking = next((h for h in holders if self._conflicts(h)), None)
            if blocking is not None:
                raise OutputError(self._in_use(blocking), field="output_dir")
            self.sole = not holders
            entry = {**self.owner, "since": time.strftime("%Y-%m-%d %H:%M:%S"), "shard": self.shard}
            _write(f, [*holders, entry])
        return self

    def _in_use(self, holder: dict[str, Any]) -> str:
        who = f"pid {holder['pid']} on {holder.get('host')} (since {holder.get('since')})"
        theirs = holder.get("shard")
        if theirs is not None:
            who = f"shard {theirs[0]}/{theirs[1]}, {who}"
        if theirs is not None and self.shard is None:
            advice = "a merge does not wait for running shards: run it again when they have finished"
        elif self.shard is not None and theirs is None:
            advice = "a shard cannot join a run that holds the folder alone: wait for it to finish"
        else:
            advice = f"wait for it, or remove {self.path} if that process is gone"
        return f"{self.path.parent} is in use by {who}; {advice}"

    def release(self) -> None:
        """Remove this process from the holders (the file goes with the last one)."""
        try:
            if not self.path.exists():
                return
        except OSError:  # a folder that could not be locked in the first place (a name too long)
            return
        with self._locked() as f:
            holders = [h for h in _holders(f.read()) if not self._is_mine(h)]
            if holders:
                _write(f, holders)
            else:
                self.path.unlink(missing_ok=True)


def _write(f: IO[str], holders: list[dict[str, Any]]) -> None:
    f.seek(0)
    f.truncate()
    f.write(json.dumps({"holders": holders}))
    f.flush()
    os.fsync(f.fileno())
