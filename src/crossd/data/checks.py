"""Checks every data source passes before any training: finite values, labels in range, a recognised layout.

Each check raises :class:`DataError` (a ``ValueError``) with a one-line message that names the source (a file,
or ``file: key``) and the first offending sample, so a command can print it as is.

Layout rule (:func:`infer_layout`; also in ``docs/conventions.md``). An end axis (the one right after ``N``, or
the last) *can be a channel axis* when its size is 1, 3 or 4 and every other non-sample axis has at least
:data:`MIN_SPATIAL` voxels and is larger. Then:

- ``(N, H, W)`` is 2D; a 5D array is 3D with its channel axis first ``(N, C, D, H, W)`` or last
  ``(N, D, H, W, C)`` (exactly one end axis must be able to be one);
- a 4D array ``(N, a, b, c)`` is 2D RGB/RGBA ``(N, H, W, C)`` when ``c`` is 3 or 4 and can be a channel axis
  (MedMNIST's layout; no volume is 3 voxels thin); it is *ambiguous* when ``a`` can be a channel axis (2D
  ``(N, C, H, W)``, or a volume of 1, 3 or 4 slices stored depth first) or ``c`` is a size-1 channel
  (``(N, H, W, 1)``); otherwise it is 3D ``(N, D, H, W)``. An ambiguous shape needs ``spatial_dims``
  (``spatial_dims`` 2 or 3); with 2 the end axis that can be a channel is the channel axis, with 3 there is none.

So ``(N, 28, 28, 3)`` is 2D RGB, ``(N, 28, 28, 28)`` and ``(N, 4, 5, 7)`` are volumes, and ``(N, 32, 32, 1)``,
``(N, 1, 32, 32)`` and ``(N, 3, 32, 32)`` are refused without ``spatial_dims``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from crossd.errors import DataError, SettingsError

CHANNEL_SIZES = (1, 3, 4)
MIN_SPATIAL = 8


@dataclass(frozen=True)
class Layout:
    """How an array ``(N, ...)`` is laid out: ``spatial_dims`` (2 or 3) and ``channel_axis`` (``None``: no channel
    axis, else 1 or ``-1``)."""

    spatial_dims: int
    channel_axis: int | None

    def channels(self, shape: tuple[int, ...]) -> int:
        """Number of channels of an array of ``shape`` (1 without a channel axis)."""
        return 1 if self.channel_axis is None else shape[self.channel_axis]

    def channels_first(self, images: np.ndarray) -> np.ndarray:
        """``images`` in this layout as ``(N, C, *spatial)`` (a view; ``C`` = 1 without a channel axis)."""
        if self.channel_axis is None:
            return images[:, None]
        return np.moveaxis(images, self.channel_axis, 1)


def _is_channel(size: int, others: tuple[int, ...]) -> bool:
    return size in CHANNEL_SIZES and all(o >= MIN_SPATIAL and o > size for o in others)


def infer_layout(shape: tuple[int, ...], spatial_dims: int | None = None, source: str = "data") -> Layout:
    """The :class:`Layout` of an array of ``shape`` ``(N, ...)`` by the rule of this module's docstring.

    ``spatial_dims`` (2, 3 or ``None``) settles 4D shapes; it must agree with 3D and 5D shapes. Raises
    :class:`DataError` naming ``source`` for shapes that fit no layout and for ambiguous ones without
    ``spatial_dims``.
    """
    shape = tuple(int(s) for s in shape)
    if spatial_dims not in (None, 2, 3):
        raise SettingsError(f"must be 2 or 3, got {spatial_dims}", field="spatial_dims")
    expected = "(N,H,W), (N,H,W,C), (N,C,H,W) for 2D or (N,D,H,W), (N,C,D,H,W), (N,D,H,W,C) for 3D"
    if len(shape) == 3:
        layout = Layout(2, None)
    elif len(shape) == 5:
        first, last = _is_channel(shape[1], shape[2:]), _is_channel(shape[-1], shape[1:-1])
        if first == last:
            raise DataError(f"{source}: cannot tell the channel axis of shape {shape}; expected {expected}")
        layout = Layout(3, 1 if first else -1)
    elif len(shape) == 4:
        layout = _layout_4d(shape, spatial_dims, source)
    else:
        raise DataError(f"{source}: images of shape {shape} fit no layout; expected {expected}")
    if spatial_dims is not None and layout.spatial_dims != spatial_dims:
        kinds = {2: "2D images", 3: "3D volumes"}
        raise DataError(f"{source}: shape {shape} holds {kinds[layout.spatial_dims]}, not {kinds[spatial_dims]}")
    return layout


def _layout_4d(shape: tuple[int, ...], spatial_dims: int | None, source: str) -> Layout:
    first, last = _is_channel(shape[1], shape[2:]), _is_channel(shape[-1], shape[1:-1])
    if spatial_dims == 3:
        return Layout(3, None)
    if spatial_dims == 2:
        if not (first or last):
            raise DataError(
                f"{source}: shape {shape} is not 2D images (no channel axis of size 1, 3 or 4 first or last): "
                "3D volumes (N, D, H, W)?"
            )
        return Layout(2, 1 if first else -1)
    if last and shape[-1] > 1:
        return Layout(2, -1)
    if first or last:
        channels = shape[1] if first else shape[-1]
        raise DataError(
            f"{source}: shape {shape} is ambiguous (2D images with {channels} channel(s), or 3D volumes "
            f"{shape[1:]}); give 2 or 3",
            field="spatial_dims",
        )
    return Layout(3, None)


def check_finite(samples: np.ndarray | Sequence[np.ndarray], source: str, names: Sequence[str] | None = None) -> None:
    """Raise :class:`DataError` naming ``source`` and the first sample holding NaN or Inf.

    ``samples``: an array ``(N, ...)`` (samples along axis 0) or a list of ``N`` arrays (e.g. volumes of different
    shapes); ``names``: the samples' files, named in the message.
    """
    if isinstance(samples, np.ndarray):
        if not np.issubdtype(samples.dtype, np.inexact) or samples.size == 0:
            return
        bad = np.flatnonzero(~np.isfinite(samples.reshape(len(samples), -1)).all(axis=1))
    else:
        bad = [i for i, s in enumerate(samples) if np.issubdtype(s.dtype, np.inexact) and not np.isfinite(s).all()]
    if len(bad):
        first = bad[0]
        kind = "NaN" if np.isnan(samples[first]).any() else "Inf"
        name = f" ({names[first]})" if names is not None else ""
        raise DataError(f"{source}: sample {first}{name} holds {kind} values ({len(bad)} non-finite sample(s) in all)")


def count_classes(labels: np.ndarray | dict[str, np.ndarray], source: str, num_classes: int | None = None) -> int:
    """The number of classes ``C`` of integer labels ``(N,)`` (or of several arrays ``{source: labels}``, e.g. the
    splits of one file): ``num_classes`` when given, else the number of distinct labels, which
    must then be exactly ``0..C-1`` (a label 7 among three classes is refused, not read as an 8-class set).
    Raises :class:`DataError` naming the source and its first bad index (see :func:`check_labels`)."""
    parts = labels if isinstance(labels, dict) else {source: labels}
    parts = {name: np.asarray(array) for name, array in parts.items()}
    for name, array in parts.items():
        _check_integers(array, name)
    classes = num_classes
    if classes is None:
        classes = len(np.unique(np.concatenate([a.ravel() for a in parts.values()])))
        if classes < 2:
            raise DataError(f"{source}: all samples have the same label; classification needs at least 2 classes")
    for name, array in parts.items():
        check_labels(array, classes, name, inferred=num_classes is None)
    return classes


def check_labels(labels: np.ndarray, num_classes: int, source: str, inferred: bool = False) -> None:
    """Raise :class:`DataError` naming ``source`` and the first index whose label ``(N,)`` is not an integer in
    ``0..num_classes-1``; ``inferred``: ``num_classes`` was counted from the labels (the message says so)."""
    labels = np.asarray(labels)
    if num_classes < 2:
        raise SettingsError(f"must be at least 2, got {num_classes}", field="num_classes")
    _check_integers(labels, source)
    bad = np.flatnonzero((labels < 0) | (labels >= num_classes))
    if len(bad):
        why = (
            f"the {num_classes} distinct labels must be numbered 0..{num_classes - 1}; give the class count if "
            "the set has more classes"
            if inferred
            else f"{num_classes} classes"
        )
        raise DataError(
            f"{source}: label {labels[bad[0]]:g} at index {bad[0]} is outside 0..{num_classes - 1} ({why})",
            field="num_classes" if inferred else None,
        )


def _check_integers(labels: np.ndarray, source: str) -> None:
    if labels.dtype == bool or not np.issubdtype(labels.dtype, np.number):
        raise DataError(f"{source}: labels must be integer class indices, got dtype {labels.dtype}")
    if np.issubdtype(labels.dtype, np.inexact):
        bad = np.flatnonzero(~np.isfinite(labels) | (np.mod(labels, 1) != 0))
        if len(bad):
            raise DataError(f"{source}: label {labels[bad[0]]} at index {bad[0]} is not an integer class index")
