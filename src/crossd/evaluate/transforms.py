"""Intensity scaling, augmentation and normalisation of evaluation samples, per protocol.

Samples are tensors ``(C, H, W)`` or ``(C, D, H, W)`` in ``[0, 1]`` after scaling (min-max, or a fixed window:
:mod:`crossd.data.preprocessing`); the dataset repeats grey samples to 3 channels and normalises them last.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset
from torchvision import transforms as T

from crossd.data.preprocessing import NORMALIZATION, normalize_volumes, scale_to_unit
from crossd.errors import SettingsError
from crossd.evaluate.config import BnConstants, PaperConstants

Transform = Callable[[Tensor], Tensor]


def intensity_bounds(
    images: np.ndarray, scaling: str, window: tuple[float, float] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Bounds ``(lo, hi)`` that map to ``[0, 1]``, each ``(N,)`` float32: ``window`` for every sample when given
    (values outside it are clipped when scaled), else min-max bounds: the whole array's (``"global"``, protocol
    ``paper``) repeated for every sample, or each sample's own (``"per_sample"``). ``images``: ``(N, C, *spatial)``."""
    n = len(images)
    if window is not None:
        lo, hi = np.full(n, window[0], np.float32), np.full(n, window[1], np.float32)
    elif scaling == "global":
        lo, hi = np.full(n, images.min(), np.float32), np.full(n, images.max(), np.float32)
    elif scaling == "per_sample":
        flat = images.reshape(n, -1)
        lo, hi = flat.min(axis=1).astype(np.float32), flat.max(axis=1).astype(np.float32)
    else:
        raise SettingsError(f"must be 'global' or 'per_sample', got {scaling!r}", field="scaling")
    return lo, hi


def scale_intensities(images: np.ndarray, scaling: str, window: tuple[float, float] | None = None) -> np.ndarray:
    """``images`` ``(N, C, *spatial)`` scaled to ``[0, 1]`` float32 (see :func:`intensity_bounds`)."""
    lo, hi = intensity_bounds(images, scaling, window)
    return np.stack([scale_to_unit(x, a, b) for x, a, b in zip(images, lo, hi, strict=True)]) if len(images) else images


def _identity(x: Tensor) -> Tensor:
    return x


class RandomFlip:
    """Flip tensor dimension ``dim`` with probability ``p`` (a class, so data-loader workers can pickle it)."""

    def __init__(self, dim: int, p: float):
        self.dim, self.p = dim, p

    def __call__(self, x: Tensor) -> Tensor:
        return x.flip(self.dim) if torch.rand(()) < self.p else x


class PlainTensor:
    """Run a MONAI transform and return a plain float32 tensor (a ``MetaTensor`` would slow every layer)."""

    def __init__(self, transform: Transform):
        self.transform = transform

    def __call__(self, x: Tensor) -> Tensor:
        from monai.utils import convert_to_tensor

        return convert_to_tensor(self.transform(x), dtype=torch.float32, track_meta=False)


def monai_volume_augmentation(c: PaperConstants, seed: int = 0) -> Transform:
    """The authors' MONAI train augmentations for ``(C, D, H, W)`` volumes, each with probability ``p``,
    their random state seeded with ``seed``."""
    from monai.transforms import (
        Compose,
        RandFlip,
        RandGaussianNoise,
        RandRotate,
        RandShiftIntensity,
        RandZoom,
    )

    p = c.augment_probability
    return Compose(
        [
            RandFlip(prob=p, spatial_axis=0),
            RandRotate(range_x=c.rotate_range, prob=p, keep_size=True),
            RandZoom(prob=p, min_zoom=c.zoom[0], max_zoom=c.zoom[1], keep_size=True),
            RandGaussianNoise(prob=p),
            RandShiftIntensity(offsets=c.intensity_shift, prob=p),
        ]
    ).set_random_state(seed)


def image_transforms(c: PaperConstants, crop: int) -> tuple[Transform, Transform]:
    """torchvision train/eval transforms of protocol ``paper`` for 2D tensors ``(3, H, W)`` in ``[0, 1]``."""
    train = T.Compose(
        [
            T.RandomResizedCrop(crop, antialias=True),
            T.RandomHorizontalFlip(),
            T.ColorJitter(*c.color_jitter),
        ]
    )
    evaluation = T.Compose([T.Resize(round(crop * 256 / 224), antialias=True), T.CenterCrop(crop)])
    return train, evaluation


def protocol_transforms(
    protocol: str, constants: PaperConstants | BnConstants, spatial_dims: int, image_size: int | None, seed: int = 0
) -> tuple[Transform, Transform]:
    """``(train, eval)`` transforms of a protocol for samples of ``spatial_dims`` dimensions (``seed`` seeds
    MONAI's own random state; the others draw from torch's)."""
    if protocol != "paper":
        flip_dim = 1 if spatial_dims == 3 else 2  # volumes: axis 0 (depth); images: horizontal
        return RandomFlip(flip_dim, constants.flip_probability), _identity
    if spatial_dims == 3:
        return PlainTensor(monai_volume_augmentation(constants, seed)), _identity
    return image_transforms(constants, image_size or constants.image_size)


class SampleDataset(Dataset):
    """``(normalise(to_3_channels(transform(scale(images[i])))), label)`` for the given indices.

    Args:
        images: ``(N, C, *spatial)`` of any numeric dtype (shared, not copied: a uint8 dataset stays uint8 in
            memory and each sample is scaled when read).
        labels: ``(N,)`` int.
        bounds: ``(lo, hi)`` per sample from :func:`intensity_bounds`; each sample is mapped to ``[0, 1]`` (and
            clipped there, for a window).
        indices: which samples this dataset holds.
        transform: applied to the ``(C, *spatial)`` tensor before channel repetition (colour jitter needs 3
            channels, so 2D samples are repeated first).
        normalize: a key of :data:`NORMALIZATION`; images use its per-channel constants, volumes the mean of
            them for every channel (:func:`crossd.data.preprocessing.normalize_volumes`), as the authors did.
    """

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        bounds: tuple[np.ndarray, np.ndarray],
        indices: np.ndarray,
        transform: Transform,
        normalize: str,
    ):
        self.images, self.labels, self.indices, self.transform = images, labels, np.asarray(indices), transform
        self.lo, self.hi = bounds
        self.normalize, self.spatial_dims = normalize, images.ndim - 2
        self.mean, self.std = (torch.tensor(v).view(3, 1, 1) for v in NORMALIZATION[normalize])

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, item: int) -> tuple[Tensor, int]:
        index = self.indices[item]
        x = torch.from_numpy(scale_to_unit(self.images[index], self.lo[index], self.hi[index]))
        if self.spatial_dims == 2:
            x = self.transform(x.expand(3, *x.shape[1:]) if x.shape[0] == 1 else x)
            return (x - self.mean) / self.std, int(self.labels[index])
        x = self.transform(x)
        x = x.expand(3, *x.shape[1:]) if x.shape[0] == 1 else x
        return normalize_volumes(x, self.normalize), int(self.labels[index])
