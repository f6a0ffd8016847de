"""A lock file that names the process using an output directory, so a second run refuses instead of racing it."""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

from crossd.errors import OutputError


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


class DirectoryLock:
    """:meth:`acquire` creates ``path`` (``{"pid", "host", "since"}``) exclusively; :meth:`release` removes it. A
    lock held by a live process raises a one-line ``ValueError`` naming it; a lock left by a dead process of this
    host (SIGKILL) is taken over; a lock from another host is refused (its process cannot be checked)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.owner = {"pid": os.getpid(), "host": socket.gethostname()}

    def acquire(self) -> DirectoryLock:
        """Take the lock (creating the folder), or raise the one-line :class:`~crossd.errors.OutputError` naming its
        holder."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(3):  # a stale lock is removed once; a race with another taker is retried
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                self._take_over_stale()
                continue
            with os.fdopen(fd, "w") as f:
                json.dump({**self.owner, "since": time.strftime("%Y-%m-%d %H:%M:%S")}, f)
            return self
        raise OutputError(f"{self.path}: could not take the lock; another run keeps creating it")

    def _take_over_stale(self) -> None:
        try:
            holder = json.loads(self.path.read_text() or "{}")
        except FileNotFoundError:
            return  # released meanwhile: try again
        except json.JSONDecodeError:
            holder = {}  # written by a process killed between create and write
        pid, host = holder.get("pid"), holder.get("host")
        if not holder or (isinstance(pid, int) and host == self.owner["host"] and not _alive(pid)):
            self.path.unlink(missing_ok=True)
            return
        raise OutputError(
            f"{self.path.parent} is in use by pid {pid} on {host} (since {holder.get('since')}); wait for it, or "
            f"remove {self.path} if that process is gone"
        )

    def release(self) -> None:
        """Remove the lock if this process holds it."""
        try:
            holder = json.loads(self.path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return
        if holder.get("pid") == self.owner["pid"] and holder.get("host") == self.owner["host"]:
            self.path.unlink(missing_ok=True)
