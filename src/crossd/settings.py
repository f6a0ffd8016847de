"""Which settings of a run change its numbers, declared once, on the fields of its config dataclass.

A field marked ``field(metadata=RUN_ONLY)`` does not change what a run computes (where files go, the device,
data-loading workers, console output, resuming); every other field does, so a field added later counts as one
that changes the numbers until it is marked. Resume checks (:mod:`crossd.evaluate.kfold`, pretraining, the demo)
derive their lists from these marks.
"""

from __future__ import annotations

from dataclasses import fields
from types import MappingProxyType
from typing import Any

RUN_ONLY = MappingProxyType({"changes_numbers": False})
"""Field metadata of a setting that does not change the numbers."""


def run_only(config: Any) -> tuple[str, ...]:
    """The fields of the dataclass (or instance) ``config`` marked :data:`RUN_ONLY`, in field order."""
    return tuple(f.name for f in fields(config) if not f.metadata.get("changes_numbers", True))


def changes_numbers(config: Any) -> tuple[str, ...]:
    """The fields of the dataclass (or instance) ``config`` not marked :data:`RUN_ONLY`, in field order."""
    return tuple(f.name for f in fields(config) if f.metadata.get("changes_numbers", True))
