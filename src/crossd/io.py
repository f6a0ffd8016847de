"""Output files: checked up front, written atomically (old complete file or new complete file, never half of one).

Temporary files are named ``.crossd-tmp-<name>.<random>`` beside their target, so a run killed mid-write leaves
something recognisable that :func:`remove_stale_temps` deletes at the start of the next run. A failed write (a full
disk, a read-only mount) raises :class:`crossd.errors.OutputError`, a one-line error, and leaves the previous file as it
was.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from crossd.errors import CrossdError, DataError, OutputError

TEMP_PREFIX = ".crossd-tmp-"


def _reason(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


_PATH_REASONS = {
    errno.ENAMETOOLONG: "a name in it is longer than the file system allows",
    errno.EACCES: "permission denied (on it or on a folder above it)",
    errno.EPERM: "operation not permitted",
    errno.ELOOP: "too many levels of symbolic links (a link loop)",
    errno.ENOTDIR: "a part of it is a file, not a folder",
    errno.EROFS: "read-only file system",
    errno.ENOENT: "no such file or folder",
    errno.ENOSPC: "no space left on the device",
}


@contextlib.contextmanager
def user_path_errors(
    field: str | None, path: str | Path, error: type[CrossdError] = DataError, missing_ok: bool = False
) -> Iterator[None]:
    """Turn an ``OSError`` raised inside the block (a name too long, no permission on a parent, a link loop, a
    file where a folder is expected, a read-only file system) into one line ``"<field> <path>: <reason>"``
    (``error``, a :class:`CrossdError`) instead of a traceback. ``missing_ok``: a missing file ends the block
    quietly instead."""
    try:
        yield
    except FileNotFoundError:
        if not missing_ok:
            raise error(f"{path}: {_PATH_REASONS[errno.ENOENT]}", field=field) from None
    except OSError as exc:
        reason = _PATH_REASONS.get(exc.errno, _reason(exc))
        raise error(f"{path}: {reason}", field=field) from None


def check_input_path(path: str | Path, field: str) -> Path:
    """``path`` when it exists (file or folder); else one line naming ``field`` with the reason
    (:func:`user_path_errors`), before any work is done."""
    with user_path_errors(field, path):
        os.stat(path)
    return Path(path)


def ensure_writable_dir(path: str | Path, field: str) -> Path:
    """Create folder ``path`` if needed and prove it writable by creating and removing a probe file.

    Raises :class:`OutputError` with ``field`` (the caller's parameter, e.g. ``"output_dir"``) naming ``path``
    when it is a file, its parent is a file, or it is read-only, missing permissions or full — before any compute
    is spent.
    """
    path = Path(path)
    with user_path_errors(field, path, OutputError):
        is_file = path.exists() and not path.is_dir()
    if is_file:
        raise OutputError(f"{path}: is a file, not a folder", field=field)
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=f"{TEMP_PREFIX}probe.", dir=path)
        try:
            os.write(fd, b"crossd")
        finally:
            os.close(fd)
            os.unlink(probe)
    except OSError as exc:
        raise OutputError(f"{path}: cannot write there ({_reason(exc)})", field=field) from None
    return path


def first_missing(path: str | Path) -> Path | None:
    """The outermost folder of ``path`` that does not exist yet (``path`` itself when only it is missing), or
    ``None`` when ``path`` exists or cannot be looked at (a name too long: the command says so): what a command
    that creates ``path`` adds to the file system."""
    path = Path(path).absolute()
    try:
        if path.exists():
            return None
        while not path.parent.exists():
            path = path.parent
    except OSError:
        return None
    return path


def remove_empty_folders(path: Path) -> None:
    """Remove ``path`` and every folder under it that holds no file, deepest first: what a command that failed
    before writing anything leaves behind. A folder holding a file (a result, a checkpoint, a log) stays, with every
    folder above it; symbolic links are not followed."""
    for root, _, _ in os.walk(path, topdown=False):
        try:
            os.rmdir(root)
        except OSError:  # holds a file (or a kept folder), or is not ours to remove
            pass


def ensure_writable_file(path: str | Path, field: str) -> Path:
    """Check that file ``path`` can be written: not a folder, and its folder writable (created if missing).

    Raises :class:`OutputError` with ``field`` naming ``path``; an existing file is left untouched.
    """
    path = Path(path)
    with user_path_errors(field, path, OutputError):
        is_dir = path.is_dir()
    if is_dir:
        raise OutputError(f"{path}: is a folder, not a file", field=field)
    ensure_writable_dir(path.parent, field)
    with user_path_errors(field, path, OutputError, missing_ok=True):
        os.stat(path)  # a name too long is refused here, before any compute; a missing file is fine
    return path


def remove_stale_temps(folder: str | Path, min_age: float = 0.0) -> list[Path]:
    """Delete the ``.crossd-tmp-*`` files a killed run left in ``folder``; returns what was removed.

    ``min_age`` (seconds since the last write) spares the temporaries of writes still in progress, where other
    processes may share the folder (evaluation shards)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    now = time.time()
    stale = sorted(p for p in folder.glob(f"{TEMP_PREFIX}*") if p.is_file() and now - p.stat().st_mtime >= min_age)
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)`` on a temporary file next to ``path``, then rename it over ``path``.

    An ``OSError`` (full disk, read-only location) becomes an :class:`OutputError`; the temporary file is removed
    and any previous ``path`` is kept whatever goes wrong.
    """
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f"{TEMP_PREFIX}{path.name}.", dir=path.parent)
        os.close(fd)
        write(Path(tmp))
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the mode a plain open() would
        os.replace(tmp, path)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {_reason(exc)}; the previous file (if any) is kept") from None
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
    return path


def save_bytes(data: bytes | memoryview, path: str | Path) -> Path:
    """Write ``data`` atomically (every byte written and flushed to disk before the rename)."""

    def write(tmp: Path) -> None:
        fd = os.open(tmp, os.O_WRONLY | os.O_TRUNC)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)

    return atomic_write(path, write)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def json_value(value: Any) -> Any:
    """``json.dumps``'s ``default`` for the values records hold that JSON lacks: paths (as text) and numpy
    scalars and arrays (as numbers and lists). Anything else raises ``TypeError`` instead of being written as its
    ``str()`` (a record must never hold ``"<bound method ...>"`` where a number belongs)."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, np.generic | np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot write a {type(value).__name__} to JSON: {value!r}")


def plain_json(obj: Any) -> Any:
    """``obj`` as the plain lists, dicts, numbers and strings it reads back as from JSON (:func:`json_value`)."""
    return json.loads(json.dumps(obj, default=json_value))


def save_json(obj: Any, path: str | Path) -> Path:
    """Write ``obj`` as indented JSON, atomically (paths as text, numpy values as numbers: :func:`json_value`)."""
    return save_text(json.dumps(obj, indent=2, default=json_value) + "\n", path)


def save_npz(arrays: dict[str, np.ndarray], path: str | Path) -> Path:
    """Write ``arrays`` as a compressed ``.npz`` atomically (see :func:`atomic_write`)."""

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)

    return atomic_write(path, write)


def save_text(text: str, path: str | Path) -> Path:
    """Write ``text`` (UTF-8) atomically."""
    return save_bytes(text.encode(), path)


def save_torch(obj: Any, path: str | Path) -> Path:
    """``torch.save`` atomically (keep ``obj`` to tensors and plain containers so it loads with
    ``weights_only=True``)."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return save_bytes(buffer.getbuffer(), path)


def safetensors_bytes(state: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> bytes:
    """A state dict serialised as ``.safetensors`` (tensors made contiguous and unshared)."""
    from safetensors.torch import save

    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in state.items()}
    return save(tensors, metadata=metadata)


def save_safetensors(state: dict[str, torch.Tensor], path: str | Path, metadata: dict[str, str] | None = None) -> Path:
    """Write a state dict as ``.safetensors`` atomically (through :func:`save_bytes`: no foreign temporary
    files)."""
    return save_bytes(safetensors_bytes(state, metadata), path)
