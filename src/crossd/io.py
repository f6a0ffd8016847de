"""Atomic file writes: a file is either its old complete self or its new complete self, never half-written."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)`` on a temporary file next to ``path``, then rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the mode a plain open() would
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def save_json(obj: Any, path: str | Path) -> Path:
    """Write ``obj`` as indented JSON, atomically."""
    return atomic_write(path, lambda p: p.write_text(json.dumps(obj, indent=2, default=str) + "\n"))


def save_text(text: str, path: str | Path) -> Path:
    """Write ``text`` atomically."""
    return atomic_write(path, lambda p: p.write_text(text))


def save_torch(obj: Any, path: str | Path) -> Path:
    """``torch.save`` atomically (keep ``obj`` to tensors and plain containers so it loads with
    ``weights_only=True``)."""
    return atomic_write(path, lambda p: torch.save(obj, p))


def save_safetensors(state: dict[str, torch.Tensor], path: str | Path, metadata: dict[str, str] | None = None) -> Path:
    """Write a state dict as ``.safetensors`` atomically (tensors made contiguous and unshared)."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in state.items()}
    return atomic_write(path, lambda p: save_file(tensors, str(p), metadata=metadata))
