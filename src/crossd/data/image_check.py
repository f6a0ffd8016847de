"""Every image of an image folder read once before the first training step, so that a truncated or undecodable
file, or a float image holding NaN/Inf, stops the run at start-up with its name instead of after an epoch.

Modes (``check_images``): ``"full"`` decodes every image as training will (:func:`crossd.data.images.read_rgb`:
truncated files, NaN/Inf in float images), ``"header"`` opens each file and reads its header only (size, mode:
catches files that are not images or are cut inside the header, not a truncated pixel stream), ``"none"`` skips
the check; ``"auto"`` is ``full`` up to :data:`FULL_LIMIT` files and ``header`` beyond (a RadImageNet-size folder
is fully decoded by the first epoch anyway, where a failure still names the file and keeps the checkpoint).

The files are read in parallel by a ``DataLoader`` with the run's workers, with a progress bar. The files that
passed are recorded with their size and modification time in ``image_check.json`` in the output folder (the mode
too), so a resumed run checks only files that are new or changed since.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

from PIL import Image
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from crossd.data.images import read_rgb
from crossd.errors import DataError, SettingsError
from crossd.io import save_json

CHECK_MODES = ("auto", "full", "header", "none")
FULL_LIMIT = 200_000
CACHE_NAME = "image_check.json"
_STRENGTH = {"header": 1, "full": 2}


def resolve_mode(mode: str, count: int) -> str:
    """``mode`` with ``"auto"`` resolved for ``count`` files (see the module docstring)."""
    if mode not in CHECK_MODES:
        raise SettingsError(f"must be one of {', '.join(CHECK_MODES)}, got {mode!r}", field="check_images")
    if mode == "auto":
        return "full" if count <= FULL_LIMIT else "header"
    return mode


def _stamp(path: str) -> str:
    st = os.stat(path)
    return f"{st.st_size}:{st.st_mtime_ns}"


class _Reads(Dataset):
    """Item ``i``: ``(i, stamp, problem)`` for file ``i``: its size and mtime, and ``""`` when it reads."""

    def __init__(self, files: Sequence[str], mode: str):
        self.files, self.mode = files, mode

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[int, str, str]:
        path = self.files[index]
        try:
            stamp = _stamp(path)
            if self.mode == "full":
                read_rgb(path)
            else:
                with Image.open(path) as image:
                    image.size  # noqa: B018 (the header is parsed by open)
        except ValueError as exc:  # read_rgb's one line names the file
            return index, "", str(exc).splitlines()[0]
        except OSError as exc:
            return index, "", f"{path}: not a readable image ({exc}); remove or replace the file"
        return index, stamp, ""


def _as_list(batch: list) -> list:
    return batch


def check_images(
    files: Sequence[str], mode: str, workers: int = 0, cache: Path | None = None, progress: bool = True
) -> int:
    """Read every file of ``files`` by ``mode`` (resolved, not ``"auto"``), skipping those recorded in ``cache``
    with the same size and mtime by an equal or stronger mode; returns how many were read.

    Raises :class:`DataError` (``data_path``) naming the first file that fails and how many failed in all; the
    files that passed are recorded in ``cache`` all the same.
    """
    if mode == "none" or not files:
        return 0
    recorded: dict[str, str] = {}
    if cache is not None and cache.is_file():
        try:
            saved = json.loads(cache.read_text())
            if _STRENGTH.get(saved.get("mode"), 0) >= _STRENGTH[mode]:
                recorded = saved.get("files", {})
        except (json.JSONDecodeError, AttributeError):
            recorded = {}
    todo = []
    for path in files:
        try:
            if recorded.get(path) != _stamp(path):
                todo.append(path)
        except OSError:
            todo.append(path)  # the read says why
    again = set(todo)
    passed = {p: s for p, s in recorded.items() if p not in again}
    failures: list[str] = []
    loader = DataLoader(_Reads(todo, mode), batch_size=32, num_workers=workers, collate_fn=_as_list)
    with tqdm(total=len(todo), disable=not progress or not todo, desc="checking images", unit="img") as bar:
        for batch in loader:
            for index, stamp, problem in batch:
                if problem:
                    failures.append(problem)
                else:
                    passed[todo[index]] = stamp
            bar.update(len(batch))
    if cache is not None and todo:
        save_json({"mode": mode, "files": passed}, cache)
    if failures:
        more = f" ({len(failures)} files failed in all)" if len(failures) > 1 else ""
        raise DataError(f"{failures[0]}{more}", field="data_path")
    return len(todo)
