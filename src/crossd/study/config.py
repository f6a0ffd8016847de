"""A study's TOML file as dataclasses: the data, the shared pretraining settings, the arms, the seeds and the
evaluation. :func:`load_study` reads and checks it; every message names the TOML key it is about.

    seeds = [0, 1, 2, 3, 4]

    [data]                      # the demo's MRI sets (crossd.demo.data.DemoDataConfig fields), or paths:
    samples_2d = 3000           # pretrain = "x.npz", downstream = "y.npz", volumes = "v.npz"
    size_2d = 32

    [pretrain]                  # crossd.train.PretrainConfig fields every arm shares
    model = "resnet18"
    epochs = 6

    [evaluate]
    protocols = ["bn", "finetune"]
    epochs = 20
    lr = 1e-2

    [[arms]]                    # name, description, init, source, align, blend, volumes_only and any
    name = "regular"            # PretrainConfig field (volumes = "hybrid": the study's volumes)
    conv = "regular"
    init = "i3d"
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crossd.convert.inits import get_init
from crossd.demo.data import DemoDataConfig
from crossd.demo.tasks_2d import TASKS_2D
from crossd.errors import CrossdError, SettingsError
from crossd.evaluate.config import PROTOCOLS
from crossd.models.slice_model import POOLS
from crossd.study.arms import Arm, EvaluationCall, evaluation_plan, task_plan
from crossd.train import PretrainConfig
from crossd.train.defaults import fit_defaults

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

HYBRID = "hybrid"
"""An arm's ``volumes`` value that stands for the study's own volumes (``[data]``)."""

STUDY_PRETRAIN = {"workers": 0, "device": "cpu", "quiet": True, "train_crop_scale": (1.0, 1.0)}
"""Pretraining settings of a study unless ``[pretrain]`` or an arm says otherwise: in-process data loading on the
CPU (parallel studies run one process per core), no console lines, whole patches (labelled by their centre)."""

FITTED_SIZES = ("train_crop_size", "val_resize_size", "val_crop_size")
"""Crop sizes that, unless given, fit the data as ``crossd pretrain``'s do (:func:`crossd.train.defaults.fit_defaults`:
the images' side for images under 224 pixels)."""

OWN_PRETRAIN = ("data_path", "output_dir", "seed", "resume", "allow_changed")
"""PretrainConfig fields the study sets itself (per seed and arm)."""

REFERENCES = {
    "i3d": "I3D",
    "acs": "ACS",
    "regular_hybrid": "I3D + same volumes",
    "regular_hybrid_acs": "ACS + same volumes",
    "volumes_only": "volumes only",
    "shift": "Cross-D shift",
}
"""The default ``[references]``: every method is compared (paired Wilcoxon) with each of these the study ran."""

TASK_2D_PROTOCOLS = ("bn", "finetune")
"""The protocols of the 2D tasks: frozen features (BatchNorm and head trained) and fine-tuning."""

BASELINE_INITS = ("random", "i3d", "center", "acs")
"""The default ``[evaluate] inits``: the 3D inits evaluated from the ``regular`` arm's network."""


@dataclass(frozen=True)
class DataSettings:
    """Where the study's data comes from: ``pretrain`` (2D), ``downstream`` (3D) and ``volumes`` (hybrid
    pretraining) files, or, without them, the demo's MRI sets built with ``demo``."""

    demo: DemoDataConfig = field(default_factory=DemoDataConfig)
    pretrain: str | None = None
    downstream: str | None = None
    volumes: str | None = None


@dataclass(frozen=True)
class EvaluateSettings:
    """How every arm is evaluated, on the same folds, once per protocol (see :class:`crossd.evaluate.EvaluateConfig`).

    ``lr`` is the evaluation learning rate of every protocol but ``finetune`` (``finetune_lr``) and ``paper`` (its
    own); ``normalize`` ``None`` takes the checkpoints' normalisation; ``slice_pool`` is how the ``slices`` and
    ``slices3`` inits pool slice features; ``tasks_2d`` names 2D downstream tasks
    (:data:`crossd.demo.tasks_2d.TASKS_2D`, ``task_2d_samples`` images each) on which the regular network as trained
    (``regular2d``), a random init and the 2D network of every Cross-D arm (or of those ``task_2d_arms`` names) are
    evaluated under :data:`TASK_2D_PROTOCOLS` (the seed paper's Table 2); ``tag`` suffixes the evaluation folders,
    so that other settings on the same checkpoints get their own.
    """

    protocols: tuple[str, ...] = ("bn",)
    inits: tuple[str, ...] = BASELINE_INITS
    folds: int = 5
    epochs: int = 20
    lr: float | None = None
    finetune_lr: float = 1e-3
    recalibrate_bn: bool = False
    normalize: str | None = None
    slice_pool: str = "mean"
    tasks_2d: tuple[str, ...] = ()
    task_2d_samples: int = 1500
    task_2d_arms: tuple[str, ...] = ()
    tag: str = ""

    def task_protocols(self) -> tuple[str, ...]:
        """The protocols the 2D tasks are evaluated under: those of :data:`TASK_2D_PROTOCOLS` the study runs."""
        return tuple(p for p in self.protocols if p in TASK_2D_PROTOCOLS) if self.tasks_2d else ()

    def lr_of(self, protocol: str) -> float | None:
        """The evaluation learning rate of ``protocol`` (``None``: the protocol's own)."""
        if protocol == "paper":
            return None
        return self.finetune_lr if protocol == "finetune" else self.lr

    def tag_of(self, protocol: str) -> str:
        """Suffix of ``protocol``'s evaluation folders: ``tag`` for the first protocol, ``tag_<protocol>`` after."""
        return self.tag if protocol == self.protocols[0] else f"{self.tag}_{protocol}"


@dataclass(frozen=True)
class StudyConfig:
    """One study: every arm pretrained once per seed, then evaluated with the baselines under each protocol."""

    arms: tuple[Arm, ...]
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    data: DataSettings = field(default_factory=DataSettings)
    pretrain: dict[str, Any] = field(default_factory=dict)
    evaluate: EvaluateSettings = field(default_factory=EvaluateSettings)
    references: dict[str, str] = field(default_factory=lambda: dict(REFERENCES))
    title: str = ""
    path: str = ""

    @property
    def arch(self) -> str:
        """The network every arm pretrains and every evaluation builds."""
        return self.pretrain.get("model", PretrainConfig.model)

    def arm(self, name: str) -> Arm:
        return next(a for a in self.arms if a.name == name)

    def plan(self, protocol: str) -> list[tuple[EvaluationCall, str]]:
        """Every evaluation of one seed under ``protocol``, each with its folder in the seed's directory: the volumes'
        (:func:`evaluation_plan`) and, under :meth:`EvaluateSettings.task_protocols`, each 2D task's
        (:func:`task_plan`). The runner, the summary and the archive all read the seed's folders from here."""
        settings = self.evaluate
        tasks = settings.tasks_2d if protocol in settings.task_protocols() else ()
        calls = [
            *evaluation_plan(self.arms, settings.inits),
            *(task_plan(self.arms, task, settings.task_2d_arms) for task in tasks),
        ]
        return [(call, f"{call.folder}{settings.tag_of(protocol)}") for call in calls]

    def planned_folders(self) -> list[str]:
        """The evaluation folders a finished seed holds: :meth:`plan`'s under every protocol."""
        return [folder for protocol in self.evaluate.protocols for _, folder in self.plan(protocol)]

    def pretrain_config(
        self, arm: Arm, seed: int, data_path: str, volumes: str | None, output_dir: str
    ) -> PretrainConfig:
        """The :class:`PretrainConfig` of ``arm``'s run for ``seed`` (``volumes = "hybrid"`` becomes ``volumes``)."""
        settings = {**STUDY_PRETRAIN, **self.pretrain, **arm.pretrain}
        if settings.get("volumes") == HYBRID:
            settings["volumes"] = volumes
        for name in ("train_crop_scale", "window"):
            if settings.get(name) is not None:
                settings[name] = tuple(settings[name])
        fitted = fit_defaults(data_path, *(settings.get(n) for n in FITTED_SIZES), workers=settings["workers"])
        settings.update({n: getattr(fitted, n) for n in FITTED_SIZES})
        return PretrainConfig(data_path=data_path, output_dir=output_dir, seed=seed, **settings)


TOP_KEYS = ("title", "seeds", "data", "pretrain", "evaluate", "references", "arms")


def load_study(path: str | Path) -> StudyConfig:
    """Read and check a study's TOML file.

    Raises:
        SettingsError: one line naming the file and the key (``arms[2].mode``) that is missing, unknown or wrong.
    """
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SettingsError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise SettingsError(f"{path}: not a readable TOML file ({exc})") from None
    return parse_study(raw, str(path))


def parse_study(raw: dict[str, Any], path: str = "<study>") -> StudyConfig:
    """:func:`load_study` of an already parsed TOML table; ``path`` names it in messages."""

    def fail(key: str, message: str) -> SettingsError:
        return SettingsError(f"{path}: {key}: {message}")

    _known(raw, TOP_KEYS, "", fail)
    if "arms" not in raw or not isinstance(raw["arms"], list) or not raw["arms"]:
        raise fail("arms", "missing: list each pretraining arm as an [[arms]] table with a name")
    seeds = raw.get("seeds", list(StudyConfig.seeds))
    if not isinstance(seeds, list) or not seeds or not all(type(s) is int and s >= 0 for s in seeds):
        raise fail("seeds", f"must be a non-empty list of non-negative integers, got {seeds!r}")
    if len(set(seeds)) != len(seeds):
        raise fail("seeds", f"lists a seed twice: {seeds}")
    pretrain = dict(_table(raw, "pretrain", fail))
    pretrain_fields = {f.name for f in dataclasses.fields(PretrainConfig)} - set(OWN_PRETRAIN)
    for key in pretrain:
        if key not in pretrain_fields:
            raise fail(f"pretrain.{key}", _not_a_field(key))
    arms = tuple(_arm(i, table, pretrain_fields, fail) for i, table in enumerate(raw["arms"]))
    config = StudyConfig(
        arms=arms,
        seeds=tuple(seeds),
        data=_data(_table(raw, "data", fail), fail),
        pretrain=pretrain,
        evaluate=_evaluate(_table(raw, "evaluate", fail), fail),
        references=_references(raw, fail),
        title=str(raw.get("title", "")),
        path=path,
    )
    _check_arms(config, fail)
    return config


def _known(table: dict, keys, prefix: str, fail) -> None:
    for key in table:
        if key not in keys:
            raise fail(f"{prefix}{key}", f"unknown key; expected one of {', '.join(keys)}")


def _table(raw: dict, key: str, fail) -> dict:
    table = raw.get(key, {})
    if not isinstance(table, dict):
        raise fail(key, f"must be a table ([{key}]), got {table!r}")
    return table


def _not_a_field(key: str) -> str:
    if key in OWN_PRETRAIN:
        return "is set by the study for each seed and arm"
    return "not a pretraining setting (a crossd.train.PretrainConfig field: the crossd pretrain flags, with _)"


ARM_KEYS = tuple(f.name for f in dataclasses.fields(Arm) if f.name != "pretrain")


def _arm(index: int, table: Any, pretrain_fields: set[str], fail) -> Arm:
    where = f"arms[{index}]"
    if not isinstance(table, dict):
        raise fail(where, "must be a table ([[arms]])")
    if not isinstance(table.get("name"), str) or not table["name"]:
        raise fail(f"{where}.name", "missing: every arm needs a name")
    where = f"arms[{index}] ({table['name']})"
    for key in table:
        if key not in ARM_KEYS and key not in pretrain_fields:
            raise fail(f"{where}.{key}", f"unknown key: {_not_a_field(key)}, or one of {', '.join(ARM_KEYS)}")
    own = {k: v for k, v in table.items() if k in ARM_KEYS}
    try:
        return Arm(**own, pretrain={k: v for k, v in table.items() if k not in ARM_KEYS})
    except CrossdError as exc:
        raise fail(f"{where}.{exc.field}", exc.message) from None


def _data(table: dict, fail) -> DataSettings:
    demo_keys = {f.name for f in dataclasses.fields(DemoDataConfig)}
    paths = ("pretrain", "downstream", "volumes")
    _known(table, (*paths, *sorted(demo_keys)), "data.", fail)
    given = {k: str(table[k]) for k in paths if k in table}
    demo = {k: v for k, v in table.items() if k in demo_keys}
    if given and ("pretrain" not in given or "downstream" not in given):
        raise fail("data", "give both pretrain and downstream (and volumes for hybrid arms), or neither (demo data)")
    if given and demo:
        raise fail(f"data.{next(iter(demo))}", "describes the demo's data, which files given in [data] replace")
    return DataSettings(DemoDataConfig(**demo), **given)


def _evaluate(table: dict, fail) -> EvaluateSettings:
    keys = [f.name for f in dataclasses.fields(EvaluateSettings)]
    _known(table, keys, "evaluate.", fail)
    values = dict(table)
    for key in ("protocols", "inits", "tasks_2d", "task_2d_arms"):
        if key in values:
            if not isinstance(values[key], list) or not all(isinstance(v, str) for v in values[key]):
                raise fail(f"evaluate.{key}", f"must be a list of names, got {values[key]!r}")
            values[key] = tuple(values[key])
    settings = EvaluateSettings(**values)
    if not settings.protocols:
        raise fail("evaluate.protocols", "must name at least one protocol")
    for protocol in settings.protocols:
        if protocol not in PROTOCOLS:
            raise fail("evaluate.protocols", f"{protocol!r} is unknown; expected some of {', '.join(PROTOCOLS)}")
    for name in settings.inits:
        if name == "crossd":
            raise fail("evaluate.inits", "lists the regular network's inits; Cross-D arms are evaluated as crossd")
        try:
            kernel_init = get_init(name, "evaluate")
        except CrossdError as exc:
            raise fail("evaluate.inits", exc.message) from None
        if 3 not in kernel_init.spatial_dims:
            raise fail("evaluate.inits", f"{name!r} evaluates 2D data; a study's downstream task is 3D")
    for name in settings.tasks_2d:
        if name not in TASKS_2D:
            raise fail("evaluate.tasks_2d", f"{name!r} is not a 2D task; expected some of {', '.join(TASKS_2D)}")
    if type(settings.task_2d_samples) is not int or settings.task_2d_samples < 1:
        raise fail("evaluate.task_2d_samples", f"must be a positive integer, got {settings.task_2d_samples!r}")
    if settings.slice_pool not in POOLS:
        raise fail("evaluate.slice_pool", f"must be one of {', '.join(POOLS)}, got {settings.slice_pool!r}")
    for key in ("folds", "epochs"):
        if type(getattr(settings, key)) is not int or getattr(settings, key) < 1:
            raise fail(f"evaluate.{key}", f"must be a positive integer, got {getattr(settings, key)!r}")
    return settings


def _references(raw: dict, fail) -> dict[str, str]:
    references = _table(raw, "references", fail) if "references" in raw else dict(REFERENCES)
    for name, label in references.items():
        if not isinstance(label, str):
            raise fail(f"references.{name}", f"must be the column's label (a string), got {label!r}")
    return dict(references)


def _check_arms(config: StudyConfig, fail) -> None:
    names = [a.name for a in config.arms]
    for i, arm in enumerate(config.arms):
        where = f"arms[{i}] ({arm.name})"
        if names.count(arm.name) > 1:
            raise fail(f"{where}.name", "another arm has the same name")
        if arm.name in config.evaluate.inits:
            raise fail(f"{where}.name", "is the name of an evaluated init (evaluate.inits); choose another")
        if arm.source is not None and (arm.source not in names or config.arm(arm.source).source is not None):
            raise fail(f"{where}.source", f"{arm.source!r} is not an arm that trains its own network")
        if arm.compare_with is not None and (arm.compare_with not in names or arm.compare_with == arm.name):
            raise fail(f"{where}.compare_with", f"{arm.compare_with!r} is not another arm of the study")
        if arm.source is not None and arm.pretrain:
            raise fail(f"{where}", "reuses another arm's run (source), so it takes no pretraining settings")
        try:
            resolved = config.pretrain_config(config.arm(arm.source or arm.name), 0, "x.npz", "v.npz", ".")
            resolved.validate()
        except CrossdError as exc:
            raise fail(f"{where}.{exc.field}" if exc.field else where, exc.message) from None
        if arm.blend and resolved.mode != "rotate":
            raise fail(f"{where}.blend", "needs rotate-mode Cross-D kernels (mode = 'rotate')")
        if arm.init == "crossd" and resolved.conv != "crossd":
            raise fail(f"{where}.init", "'crossd' needs a Cross-D network (conv = 'crossd')")
        if arm.init != "crossd" and resolved.conv == "crossd":
            raise fail(f"{where}.init", f"{arm.init!r} needs a regular network (conv = 'regular')")
    task_arms = [a.name for a in config.arms if a.evaluated_in_2d]
    for name in config.evaluate.task_2d_arms:
        if not config.evaluate.tasks_2d:
            raise fail(
                "evaluate.task_2d_arms", "names the Cross-D arms of the 2D tasks, but evaluate.tasks_2d is empty"
            )
        if name not in task_arms:
            raise fail(
                "evaluate.task_2d_arms", f"{name!r} is not a Cross-D arm of the 2D tasks: {', '.join(task_arms)}"
            )
    needs_regular = any(get_init(n).needs_checkpoint for n in config.evaluate.inits)
    if needs_regular and "regular" not in names:
        raise fail("arms", "evaluate.inits need a network: add an arm named 'regular' (conv = 'regular')")
