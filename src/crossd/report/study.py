"""Reading a study's ``study.json`` back (:func:`read_study`, for ``crossd demo --study``); the study's own tables
render in :mod:`crossd.study.tables`."""

from __future__ import annotations

import json
from pathlib import Path

from crossd.errors import DataError


def read_study(path: str | Path) -> dict:
    """A ``study.json`` (``{"args", "rows", ...}``: :meth:`crossd.study.summary.StudySummary.to_json`) with its
    ``path``; a one-line :class:`DataError` (field ``study``) when the file is not one."""
    try:
        study = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: not a readable JSON file ({exc})", field="study") from None
    if not isinstance(study, dict) or not {"args", "rows"} <= set(study):
        raise DataError(f"{path}: not a study.json of crossd study (no 'args' and 'rows')", field="study")
    return {"path": str(path), **study}
