"""What a run read, known by content rather than by how its path was spelled.

A fingerprint is a small JSON-ready dict recorded by a run (a pretraining checkpoint's ``inputs``, an evaluation's
``settings.json`` and job files) and compared when it is resumed:

- a file: ``{"kind": "file", "path", "size", "mtime", "sha256"}``; ``sha256`` covers the whole file up to
  :data:`FULL_HASH_BYTES` (always for checkpoints: ``full=True``); beyond that ``sample_sha256`` hashes
  :data:`SAMPLE_BLOCKS` blocks of :data:`BLOCK_BYTES` spread evenly over the file, and the size and modification
  time count too. A ``.safetensors`` file adds ``tensors_sha256``: its header with sorted keys and its tensor
  bytes, so two saves of the same tensors and metadata agree (the library writes the metadata in an order that
  changes from process to process); where both fingerprints have it, it is what is compared.
- a folder (image folders, class folders): ``{"kind": "folder", "path", "files", "size", "mtime",
  "listing_sha256"}``, the hash of the sorted relative file names with their sizes (contents are not read, so an
  edit that keeps a file's size is not seen; the image check of :mod:`crossd.data.image_check` reads them).

``path`` is the resolved path, recorded for the messages only: :func:`same_content` ignores it, so ``./d.npz``,
``d.npz`` and ``/abs/d.npz`` are one input, and another file under the same name is not.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

from crossd.errors import CrossdError, DataError
from crossd.io import user_path_errors

FULL_HASH_BYTES = 256 * 2**20
"""Files up to this size (256 MiB) are hashed whole; larger data files by sampled blocks plus size and mtime."""
SAMPLE_BLOCKS = 64
BLOCK_BYTES = 2**20


def _file_sha256s(path: Path, size: int, safetensors: bool) -> tuple[str, str | None]:
    """The ``sha256`` of the whole file and, when ``safetensors``, its ``tensors_sha256`` (the header with sorted
    keys, then the tensor bytes; ``None`` when the file is not a safetensors file), in one read."""
    whole, tensors = hashlib.sha256(), None
    with open(path, "rb") as f:
        if safetensors:
            head = f.read(8)
            length = int.from_bytes(head, "little")
            raw = f.read(length) if len(head) == 8 and length <= size - 8 else b""
            whole.update(head + raw)
            tensors = _sorted_header(raw)
        for block in iter(lambda: f.read(BLOCK_BYTES), b""):
            whole.update(block)
            if tensors is not None:
                tensors.update(block)
    return whole.hexdigest(), None if tensors is None else tensors.hexdigest()


def _sorted_header(raw: bytes) -> Any:
    """A sha256 digest started with a safetensors JSON header re-serialised with sorted keys; ``None`` when
    ``raw`` is not one."""
    try:
        header = json.loads(raw)
    except (ValueError, MemoryError):
        return None
    return hashlib.sha256(json.dumps(header, sort_keys=True).encode()) if isinstance(header, dict) else None


def _sampled_sha256(path: Path, size: int) -> str:
    digest = hashlib.sha256(str(size).encode())
    with open(path, "rb") as f:
        for i in range(SAMPLE_BLOCKS):
            f.seek((size - BLOCK_BYTES) * i // (SAMPLE_BLOCKS - 1))
            digest.update(f.read(BLOCK_BYTES))
    return digest.hexdigest()


def _listing(root: Path) -> tuple[str, int, int, float]:
    """The hash of the sorted ``relative/name size`` lines of every file under ``root``; the file count, total
    size and newest modification time."""
    entries = []
    for folder, dirs, files in os.walk(root, followlinks=True):
        dirs.sort()
        for name in files:
            path = Path(folder, name)
            st = path.stat()
            entries.append((path.relative_to(root).as_posix(), st.st_size, st.st_mtime))
    entries.sort()
    digest = hashlib.sha256()
    for name, size, _ in entries:
        digest.update(f"{name}\0{size}\n".encode())
    newest = max((m for *_, m in entries), default=root.stat().st_mtime)
    return digest.hexdigest(), len(entries), sum(s for _, s, _ in entries), newest


def fingerprint(
    path: str | Path, field: str | None = None, error: type[CrossdError] = DataError, full: bool = False
) -> dict[str, Any]:
    """The fingerprint of file or folder ``path`` (see the module docstring); ``full``: hash a file whole
    whatever its size (checkpoints). Raises ``error``
    naming ``field`` when ``path`` is missing or cannot be read."""
    with user_path_errors(field, path, error):
        resolved = Path(path).resolve()
        st = resolved.stat()
        if resolved.is_dir():
            listing, files, size, mtime = _listing(resolved)
            return {
                "kind": "folder",
                "path": str(resolved),
                "files": files,
                "size": size,
                "mtime": mtime,
                "listing_sha256": listing,
            }
        out: dict[str, Any] = {"kind": "file", "path": str(resolved), "size": st.st_size, "mtime": st.st_mtime}
        if full or st.st_size <= FULL_HASH_BYTES:
            out["sha256"], tensors = _file_sha256s(resolved, st.st_size, resolved.suffix == ".safetensors")
            if tensors is not None:
                out["tensors_sha256"] = tensors
        else:
            out["sample_sha256"] = _sampled_sha256(resolved, st.st_size)
        return out


_CONTENT_KEYS = {
    "tensors_sha256": ("tensors_sha256",),
    "sha256": ("sha256", "size"),
    "sample_sha256": ("sample_sha256", "size", "mtime"),
    "listing_sha256": ("listing_sha256", "files", "size"),
}


def same_content(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """Whether two fingerprints describe the same content (paths are not compared), by the first hash of
    :data:`_CONTENT_KEYS` both have."""
    for key, compared in _CONTENT_KEYS.items():
        if key in old and key in new:
            return all(old.get(k) == new.get(k) for k in compared)
    return False


def describe(fp: dict[str, Any]) -> str:
    """``"1234 bytes, modified 2026-12-05 12:00:01"`` (folders: ``"812 files, 1234 bytes, newest ..."``)."""
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(fp["mtime"]))
    if fp["kind"] == "folder":
        return f"{fp['files']} files, {fp['size']} bytes, newest modified {when}"
    return f"{fp['size']} bytes, modified {when}"


def changed_line(name: str, old: dict[str, Any], new: dict[str, Any]) -> str:
    """One line saying that ``name`` holds other content than when it was recorded, with both descriptions."""
    return f"{name} is not the content recorded (then: {describe(old)}; now: {describe(new)})"
