"""What every evaluation task's run shares: data, compared methods, folds, training numbers, preprocessing, output.

:class:`TaskConfig` is the base of classification's :class:`~crossd.evaluate.config.EvaluateConfig` and
segmentation's :class:`~crossd.evaluate.segmentation_config.SegmentationConfig`; each task adds its protocols and
its own settings. Settings that do not change the numbers carry :data:`crossd.settings.RUN_ONLY` metadata: a
resumed, sharded or parallel run may differ in them (:meth:`TaskConfig.resume_keys`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from crossd.convert.inits import get_init, init_names
from crossd.data.orientation import check_slice_axis
from crossd.data.preprocessing import check_window, normalization_name
from crossd.errors import SettingsError
from crossd.settings import RUN_ONLY, run_only

MethodEntry = tuple[str, str | Path | None] | tuple[str, str | Path | None, str]
"""A compared method: ``(init, checkpoint or None)``, or ``(init, checkpoint, label)`` to name it in the results."""
INITS = init_names("evaluate")
INITS_2D = tuple(name for name in INITS if 2 in get_init(name).spatial_dims)
DEFAULT_NORMALIZATION = "radimagenet"
"""The normalisation when the checkpoints record none, or disagree (constants:
:data:`crossd.data.preprocessing.NORMALIZATION`; volumes take the mean of the channel constants:
:func:`crossd.data.preprocessing.normalize_volumes`)."""
COUNTS = ("folds", "repeats", "epochs", "batch_size")
"""Settings that must be whole numbers of at least 1 (``folds``: at least 2)."""


@dataclass
class TaskConfig(ABC):
    """One evaluation run of a task: every method of ``methods`` trained and scored on the same folds.

    Attributes:
        data: the task's data (a file, folder or a name the task knows).
        methods: ``(init, checkpoint or None[, label])`` entries (:data:`MethodEntry`); all share the folds.
        output_dir: where the job files, ``results.json`` and ``results.md`` go (:mod:`crossd.evaluate.kfold`).
        protocol: what trains on top of the transferred network (the task lists its protocols).
        folds, repeats, epochs, batch_size, lr: the folds and the training; ``None`` means the task's default.
        normalize: a key of :data:`crossd.data.preprocessing.NORMALIZATION` (``none``, the old name of ``minmax``,
            warns); ``None`` takes the one the checkpoints record, else :data:`DEFAULT_NORMALIZATION` (see
            :func:`crossd.evaluate.methods.resolve_preprocessing`, which warns when a given one differs).
        window: ``(low, high)``: clip intensities to it and scale it to ``[0, 1]`` instead of min-max scaling
            (CT: Hounsfield windows such as ``(-1000, 400)``); ``None`` takes the checkpoints' as ``normalize`` does.
        seed: seed of the folds and the training.
        size: resize every sample to ``size`` per spatial axis (needed when sample shapes differ).
        slice_axis: the anatomical plane of NIfTI/DICOM volumes that becomes ``(H, W)``: ``axial`` (default),
            ``coronal`` or ``sagittal`` (:mod:`crossd.data.orientation`).
        align: ``shift``-mode Cross-D kernels rolled to centre their angle-0 slice.
        arch: torchvision name for checkpoints without crossd metadata (default resnet18), or for ``random``
            without a checkpoint.
        drop_bn_stats: the authors' Cross-D 3D loading (BatchNorms named ``*bn*`` reset); default keeps them all.
        device, num_workers: where jobs train and how many data-loading workers feed them.
        resume: continue ``output_dir``, skipping finished jobs (see :mod:`crossd.evaluate.kfold`).
        allow_changed: let ``resume`` go on when ``data`` or a method's checkpoint holds other content than when
            its jobs ran (compared by fingerprint, :mod:`crossd.fingerprint`): the finished jobs of what changed
            are discarded (all of them for the data), never mixed with new ones.
        progress: show the tqdm bar.
    """

    data: str | Path
    methods: list[MethodEntry] = field(metadata=RUN_ONLY)
    output_dir: str | Path = field(metadata=RUN_ONLY)
    protocol: str
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
    align: bool = False
    arch: str | None = None
    drop_bn_stats: bool = False
    device: str | None = field(default=None, metadata=RUN_ONLY)
    resume: bool = field(default=False, metadata=RUN_ONLY)
    allow_changed: bool = field(default=False, metadata=RUN_ONLY)
    progress: bool = field(default=True, metadata=RUN_ONLY)
    num_workers: int = field(default=0, metadata=RUN_ONLY)

    @abstractmethod
    def check_protocol(self) -> None:
        """One-line :class:`~crossd.errors.SettingsError` for a protocol the task does not know."""

    def check_init(self, init: str) -> None:
        """One-line :class:`~crossd.errors.SettingsError` for an init the task cannot build."""
        get_init(init, "evaluate", field="methods")

    def validate(self) -> None:
        """One-line :class:`~crossd.errors.SettingsError` for settings outside the known sets (``normalize`` and
        ``window`` are put in their checked form)."""
        self.check_protocol()
        if self.normalize is not None:
            self.normalize = normalization_name(self.normalize)
        self.window = check_window(self.window)
        check_slice_axis(self.slice_axis)
        if not self.methods:
            raise SettingsError("is empty: no method to evaluate", field="methods")
        for init, *_ in self.methods:
            self.check_init(init)
        for name in COUNTS:
            value, least = getattr(self, name), 2 if name == "folds" else 1
            if value is not None and value < least:
                raise SettingsError(f"must be at least {least}, got {value}", field=name)

    def resolved(self, name: str) -> Any:
        """A setting with the task's default in place of ``None`` (the base has no defaults to resolve)."""
        return getattr(self, name)

    def record(self) -> dict[str, Any]:
        """Every setting as JSON values (``results.json``'s ``args``)."""
        out = asdict(self)
        out["data"], out["output_dir"] = str(self.data), str(self.output_dir)
        out["methods"] = method_records(self.methods)
        return out

    def resume_keys(self) -> tuple[str, ...]:
        """The keys of :meth:`record` that change the numbers: a resumed run must agree on all of them."""
        ignored = run_only(self)
        return tuple(k for k in self.record() if k not in ignored)


def method_records(methods: list[MethodEntry]) -> list[list]:
    """The JSON form of method entries: ``[init, checkpoint or None(, label)]``."""
    return [[m[0], None if m[1] is None else str(m[1]), *m[2:]] for m in methods]
