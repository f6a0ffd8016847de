"""Plane groups: how a batch is cut into contiguous groups that share one slice operator.

A Cross-D layer's ``granularity`` says how many slice operators a 2D batch of ``B`` samples gets:

- ``"sample"``: one per sample (the paper's method);
- ``"batch"``: one for the whole batch;
- an integer ``G >= 1``: the batch is cut into contiguous groups of ``ceil(B / G)`` samples (the last group may be
  smaller, and there are ``ceil(B / ceil(B / G))`` groups, at most ``G``); ``G >= B`` is one sample per group,
  ``G = 1`` the whole batch.

The rule is applied to the batch a layer sees, so under ``torchrun`` (DDP) the groups are per process.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from crossd.errors import SettingsError

GRANULARITY_NAMES = ("sample", "batch")

Granularity = str | int
"""``"sample"``, ``"batch"`` or a positive integer ``G`` (groups per batch)."""


def check_granularity(granularity: object) -> None:
    """Raise :class:`~crossd.errors.SettingsError` (``field="granularity"``) unless ``granularity`` is
    ``"sample"``, ``"batch"`` or a positive integer."""
    if isinstance(granularity, str) and granularity in GRANULARITY_NAMES:
        return
    if isinstance(granularity, int) and not isinstance(granularity, bool) and granularity >= 1:
        return
    raise SettingsError(f"must be 'sample', 'batch' or a positive integer, got {granularity!r}", field="granularity")


def parse_granularity(text: str) -> Granularity:
    """The granularity a command-line word spells: the integer of ``"4"`` or ``"-1"``, else the word itself
    (checked later by :func:`check_granularity`)."""
    return int(text) if text.strip().lstrip("+-").isdigit() else text


def group_size(batch: int, granularity: Granularity) -> int:
    """Samples per group (the last group may have fewer) for a batch of ``batch`` samples."""
    check_granularity(granularity)
    if granularity == "sample":
        return 1
    if granularity == "batch":
        return max(batch, 1)
    return max(math.ceil(batch / granularity), 1)


def group_count(batch: int, size: int) -> int:
    """Number of contiguous groups of ``size`` samples (the last may be smaller) in a batch of ``batch``."""
    return math.ceil(batch / size)


def group_mean(values: Tensor, size: int) -> Tensor:
    """Means ``(n, ...)`` of ``values (B, ...)`` over contiguous groups of ``size`` samples (the last may be
    smaller); ``n = ceil(B / size)``. With ``size = 1`` this is ``values`` itself."""
    if size == 1:
        return values
    batch = values.shape[0]
    full = batch // size * size
    means = values[:full].reshape(batch // size, size, *values.shape[1:]).mean(1)
    if full == batch:
        return means
    return torch.cat((means, values[full:].mean(0, keepdim=True)))


def expand_groups(values: Tensor, batch: int) -> Tensor:
    """``(B, ...)`` with each sample given its group's entry of ``values (n, ...)`` (groups of ``ceil(B / n)``)."""
    size = math.ceil(batch / values.shape[0])
    return values.repeat_interleave(size, dim=0)[:batch]
