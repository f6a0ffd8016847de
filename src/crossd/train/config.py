"""``PretrainConfig``: every setting of a pretraining run; its fields are the ``crossd pretrain`` flags."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from crossd.convert.inits import get_init, init_names
from crossd.data.images import PRETRAIN_NORMALIZATION, detect_dataset_kind
from crossd.data.orientation import check_slice_axis
from crossd.data.preprocessing import Preprocessing, check_window
from crossd.errors import SettingsError
from crossd.models.factory import available_architectures
from crossd.ops.groups import check_granularity
from crossd.ops.slicing import MODES
from crossd.settings import RUN_ONLY, changes_numbers
from crossd.train.defaults import fit_defaults

OPTIMIZERS = ("sgd", "adamw")
LR_SCHEDULERS = ("steplr", "cosineannealinglr")

RESUME_FREE = ("num_classes", "model", "conv", "mode", "weights", "epochs", "sync_bn")
"""Settings that change the numbers but not what a ``resume`` must repeat: the model, its mode and class count
(they must always match: ``check_same_model``), the warm start (the checkpoint replaces it), ``epochs`` (may grow;
with a cosine schedule that changes the schedule, so it counts as a change there) and ``sync_bn``."""


@dataclass
class PretrainConfig:
    """Settings of :func:`crossd.train.pretrain`, named like torchvision's classification reference flags.

    Defaults are the paper's recipe (Table 1): AdamW lr 1e-3 with torch's default weight decay 0.01, StepLR
    (30 epochs, x0.1), 90 epochs, batch 32 per process, crops 224 / resize 256.

    Attributes:
        data_path: image folder with ``train/``, ``val/`` (and optional ``test/``) class folders, or a MedMNIST
            2D ``.npz``.
        dataset: ``"imagefolder"`` or ``"medmnist"``; ``None`` detects it from the ``.npz`` suffix.
        model: torchvision classification model name.
        conv: ``"regular"`` (plain baseline) or ``"crossd"`` (every ``Conv2d`` becomes a ``CrossDConv``).
        mode: Cross-D slicing mode, ``"rotate"``, ``"project"`` or ``"shift"``.
        weights: local 2D checkpoint to warm-start from (regular weights enter Cross-D via ``init="center"``).
        batch_size: per process. workers: data-loading processes per training process (``None``: min(4, CPU
            cores)).
        train_crop_size, val_resize_size, val_crop_size: image sizes; ``None`` fits them to the data as
            ``crossd pretrain`` does (torchvision's 224 / 256 / 224 for images of 224 pixels or more, else the
            images' side; :func:`crossd.train.defaults.fit_defaults`), resolved by :meth:`fitted`.
        lr_warmup_epochs: linear warm-up from ``lr_warmup_decay * lr`` before the main scheduler.
        sync_bn: SyncBatchNorm across processes (CUDA only; CPU runs warn and keep per-process BatchNorm).
        num_classes: the class count of an ``.npz`` (default: its distinct labels, which must be ``0..C-1``) or the
            number of class folders the data must have.
        output_dir: where ``checkpoint.pt``, ``model.safetensors``, ``log.csv`` and ``metrics.json`` go.
        resume: a ``checkpoint.pt`` to continue from (same model and data).
        allow_changed: let ``resume`` continue with settings of :data:`RESUME_FIXED` that differ from the
            checkpoint's: the optimiser takes the new hyper-parameters (its state is kept when ``opt`` is the same,
            dropped otherwise), the schedule is the new one at the resumed epoch, and the checkpoint's ``args``
            record the new settings.
        device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``.
        amp: mixed precision on CUDA (bf16 where supported, else fp16 with gradient scaling).
        train_crop_scale: area range of the random-resized crop (torchvision's default ``(0.08, 1.0)``; use
            ``(1.0, 1.0)`` for patches labelled by their centre).
        crossd_init: how a fresh Cross-D model's 3D kernels start: ``"random"`` (3D Kaiming), ``"center"`` (a fresh
            2D init in the plane used at angle 0, zeros off it) or ``"inflate"`` (a fresh 2D init in every slice).
        plane_sampling: ``"head"`` (the paper), ``"random"`` or ``"grid"`` (each training sample's plane is first
            turned by a uniformly random rotation from SO(3), or from the cube's 24, so every voxel is trained;
            ``rotate`` and ``project`` modes only).
        granularity: ``"sample"`` (the paper: every training sample gets its own rotation), ``"batch"`` (one
            rotation, or one sampled plane, for the whole batch) or an integer ``G`` (one per contiguous group of
            ``ceil(batch_size / G)`` samples of each process's batch; :class:`crossd.nn.CrossDConv`); Cross-D
            models only.
        volumes: a MedMNIST-style 3D ``.npz``, a ``path,label`` CSV of NIfTI volumes or a folder of class folders,
            with the same classes: hybrid 2D+3D training, where the same weights
            also take a 3D batch through a parameter-sharing 3D twin after every ``volume_every`` 2D batches
            (also under ``torchrun``: see :mod:`crossd.train.hybrid`).
        volume_init: how the 3D twin of a *regular* model convolves: ``"acs"`` (ACS convolution of the 2D kernels,
            default: it transferred 12 points better than ``"i3d"``, study 4 of ``docs/experiments.md``) or
            ``"i3d"`` (inflated 2D kernels); a Cross-D model's twin always uses its stored 3D kernels (``"crossd"``).
        volume_batch_size: 3D batch size per process (like ``batch_size``).
        volume_size: resize CSV/folder volumes to this cube side (needed when their shapes differ).
        volume_slice_axis: the plane of NIfTI/DICOM volumes that becomes ``(H, W)``, the plane of the 2D images
            (``axial``, ``coronal`` or ``sagittal``; :mod:`crossd.data.orientation`).
        consistency: weight of a slice-consistency term (``rotate`` with ``plane_sampling="random"`` only): each
            batch also goes through the model with independently drawn planes, and the symmetric KL divergence
            between the two predictions is added to their mean cross-entropy, so every slicing of a 3D kernel
            must give the same answer. 0 (default) trains as the paper does.
        check_images: how the files of an image folder are checked before the first step: ``"full"`` (decoded
            once), ``"header"``, ``"none"``, or ``"auto"``: full up to 200,000 files, header beyond
            (:mod:`crossd.data.image_check`; results cached in ``output_dir``).
        window: ``(low, high)``: intensities of an ``.npz`` and of ``volumes`` are clipped to it and scaled from it
            (e.g. CT Hounsfield units ``(-1000, 400)``) instead of min-max scaled; recorded in the checkpoints.
        quiet: no console lines (the log, checkpoints and metrics are written all the same).
    """

    data_path: str = ""
    dataset: str | None = None
    num_classes: int | None = None
    model: str = "resnet18"
    conv: str = "regular"
    mode: str = "rotate"
    weights: str | None = None
    epochs: int = 90
    batch_size: int = 32
    workers: int | None = field(default=None, metadata=RUN_ONLY)
    lr: float = 1e-3
    opt: str = "adamw"
    momentum: float = 0.9
    weight_decay: float = 0.01
    lr_scheduler: str = "steplr"
    lr_step_size: int = 30
    lr_gamma: float = 0.1
    lr_min: float = 0.0
    lr_warmup_epochs: int = 0
    lr_warmup_decay: float = 0.01
    sync_bn: bool = False
    output_dir: str = field(default="runs/pretrain", metadata=RUN_ONLY)
    resume: str | None = field(default=None, metadata=RUN_ONLY)
    allow_changed: bool = field(default=False, metadata=RUN_ONLY)
    device: str = field(default="auto", metadata=RUN_ONLY)
    print_freq: int = field(default=10, metadata=RUN_ONLY)
    seed: int = 0
    amp: bool = False
    train_crop_size: int | None = None
    val_resize_size: int | None = None
    val_crop_size: int | None = None
    train_crop_scale: tuple[float, float] = (0.08, 1.0)
    crossd_init: str = "random"
    plane_sampling: str = "head"
    granularity: str | int = "sample"
    volumes: str | None = None
    volume_every: int = 4
    volume_batch_size: int = 8
    volume_init: str | None = None
    volume_size: int | None = None
    volume_slice_axis: str = "axial"
    consistency: float = 0.0
    check_images: str = field(default="auto", metadata=RUN_ONLY)
    window: tuple[float, float] | None = None
    quiet: bool = field(default=False, metadata=RUN_ONLY)

    def preprocessing(self) -> Preprocessing:
        """What the network's inputs are (recorded in every checkpoint): ImageNet normalisation, ``window``,
        ``train_crop_size`` pixels, 3 channels."""
        return Preprocessing(PRETRAIN_NORMALIZATION, self.window, self.train_crop_size, 3)

    @property
    def twin_init(self) -> str:
        """The resolved :attr:`volume_init`: ``"crossd"`` for Cross-D models, else ``"acs"`` unless given."""
        if self.conv == "crossd":
            return self.volume_init or "crossd"
        return self.volume_init or "acs"

    def fitted(self) -> tuple[PretrainConfig, tuple[str, ...]]:
        """This config with the image sizes and ``workers`` left ``None`` fitted to ``data_path`` and this machine
        (:func:`crossd.train.defaults.fit_defaults`), and the sentences that say what was chosen."""
        sizes = ("train_crop_size", "val_resize_size", "val_crop_size", "workers")
        fit = fit_defaults(self.data_path, *(getattr(self, name) for name in sizes))
        return replace(self, **{name: getattr(fit, name) for name in sizes}), fit.notes

    def validate(self) -> None:
        """Raise a one-line :class:`~crossd.errors.SettingsError` for settings that cannot work."""
        if self.model not in available_architectures():
            raise SettingsError(f"{self.model!r} is not a torchvision classification model", field="model")
        if self.conv not in ("regular", "crossd"):
            raise SettingsError(f"must be 'regular' or 'crossd', got {self.conv!r}", field="conv")
        if self.mode not in MODES:
            raise SettingsError(f"must be one of {MODES}, got {self.mode!r}", field="mode")
        if self.opt not in OPTIMIZERS:
            raise SettingsError(f"must be one of {OPTIMIZERS}, got {self.opt!r}", field="opt")
        if self.lr_scheduler not in LR_SCHEDULERS:
            raise SettingsError(f"must be one of {LR_SCHEDULERS}, got {self.lr_scheduler!r}", field="lr_scheduler")
        for name in ("epochs", "batch_size", "lr_step_size", "print_freq", "train_crop_size", "val_crop_size"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise SettingsError(f"must be at least 1, got {getattr(self, name)}", field=name)
        for name in ("workers", "lr_warmup_epochs"):
            if getattr(self, name) is not None and getattr(self, name) < 0:
                raise SettingsError(f"must not be negative, got {getattr(self, name)}", field=name)
        if self.lr_warmup_epochs >= self.epochs:
            raise SettingsError(
                f"{self.lr_warmup_epochs} must be fewer than epochs ({self.epochs})", field="lr_warmup_epochs"
            )
        low, high = self.train_crop_scale
        if not 0 < low <= high <= 1:
            raise SettingsError(f"must satisfy 0 < min <= max <= 1, got {low:g} {high:g}", field="train_crop_scale")
        get_init(self.crossd_init, "to_crossd", field="crossd_init")
        if self.plane_sampling not in ("head", "random", "grid"):
            raise SettingsError(
                f"must be 'head', 'random' or 'grid', got {self.plane_sampling!r}", field="plane_sampling"
            )
        if self.plane_sampling != "head" and (self.conv != "crossd" or self.mode not in ("rotate", "project")):
            raise SettingsError(
                f"{self.plane_sampling!r} needs a Cross-D model in mode rotate or project", field="plane_sampling"
            )
        check_granularity(self.granularity)
        if self.granularity != "sample" and self.conv != "crossd":
            raise SettingsError(f"{self.granularity!r} needs a Cross-D model (conv 'crossd')", field="granularity")
        if self.consistency < 0 or (self.consistency > 0 and self.plane_sampling != "random"):
            raise SettingsError(
                "needs random planes (plane_sampling 'random') and must not be negative", field="consistency"
            )
        allowed = tuple(n for n in init_names("twin") if get_init(n).needs_crossd == (self.conv == "crossd"))
        if self.twin_init not in allowed:
            raise SettingsError(
                f"for a {self.conv} model must be one of {allowed}, got {self.volume_init!r}", field="volume_init"
            )
        check_slice_axis(self.volume_slice_axis, "volume_slice_axis")
        for name, least in (("volume_every", 1), ("volume_batch_size", 2)):
            if getattr(self, name) < least:
                raise SettingsError(f"must be at least {least}, got {getattr(self, name)}", field=name)
        if self.lr <= 0:
            raise SettingsError(f"must be positive, got {self.lr}", field="lr")
        self.window = check_window(self.window)
        medmnist = detect_dataset_kind(self.data_path, self.dataset) == "medmnist"
        if self.window is not None and not medmnist and self.volumes is None:
            raise SettingsError(
                "applies to .npz data and volumes, not to image folders of 8-bit images", field="window"
            )
        if self.num_classes is not None and self.num_classes < 2:
            raise SettingsError(f"must be at least 2, got {self.num_classes}", field="num_classes")

    def resume_differences(self, saved: dict[str, Any], epochs_done: int, skip: Sequence[str] = ()) -> list[str]:
        """What this run changes against a checkpoint's ``args`` (``saved``) after ``epochs_done`` epochs, as
        ``"lr 0.001 -> 0.01"`` items (empty: a faithful resume); ``skip``: settings compared otherwise (input
        paths, by the content they hold). Raises a one-line :class:`SettingsError` when ``epochs`` is below
        ``epochs_done``."""
        if self.epochs < epochs_done:
            raise SettingsError(
                f"{self.epochs} is fewer than the {epochs_done} the resumed checkpoint did", field="epochs"
            )
        names = [name for name in RESUME_FIXED if name not in skip]
        if self.lr_scheduler == "cosineannealinglr":
            names.append("epochs")  # the cosine period
        changes = []
        for name in names:
            old, new = _plain(saved.get(name, getattr(PretrainConfig, name))), _plain(getattr(self, name))
            if old != new:
                changes.append(f"{name} {_show(old)} -> {_show(new)}")
        return changes


RESUME_FIXED = tuple(name for name in changes_numbers(PretrainConfig) if name not in RESUME_FREE)
"""Settings a ``resume`` must repeat (unless ``allow_changed``): everything that shapes the data, the
optimisation or the schedule, i.e. every setting that changes the numbers (not marked
:data:`crossd.settings.RUN_ONLY`) but those of :data:`RESUME_FREE`. ``data_path`` and ``volumes`` are compared
by the content they hold (the checkpoint's ``inputs`` fingerprints, :mod:`crossd.fingerprint`), not as text, where
the checkpoint has them."""


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple | list) else value


def _show(value: Any) -> str:
    return " ".join(map(str, value)) if isinstance(value, list) else str(value)
