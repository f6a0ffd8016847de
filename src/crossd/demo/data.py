"""The demo's datasets: tissue classification on real MRI, built from the MNI152 template that nilearn ships.

Sources (loaded offline from the ``nilearn`` package, nothing is downloaded): the MNI152 T1 template
(``load_mni152_template``), its grey- and white-matter probability maps (``load_mni152_gm_template``,
``load_mni152_wm_template``) and its brain mask (``load_mni152_brain_mask``), at 2 mm (99 x 117 x 95) by default.

Every voxel gets a tissue label, or none where the maps are ambiguous:

====  ==========  =====================================================================================
 0    background  outside the brain mask, but within ``background_margin`` voxels of it (so patches show brain)
 1    csf         inside the mask with grey and white probability both below 0.25 (ventricles, sulci)
 2    grey        grey-matter probability >= 0.5 and above the white-matter one
 3    white       white-matter probability >= 0.5 and above the grey-matter one
====  ==========  =====================================================================================

Patches are classified by the tissue at their centre. Three sets are written, in MedMNIST's ``.npz`` layout
(``train_images``, ``train_labels``, ``val_*``, ``test_*``; uint8 images, labels ``(N, 1)``; 70/10/20 splits):

- ``mni152_tissue_2d_<P>.npz``, the 2D pretraining set: ``(N, P, P)`` slices cut through the centre voxel,
  orthogonal to each of the three axes in turn (sagittal, coronal, axial), centres from the **left** hemisphere.
- ``mni152_tissue_3d_left_<S>.npz``, the few pretraining volumes for hybrid 2D+3D pretraining
  (``crossd pretrain --volumes``): ``(N, S, S, S)`` cubes, centres from the **left** hemisphere too.
- ``mni152_tissue_3d_<S>.npz``, the 3D downstream set: ``(N, S, S, S)`` cubes, centres from the **right**
  hemisphere, so no downstream centre voxel was seen in pretraining.

Classes are balanced. Each patch is augmented independently so that the centre intensity alone does not give
the answer: a random gamma, contrast and brightness, a linear bias field, and Gaussian noise. Everything is
drawn from ``numpy.random.default_rng(seed)``: the same config gives byte-identical files.
"""

from __future__ import annotations

import functools
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from crossd.errors import DataError, SettingsError
from crossd.io import save_json, save_npz

CLASSES = ("background", "csf", "grey", "white")
SPLIT_FRACTIONS = (("train", 0.7), ("val", 0.1), ("test", 0.2))


@dataclass(frozen=True)
class DemoDataConfig:
    """How the demo sets are built (all sizes in voxels of the chosen resolution)."""

    resolution: int = 2
    """MNI152 resolution in mm (1 or 2)."""
    size_2d: int = 32
    """2D patch side ``P``."""
    size_3d: int = 16
    """3D patch side ``S``."""
    samples_2d: int = 3000
    """2D patches over all splits (balanced over the 4 classes)."""
    samples_3d: int = 240
    """3D downstream patches over all splits."""
    samples_3d_pretrain: int = 120
    """3D pretraining patches (left hemisphere) over all splits."""
    noise: float = 0.08
    """Typical Gaussian noise std on the [0, 1] intensity scale (each patch draws 0.5x to 1.5x of it)."""
    background_margin: int = 3
    """Background centres lie at most this many voxels outside the brain mask."""
    seed: int = 0


@dataclass(frozen=True)
class DemoData:
    """Paths of the built sets and their description (the JSON written beside them)."""

    pretrain_path: Path
    downstream_path: Path
    volumes_path: Path
    description: dict


@dataclass(frozen=True)
class Volumes:
    """The MNI152 T1 template ``(X, Y, Z)`` in [0, 1] and its voxel labels ``(X, Y, Z)`` (-1: unlabelled)."""

    t1: np.ndarray
    labels: np.ndarray


@functools.lru_cache(maxsize=2)
def load_volumes(resolution: int = 2, background_margin: int = 3) -> Volumes:
    """Load the MNI152 T1 template and label each voxel background / csf / grey / white (see module doc).

    Cached per argument pair; the returned arrays are read-only.
    """
    from nilearn import datasets
    from scipy import ndimage

    if resolution not in (1, 2):
        raise SettingsError(f"must be 1 or 2 (mm), got {resolution}", field="resolution")
    t1 = datasets.load_mni152_template(resolution=resolution).get_fdata().astype(np.float32)
    grey = datasets.load_mni152_gm_template(resolution=resolution).get_fdata()
    white = datasets.load_mni152_wm_template(resolution=resolution).get_fdata()
    brain = datasets.load_mni152_brain_mask(resolution=resolution).get_fdata() > 0
    labels = np.full(t1.shape, -1, dtype=np.int8)
    near = ndimage.binary_dilation(brain, iterations=background_margin) & ~brain
    labels[near] = 0
    labels[brain & (grey < 0.25) & (white < 0.25)] = 1
    labels[(grey >= 0.5) & (grey > white)] = 2
    labels[(white >= 0.5) & (white > grey)] = 3
    t1 = np.clip(t1, 0.0, 1.0)
    t1.flags.writeable = labels.flags.writeable = False
    return Volumes(t1, labels)


def sample_centres(
    labels: np.ndarray, count: int, hemisphere: str, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Class-balanced patch centres ``(count, 3)`` (voxel indices) and their labels ``(count,)``, shuffled.

    Args:
        labels: voxel labels ``(X, Y, Z)``; the first axis runs left to right (MNI/RAS).
        count: number of centres; each class gets ``count // 4`` (the remainder goes to the first classes).
        hemisphere: ``"left"`` (``x < X/2``) or ``"right"`` (``x >= X/2``).
    """
    half = labels.shape[0] // 2
    side = np.zeros(labels.shape, dtype=bool)
    side[:half] = hemisphere == "left"
    side[half:] = hemisphere == "right"
    per_class = [count // len(CLASSES) + (c < count % len(CLASSES)) for c in range(len(CLASSES))]
    centres, targets = [], []
    for cls, n in enumerate(per_class):
        candidates = np.argwhere(side & (labels == cls))
        if len(candidates) < n:
            raise DataError(f"only {len(candidates)} '{CLASSES[cls]}' voxels in the {hemisphere} hemisphere, need {n}")
        centres.append(candidates[rng.choice(len(candidates), n, replace=False)])
        targets.append(np.full(n, cls))
    order = rng.permutation(count)
    return np.concatenate(centres)[order], np.concatenate(targets)[order]


def extract_patches(volume: np.ndarray, centres: np.ndarray, size: int, normals: np.ndarray | None) -> np.ndarray:
    """Patches around ``centres (N, 3)``; the volume is zero-padded so every centre fits.

    With ``normals`` ``(N,)`` of axis indices (0, 1, 2): 2D slices ``(N, size, size)`` orthogonal to that axis
    (remaining axes in order). Without: cubes ``(N, size, size, size)``. The centre voxel sits at index
    ``size // 2`` on every patch axis.
    """
    padded = np.pad(volume, size)
    offsets = np.arange(size) - size // 2
    start = centres + size  # centres in padded coordinates
    if normals is None:
        i, j, k = (start[:, a, None, None, None] for a in range(3))
        return padded[
            i + offsets[:, None, None], j + offsets[None, :, None], k + offsets[None, None, :]
        ]  # (N, S, S, S)
    coords = np.broadcast_to(start[:, :, None, None], (len(centres), 3, size, size)).copy()
    for n, normal in enumerate(normals):
        row_axis, col_axis = [a for a in range(3) if a != normal]
        coords[n, row_axis] += offsets[:, None]
        coords[n, col_axis] += offsets[None, :]
    return padded[coords[:, 0], coords[:, 1], coords[:, 2]]  # (N, P, P)


def augment(patches: np.ndarray, noise: float, rng: np.random.Generator) -> np.ndarray:
    """Per-patch intensity augmentation of float patches ``(N, ...)`` in [0, 1]; returns uint8 of the same shape.

    ``x -> clip(a * x**gamma * (1 + bias field) + b + noise)``: gamma in [0.7, 1.5] (log-uniform), contrast
    ``a`` in [0.6, 1.4], brightness ``b`` in [-0.2, 0.2], a linear bias field of slope up to 0.3 across the
    patch in a random direction, and Gaussian noise of std ``noise * U(0.5, 1.5)``.
    """
    n, spatial = len(patches), patches.shape[1:]
    expand = (slice(None),) + (None,) * len(spatial)
    gamma = np.exp(rng.uniform(np.log(0.7), np.log(1.5), n))[expand]
    contrast = rng.uniform(0.6, 1.4, n)[expand]
    brightness = rng.uniform(-0.2, 0.2, n)[expand]
    grids = np.meshgrid(*[np.linspace(-0.5, 0.5, s) for s in spatial], indexing="ij")
    direction = rng.normal(size=(n, len(spatial)))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    slope = rng.uniform(0.0, 0.3, n)
    field = 1.0 + slope[expand] * sum(direction[:, a][expand] * grids[a] for a in range(len(spatial)))
    sigma = noise * rng.uniform(0.5, 1.5, n)[expand]
    out = contrast * np.power(patches, gamma) * field + brightness + sigma * rng.normal(size=patches.shape)
    return np.round(np.clip(out, 0.0, 1.0) * 255).astype(np.uint8)


def split_arrays(images: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
    """MedMNIST keys ``{split}_images`` / ``{split}_labels (N, 1)`` from already shuffled arrays (70/10/20)."""
    arrays, start = {}, 0
    for i, (split, fraction) in enumerate(SPLIT_FRACTIONS):
        stop = len(images) if i == len(SPLIT_FRACTIONS) - 1 else start + round(fraction * len(images))
        arrays[f"{split}_images"] = images[start:stop]
        arrays[f"{split}_labels"] = labels[start:stop, None].astype(np.uint8)
        start = stop
    return arrays


def class_counts(arrays: dict[str, np.ndarray], classes: int) -> dict[str, list[int]]:
    """Per split of MedMNIST ``arrays`` (:func:`split_arrays`), how many labels each of ``classes`` classes has."""
    return {
        split: np.bincount(arrays[f"{split}_labels"][:, 0], minlength=classes).tolist() for split, _ in SPLIT_FRACTIONS
    }


def _describe(config: DemoDataConfig, arrays_2d: dict, arrays_3d: dict, arrays_volumes: dict) -> dict:
    return {
        "config": asdict(config),
        "source": f"nilearn MNI152 T1 template + GM/WM maps + brain mask, {config.resolution} mm",
        "task": "tissue class at the patch centre",
        "classes": list(CLASSES),
        "pretrain": {
            "shape": list(arrays_2d["train_images"].shape[1:]),
            "hemisphere": "left",
            "orientations": "sagittal, coronal, axial in turn",
            "class_counts": class_counts(arrays_2d, len(CLASSES)),
        },
        "volumes": {
            "shape": list(arrays_volumes["train_images"].shape[1:]),
            "hemisphere": "left",
            "class_counts": class_counts(arrays_volumes, len(CLASSES)),
        },
        "downstream": {
            "shape": list(arrays_3d["train_images"].shape[1:]),
            "hemisphere": "right",
            "class_counts": class_counts(arrays_3d, len(CLASSES)),
        },
    }


def build_arrays(config: DemoDataConfig) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The 2D and 3D sets as MedMNIST arrays (in memory), deterministically from ``config``."""
    volumes = load_volumes(config.resolution, config.background_margin)
    rng = np.random.default_rng(config.seed)
    centres, labels = sample_centres(volumes.labels, config.samples_2d, "left", rng)
    normals = np.arange(config.samples_2d) % 3
    patches = extract_patches(volumes.t1, centres, config.size_2d, normals)
    arrays_2d = split_arrays(augment(patches, config.noise, rng), labels)
    centres, labels = sample_centres(volumes.labels, config.samples_3d, "right", rng)
    patches = extract_patches(volumes.t1, centres, config.size_3d, None)
    arrays_3d = split_arrays(augment(patches, config.noise, rng), labels)
    return arrays_2d, arrays_3d


def build_volume_arrays(config: DemoDataConfig) -> dict[str, np.ndarray]:
    """The pretraining volumes as MedMNIST arrays: ``samples_3d_pretrain`` cubes from the *left* hemisphere,
    drawn from their own generator (``seed + 1000``) so the other two sets do not depend on them."""
    volumes = load_volumes(config.resolution, config.background_margin)
    rng = np.random.default_rng(config.seed + 1000)
    centres, labels = sample_centres(volumes.labels, config.samples_3d_pretrain, "left", rng)
    patches = extract_patches(volumes.t1, centres, config.size_3d, None)
    return split_arrays(augment(patches, config.noise, rng), labels)


def build_demo_data(output_dir: str | Path, config: DemoDataConfig | None = None) -> DemoData:
    """Build (or reuse) the demo sets in ``output_dir``.

    Writes ``mni152_tissue_2d_<P>.npz``, ``mni152_tissue_3d_left_<S>.npz``, ``mni152_tissue_3d_<S>.npz`` and
    ``mni152_tissue.json`` (the config, class names and per-split class counts). Existing files are reused when
    the JSON's config equals ``config``; otherwise everything is rebuilt.
    """
    config = config or DemoDataConfig()
    output_dir = Path(output_dir)
    paths = (
        output_dir / f"mni152_tissue_2d_{config.size_2d}.npz",
        output_dir / f"mni152_tissue_3d_{config.size_3d}.npz",
        output_dir / f"mni152_tissue_3d_left_{config.size_3d}.npz",
    )
    description_path = output_dir / "mni152_tissue.json"
    if all(p.is_file() for p in (*paths, description_path)):
        try:
            description = json.loads(description_path.read_text())
        except (OSError, json.JSONDecodeError):
            description = {}
        if description.get("config") == asdict(config):
            return DemoData(*paths, description)
    arrays_2d, arrays_3d = build_arrays(config)
    arrays_volumes = build_volume_arrays(config)
    for arrays, path in zip((arrays_2d, arrays_3d, arrays_volumes), paths, strict=True):
        save_npz(arrays, path)
    description = _describe(config, arrays_2d, arrays_3d, arrays_volumes)
    save_json(description, description_path)
    return DemoData(*paths, description)
