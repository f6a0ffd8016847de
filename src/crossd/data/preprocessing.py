"""How samples become network inputs, and the record of it that every pretraining checkpoint carries.

Two steps, in this order:

1. Intensities to ``[0, 1]``: min-max scaling (per sample or over the whole array, as the caller says), or, with a
   fixed ``window`` ``(low, high)`` (e.g. CT Hounsfield units ``(-1000, 400)``), clipping to the window and scaling
   it to ``[0, 1]``, so that absolute intensities keep their meaning across samples.
2. Normalisation constants: subtract a per-channel mean and divide by a per-channel std (:data:`NORMALIZATION`);
   ``minmax`` has mean 0 and std 1, so the network sees the ``[0, 1]`` intensities of step 1 alone. Volumes are
   grey, so every channel of a volume takes the mean of the channel constants (:func:`normalize_volumes`: ImageNet
   0.449 / 0.226, as the paper's 3D runs); both evaluation tasks and hybrid pretraining's 3D batches use it.

:class:`Preprocessing` records both (with the input size and channels) in ``checkpoint.pt`` (key
``"preprocessing"``) and in ``.safetensors`` metadata (key ``crossd.preprocessing``, JSON), so that evaluation and
transfer can use what pretraining used.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from crossd.errors import SettingsError

NORMALIZATION = {
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "radimagenet": ((0.3162, 0.3162, 0.3162), (0.3213, 0.3213, 0.3213)),
    "minmax": ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),
}
"""Per-channel ``(mean, std)`` applied after the ``[0, 1]`` scaling; grey inputs are repeated to 3 channels."""

DEPRECATED_NORMALIZATION = {"none": "minmax"}
"""Old spellings still accepted, with a warning: ``none`` never meant raw intensities (samples were min-max scaled)."""

METADATA_KEY = "crossd.preprocessing"
CHECKPOINT_KEY = "preprocessing"


class PreprocessingWarning(UserWarning):
    """The preprocessing of a run differs from, or cannot be taken from, what its checkpoints record."""


@dataclass(frozen=True)
class Preprocessing:
    """What a network's inputs were: the normalisation (a key of :data:`NORMALIZATION`), the intensity ``window``
    (``None``: min-max scaling), the input ``size`` in pixels per side (``None``: not fixed) and ``channels``."""

    normalize: str
    window: tuple[float, float] | None = None
    size: int | None = None
    channels: int = 3

    def to_dict(self) -> dict[str, Any]:
        """The JSON-able form stored in ``checkpoint.pt``."""
        out = asdict(self)
        out["window"] = None if self.window is None else list(self.window)
        return out

    def metadata(self) -> dict[str, str]:
        """The ``.safetensors`` metadata entry."""
        return {METADATA_KEY: json.dumps(self.to_dict())}

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> Preprocessing:
        window = record.get("window")
        return cls(
            str(record["normalize"]),
            None if window is None else (float(window[0]), float(window[1])),
            None if record.get("size") is None else int(record["size"]),
            int(record.get("channels", 3)),
        )

    @classmethod
    def from_metadata(cls, metadata: dict[str, Any]) -> Preprocessing | None:
        """The record in a checkpoint's metadata (:class:`crossd.convert.published.CheckpointFile`): a ``.pt``
        ``"preprocessing"`` dict or the ``.safetensors`` JSON string; ``None`` for a checkpoint written before
        crossd recorded it, or a foreign one."""
        record = metadata.get(CHECKPOINT_KEY, metadata.get(METADATA_KEY))
        if isinstance(record, str):
            record = json.loads(record)
        return cls.from_dict(record) if isinstance(record, dict) and "normalize" in record else None


def normalization_name(name: str, field: str = "normalize") -> str:
    """``name`` checked against :data:`NORMALIZATION`; a deprecated spelling warns once and gives its new name.
    Raises :class:`~crossd.errors.SettingsError` for an unknown name."""
    if name in DEPRECATED_NORMALIZATION:
        new = DEPRECATED_NORMALIZATION[name]
        warnings.warn(
            f"{field} {name} is deprecated and means {new}: samples are still scaled to [0, 1] (min-max, or the "
            "window), only the mean/std step is left out",
            PreprocessingWarning,
            stacklevel=3,
        )
        return new
    if name not in NORMALIZATION:
        raise SettingsError(f"must be one of {tuple(NORMALIZATION)}, got {name!r}", field=field)
    return name


def parse_window(text: str) -> tuple[float, float]:
    """``"LOW,HIGH"`` (e.g. ``"-1000,400"``) as a checked window; a one-line :class:`SettingsError` otherwise."""
    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError:
        raise SettingsError(f"must be LOW,HIGH (e.g. -1000,400), got {text!r}", field="window") from None
    return check_window((low, high))


def check_window(window: tuple[float, float] | list[float] | None) -> tuple[float, float] | None:
    """``window`` as a ``(low, high)`` tuple with ``low < high``, both finite; ``None`` stays ``None``."""
    if window is None:
        return None
    low, high = (float(v) for v in window)
    if not (np.isfinite(low) and np.isfinite(high) and low < high):
        raise SettingsError(f"needs finite LOW < HIGH, got {low:g},{high:g}", field="window")
    return low, high


def scale_to_unit(images: np.ndarray, low: float, high: float) -> np.ndarray:
    """``images`` (any shape) mapped from ``[low, high]`` to ``[0, 1]`` and clipped there, float32 (a no-op clip for
    min-max bounds; for a window, values outside it saturate)."""
    return np.clip((images.astype(np.float32) - np.float32(low)) / max(float(high - low), 1e-8), 0.0, 1.0)


def volume_normalization(normalize: str) -> tuple[float, float]:
    """The grey-level ``(mean, std)`` of volumes under ``normalize`` (a key of :data:`NORMALIZATION`): the means of
    its channel constants (``imagenet``: 0.449, 0.226)."""
    mean, std = NORMALIZATION[normalize]
    return sum(mean) / len(mean), sum(std) / len(std)


def normalize_volumes(volumes: Tensor, normalize: str) -> Tensor:
    """Volumes in ``[0, 1]`` normalised with :func:`volume_normalization`, every channel alike: any shape, e.g.
    ``(C, D, H, W)`` or ``(N, C, D, H, W)``, to the same shape, in torch's default dtype (the networks' one) or
    the volumes' own where it is wider."""
    mean, std = (torch.tensor([v]) for v in volume_normalization(normalize))  # 1-D: promotes to the default dtype
    return (volumes - mean) / std
