"""Classification's evaluation run (``crossd evaluate``): its protocols and every constant they use."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from crossd.errors import SettingsError
from crossd.evaluate.task_config import TaskConfig
from crossd.models.slice_model import POOLS

PROTOCOLS = ("bn", "linear", "finetune", "paper")
SPLITS = ("kfold", "official")
"""``kfold``: folds over all samples (a file's own splits pooled); ``official``: a MedMNIST ``.npz``'s test split is
the test set of every job, the folds of train + val give training and validation (:func:`crossd.evaluate.folds.
official_splits`)."""


@dataclass
class PaperConstants:
    """The numbers of protocol ``paper`` (the authors' later scripts behind Tables 2 and 3).

    Epochs are counted from 0: epochs ``0..bn_epoch-1`` train the head only with AdamW and a MultiStepLR at
    ``milestones``; at epoch ``bn_epoch`` the optimiser becomes Adam over head + all BatchNorm affine parameters at
    the then-current learning rate, constant from there on.
    """

    epochs: int = 15
    batch_size: int = 8
    lr: float = 1e-3
    weight_decay: float = 0.01  # torch's AdamW default; the authors did not pass one
    milestones: tuple[int, ...] = (7, 11)
    gamma: float = 0.1
    bn_epoch: int = 10
    folds: int = 5
    repeats: int = 3
    split_seed_base: int = 42  # KFold(random_state = split_seed_base + seed + t), t = 1..repeats
    val_fraction: float = 0.2  # the first 20% of each training fold is validation
    select: str = "val_loss"
    scaling: str = "global"  # min-max over the whole array
    image_size: int = 224  # 2D: RandomResizedCrop(image_size); eval Resize(image_size * 256/224) + CenterCrop
    color_jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.4, 0.1)
    augment_probability: float = 0.5  # each MONAI 3D augmentation
    rotate_range: float = 15.0  # MONAI RandRotate(range_x=15): radians, as the authors wrote it
    zoom: tuple[float, float] = (0.9, 1.1)
    intensity_shift: float = 0.1


@dataclass
class BnConstants:
    """The numbers of protocols ``bn``/``linear``/``finetune`` (the earlier "weak supervision" scripts)."""

    epochs: int = 100
    batch_size: int = 32
    lr: float = 1e-3
    milestones_fraction: tuple[float, ...] = (0.5, 0.75)
    gamma: float = 0.1
    folds: int = 5
    repeats: int = 3
    val_fraction: float = 0.2  # stratified inner split of each training fold
    select: str = "val_accuracy"
    scaling: str = "per_sample"  # min-max per volume/image
    flip_probability: float = 0.5  # 3D: flip on axis 0; 2D: horizontal flip


@dataclass
class EvaluateConfig(TaskConfig):
    """One ``crossd evaluate`` run of classification (the shared settings: :class:`~crossd.evaluate.task_config.
    TaskConfig`). ``None`` means the protocol's default (see :class:`PaperConstants`, :class:`BnConstants`).

    Attributes:
        data: ``.npz``, ``path,label`` CSV, or folder (see :mod:`crossd.data.volumes`).
        protocol: ``bn``, ``linear``, ``finetune`` or ``paper``.
        split: ``kfold`` (default) or ``official`` (see :data:`SPLITS`).
        spatial_dims: 2 or 3 where the data's array shape is ambiguous (``--spatial-dims``).
        num_classes: the class count when labels do not show it (``--num-classes``); labels must be ``0..C-1``.
        image_size: 2D crop size for protocol ``paper`` (default 224); ignored for volumes.
        recalibrate_bn: before training a fold, re-estimate every BatchNorm's running statistics on that fold's
            training samples (AdaBN; no weight changes) -- matters for ``linear``, whose statistics stay frozen.
        slice_pool: how ``slices``/``slices3`` pool the slice features: ``mean``, ``max`` or ``attention`` (a learned
            gated attention, trained with the head under every protocol).
    """

    protocol: str = "bn"
    split: str = "kfold"
    spatial_dims: int | None = None
    num_classes: int | None = None
    image_size: int | None = None
    recalibrate_bn: bool = False
    slice_pool: str = "mean"
    paper: PaperConstants = field(default_factory=PaperConstants)
    bn: BnConstants = field(default_factory=BnConstants)

    def check_protocol(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise SettingsError(f"must be one of {PROTOCOLS}, got {self.protocol!r}", field="protocol")

    def validate(self) -> None:
        super().validate()
        if self.split not in SPLITS:
            raise SettingsError(f"must be one of {SPLITS}, got {self.split!r}", field="split")
        if self.slice_pool not in POOLS:
            raise SettingsError(f"must be one of {tuple(POOLS)}, got {self.slice_pool!r}", field="slice_pool")

    @property
    def constants(self) -> PaperConstants | BnConstants:
        return self.paper if self.protocol == "paper" else self.bn

    def resolved(self, name: str):
        """``folds``/``repeats``/``epochs``/``batch_size``/``lr``: the explicit value or the protocol default."""
        value = getattr(self, name)
        return getattr(self.constants, name) if value is None else value

    def record(self) -> dict:
        """Every setting, defaults resolved, for ``results.json``."""
        out = super().record()
        out.pop("paper"), out.pop("bn")
        for name in ("folds", "repeats", "epochs", "batch_size", "lr"):
            out[name] = self.resolved(name)
        out["protocol_constants"] = asdict(self.constants)
        return out
