"""2D downstream tasks that are not the pretraining task, built from real images shipped in installed packages
(nothing is downloaded): the seed paper's Table 2 asks how a pretrained 2D network's features serve other 2D tasks.

=============  =====================================================================================================
``digits``     scikit-learn's handwritten digits (``load_digits``: 1797 scans of 8 x 8 pixels, 16 grey levels, 10
               classes), resized bilinearly to ``size`` x ``size``: another modality and another question.
``mni_planes`` which anatomical plane a patch was cut in (sagittal, coronal, axial: 3 classes): ``size`` x ``size``
               slices of the MNI152 T1 template (nilearn) through voxels of the brain's **right** hemisphere (the
               2D pretraining set cuts through the left), augmented as the demo's sets (:func:`crossd.demo.data.
               augment`): the same images as pretraining, another question (anatomy, not tissue).
=============  =====================================================================================================

Each task is written in MedMNIST's ``.npz`` layout (70/10/20 splits, uint8 images, labels ``(N, 1)``), classes
balanced, drawn from ``numpy.random.default_rng(seed)``: the same arguments give byte-identical files.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from crossd.demo.data import augment, class_counts, extract_patches, load_volumes, split_arrays
from crossd.errors import DataError, SettingsError
from crossd.io import save_json, save_npz

PLANES = ("sagittal", "coronal", "axial")
"""``mni_planes``' classes: the plane a patch was cut in (orthogonal to the first, second, third volume axis)."""


def _balanced(labels: np.ndarray, samples: int, classes: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of ``samples`` items of ``labels``, ``samples // classes`` per class (the remainder to the first
    classes), shuffled."""
    chosen = []
    for c in range(classes):
        n = samples // classes + (c < samples % classes)
        pool = np.flatnonzero(labels == c)
        if len(pool) < n:
            raise DataError(f"class {c} has {len(pool)} images, {n} asked; ask for fewer samples")
        chosen.append(rng.choice(pool, n, replace=False))
    return rng.permutation(np.concatenate(chosen))


def digits(size: int, samples: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """scikit-learn's digits resized to ``size`` x ``size``: images ``(samples, size, size)`` uint8, labels."""
    import torch
    import torch.nn.functional as F
    from sklearn.datasets import load_digits

    shipped = load_digits()
    index = _balanced(shipped.target, samples, 10, rng)
    images = torch.from_numpy(shipped.images[index] / 16.0).float()[:, None]
    resized = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)[:, 0]
    return (
        np.round(resized.clamp(0, 1).numpy() * 255).astype(np.uint8),
        shipped.target[index],
        [str(d) for d in range(10)],
    )


def mni_planes(size: int, samples: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """``size`` x ``size`` MNI152 T1 slices through right-hemisphere brain voxels, labelled by their plane."""
    volumes = load_volumes()
    half = volumes.labels.shape[0] // 2
    brain = np.argwhere(volumes.labels[half:] >= 1) + [half, 0, 0]  # csf, grey or white: inside the brain mask
    centres = brain[rng.choice(len(brain), samples, replace=False)]
    labels = rng.permutation(np.arange(samples) % len(PLANES))
    patches = extract_patches(volumes.t1, centres, size, labels)
    return augment(patches, 0.08, rng), labels, list(PLANES)


TASKS_2D: dict[str, Callable[[int, int, np.random.Generator], tuple[np.ndarray, np.ndarray, list[str]]]] = {
    "digits": digits,
    "mni_planes": mni_planes,
}
"""The 2D downstream tasks by name: ``(size, samples, rng) -> (images (N, size, size) uint8, labels (N,), class
names)``."""


def build_task_2d(name: str, output_dir: str | Path, size: int = 32, samples: int = 1500, seed: int = 0) -> Path:
    """Build (or reuse) task ``name`` of :data:`TASKS_2D` as ``output_dir/<name>_<size>.npz`` with its description
    ``<name>_<size>.json`` (the arguments, class names and per-split class counts); an existing file is reused when
    its description holds the same arguments.

    Raises:
        SettingsError: ``name`` is not a task, or ``size``/``samples`` is not a positive integer.
        DataError: the source has fewer images of a class than ``samples`` asks.
    """
    if name not in TASKS_2D:
        raise SettingsError(f"{name!r} is not a 2D task; expected one of {', '.join(TASKS_2D)}", field="tasks_2d")
    for key, value in (("size", size), ("samples", samples)):
        if type(value) is not int or value < 1:
            raise SettingsError(f"must be a positive integer, got {value!r}", field=key)
    output_dir = Path(output_dir)
    path, description_path = output_dir / f"{name}_{size}.npz", output_dir / f"{name}_{size}.json"
    arguments = {"task": name, "size": size, "samples": samples, "seed": seed}
    if path.is_file() and description_path.is_file():
        try:
            if json.loads(description_path.read_text()).get("arguments") == arguments:
                return path
        except (OSError, json.JSONDecodeError):
            pass
    images, labels, classes = TASKS_2D[name](size, samples, np.random.default_rng(seed))
    arrays = split_arrays(images, labels)
    save_npz(arrays, path)
    counts = class_counts(arrays, len(classes))
    save_json({"arguments": arguments, "classes": classes, "class_counts": counts}, description_path)
    return path
