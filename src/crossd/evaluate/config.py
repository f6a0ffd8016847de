"""What an evaluation run is: data, methods, protocol and every constant the protocols use."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from crossd.convert.inits import get_init, init_names
from crossd.data.orientation import check_slice_axis
from crossd.data.preprocessing import check_window, normalization_name
from crossd.errors import SettingsError
from crossd.models.slice_model import POOLS
from crossd.settings import RUN_ONLY

PROTOCOLS = ("bn", "linear", "finetune", "paper")
SPLITS = ("kfold", "official")
"""``kfold``: folds over all samples (a file's own splits pooled); ``official``: a MedMNIST ``.npz``'s test split is
the test set of every job, the folds of train + val give training and validation (:func:`crossd.evaluate.folds.
official_splits`)."""
MethodEntry = tuple[str, str | Path | None] | tuple[str, str | Path | None, str]
"""A compared method: ``(init, checkpoint or None)``, or ``(init, checkpoint, label)`` to name it in the results."""
INITS = init_names("evaluate")
INITS_2D = tuple(name for name in INITS if 2 in get_init(name).spatial_dims)
DEFAULT_NORMALIZATION = "radimagenet"
"""The normalisation when the checkpoints record none, or disagree (constants:
:data:`crossd.data.preprocessing.NORMALIZATION`; for volumes the authors use the channel means, ImageNet
0.449 / 0.226, which is what repeating a grey volume gives)."""


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
class EvaluateConfig:
    """One ``crossd evaluate`` run. ``None`` means the protocol's default (see :class:`PaperConstants`,
    :class:`BnConstants`).

    Attributes:
        data: ``.npz``, ``path,label`` CSV, or folder (see :mod:`crossd.data.volumes`).
        methods: ``(init, checkpoint or None[, label])`` entries (:data:`MethodEntry`); all share the folds.
        protocol: ``bn``, ``linear``, ``finetune`` or ``paper``.
        normalize: a key of :data:`crossd.data.preprocessing.NORMALIZATION` (``none``, the old name of ``minmax``,
            warns); ``None`` takes the one the checkpoints record, else :data:`DEFAULT_NORMALIZATION` (see
            :func:`crossd.evaluate.methods.resolve_preprocessing`, which warns when a given one differs).
        window: ``(low, high)``: clip intensities to it and scale it to ``[0, 1]`` instead of min-max scaling
            (CT: Hounsfield windows such as ``(-1000, 400)``); ``None`` takes the checkpoints' as ``normalize`` does.
        size: resize every sample to ``size`` per spatial axis (needed when sample shapes differ).
        slice_axis: the anatomical plane of NIfTI/DICOM volumes that becomes ``(H, W)``: ``axial`` (default),
            ``coronal`` or ``sagittal`` (:mod:`crossd.data.orientation`).
        split: ``kfold`` (default) or ``official`` (see :data:`SPLITS`).
        image_size: 2D crop size for protocol ``paper`` (default 224); ignored for volumes.
        align: ``shift``-mode Cross-D kernels rolled to centre their angle-0 slice.
        arch: torchvision name for checkpoints without crossd metadata (default resnet18).
        drop_bn_stats: the authors' Cross-D 3D loading (BatchNorms named ``*bn*`` reset); default keeps them all.
        recalibrate_bn: before training a fold, re-estimate every BatchNorm's running statistics on that fold's
            training samples (AdaBN; no weight changes) -- matters for ``linear``, whose statistics stay frozen.
        spatial_dims: 2 or 3 where the data's array shape is ambiguous (``--spatial-dims``).
        num_classes: the class count when labels do not show it (``--num-classes``); labels must be ``0..C-1``.
        resume: continue ``output_dir``, skipping finished jobs (see :mod:`crossd.evaluate.kfold`).
        allow_changed: let ``resume`` go on when ``data`` or a method's checkpoint holds other content than when
            its jobs ran (compared by fingerprint, :mod:`crossd.fingerprint`): the finished jobs of what changed
            are discarded (all of them for the data), never mixed with new ones.
        progress: show the tqdm bar.
        slice_pool: how ``slices``/``slices3`` pool the slice features: ``mean``, ``max`` or ``attention`` (a learned
            gated attention, trained with the head under every protocol).

    Fields marked :data:`crossd.settings.RUN_ONLY` do not change the numbers; a resumed run must repeat all others.
    """

    data: str | Path
    methods: list[MethodEntry] = field(metadata=RUN_ONLY)  # each job file records its method
    output_dir: str | Path = field(metadata=RUN_ONLY)
    protocol: str = "bn"
    folds: int | None = None
    repeats: int | None = None
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    normalize: str | None = None
    window: tuple[float, float] | None = None
    seed: int = 0
    size: int | None = None
    slice_axis: str = "axial"
    split: str = "kfold"
    spatial_dims: int | None = None
    num_classes: int | None = None
    image_size: int | None = None
    align: bool = False
    arch: str | None = None
    drop_bn_stats: bool = False
    recalibrate_bn: bool = False
    slice_pool: str = "mean"
    device: str | None = field(default=None, metadata=RUN_ONLY)
    resume: bool = field(default=False, metadata=RUN_ONLY)
    allow_changed: bool = field(default=False, metadata=RUN_ONLY)
    progress: bool = field(default=True, metadata=RUN_ONLY)
    num_workers: int = field(default=0, metadata=RUN_ONLY)
    paper: PaperConstants = field(default_factory=PaperConstants)
    bn: BnConstants = field(default_factory=BnConstants)

    def validate(self) -> None:
        """One-line :class:`~crossd.errors.SettingsError` for choices outside the known sets."""
        if self.protocol not in PROTOCOLS:
            raise SettingsError(f"must be one of {PROTOCOLS}, got {self.protocol!r}", field="protocol")
        if self.normalize is not None:
            self.normalize = normalization_name(self.normalize)
        self.window = check_window(self.window)
        check_slice_axis(self.slice_axis)
        if self.split not in SPLITS:
            raise SettingsError(f"must be one of {SPLITS}, got {self.split!r}", field="split")
        if not self.methods:
            raise SettingsError("is empty: no method to evaluate", field="methods")
        for init, *_ in self.methods:
            get_init(init, "evaluate", field="methods")
        if self.slice_pool not in POOLS:
            raise SettingsError(f"must be one of {tuple(POOLS)}, got {self.slice_pool!r}", field="slice_pool")
        for name in ("folds", "repeats", "epochs", "batch_size"):
            value = getattr(self, name)
            if value is not None and value < (2 if name == "folds" else 1):
                raise SettingsError(f"must be at least {2 if name == 'folds' else 1}, got {value}", field=name)

    @property
    def constants(self) -> PaperConstants | BnConstants:
        return self.paper if self.protocol == "paper" else self.bn

    def resolved(self, name: str):
        """``folds``/``repeats``/``epochs``/``batch_size``/``lr``: the explicit value or the protocol default."""
        value = getattr(self, name)
        return getattr(self.constants, name) if value is None else value

    def record(self) -> dict:
        """Every setting, defaults resolved, for ``results.json``."""
        out = asdict(self)
        out.pop("paper"), out.pop("bn")
        for name in ("folds", "repeats", "epochs", "batch_size", "lr"):
            out[name] = self.resolved(name)
        out["data"], out["output_dir"] = str(self.data), str(self.output_dir)
        out["methods"] = method_records(self.methods)
        out["protocol_constants"] = asdict(self.constants)
        return out


def method_records(methods: list[MethodEntry]) -> list[list]:
    """The JSON form of method entries: ``[init, checkpoint or None(, label)]``."""
    return [[m[0], None if m[1] is None else str(m[1]), *m[2:]] for m in methods]
