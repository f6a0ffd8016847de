"""A study's arms and its evaluation plan: which 3D networks each evaluation folder compares, and under which
label each of them becomes a row of the tables.

An arm pretrains a network (its :class:`crossd.train.PretrainConfig` fields) and is evaluated with one 3D init.
Besides ordinary arms there are four kinds (study 4 and 7's controls):

- ``volumes_only``: no 2D batch at all; a fresh Cross-D network learns from the hybrid volumes alone, through its
  3D twin, for as many 3D steps as a hybrid run takes (:func:`crossd.study.runner.train_volumes_only`);
- ``source``: reuse another arm's pretraining run (no training of its own);
- ``align``: transfer ``shift`` kernels rolled by ``(1, 1, 1)`` (evaluated in a folder of its own, ``eval_aligned``);
- ``blend`` b: transfer ``(1 - b) W + b repeat(W[c])``: off-plane voxels pulled towards the trained centre plane
  (``rotate`` kernels only).

Folders (one set per protocol, each name followed by the protocol's tag): ``eval`` holds the baselines (the
``regular`` arm under every init of ``[evaluate] inits``) and every Cross-D arm; ``eval_aligned`` the aligned arms;
``eval_<arm>`` each other regular-network arm (its init's name would clash with the baselines' there). This is the
layout ``benchmarks/transfer_study.py`` wrote, so its archives are read as they are. ``eval2d_<task>`` holds each
2D task of ``[evaluate] tasks_2d`` (:func:`task_plan`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from crossd.convert.inits import get_init
from crossd.errors import SettingsError

REGULAR = "regular"
"""The arm whose network the baseline inits (``i3d``, ``acs``, ...) are built from."""


@dataclass(frozen=True)
class Arm:
    """One pretraining arm: ``name``, the PretrainConfig fields it sets (``pretrain``), the 3D init it is
    evaluated with (``"crossd"``, or ``"i3d"``/``"acs"``/... for regular networks), the controls of the module
    doc (``volumes_only``, ``source``, ``align``, ``blend``) and ``compare_with``: another arm this one is a variant
    of (its tables get a column of the paired test against that arm: a cheaper setting against the full one)."""

    name: str
    description: str = ""
    init: str = "crossd"
    source: str | None = None
    align: bool = False
    blend: float = 0.0
    volumes_only: bool = False
    compare_with: str | None = None
    pretrain: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        get_init(self.init, "to_3d", field="init")
        if not 0 <= self.blend <= 1:
            raise SettingsError(f"must lie in [0, 1], got {self.blend}", field="blend")
        if self.align and self.init != "crossd":
            raise SettingsError("applies to Cross-D shift kernels (init 'crossd')", field="align")
        if self.volumes_only and self.source:
            raise SettingsError("a volumes_only arm trains its own network", field="source")

    @property
    def run_name(self) -> str:
        """The pretraining run this arm's network comes from (its own, or its ``source``'s)."""
        return self.source or self.name

    @property
    def evaluated_in_2d(self) -> bool:
        """Whether the 2D tasks may evaluate this arm's network: a Cross-D arm whose 2D network is its own (aligned
        and blended arms differ from their source only in their 3D kernels)."""
        return self.init == "crossd" and not self.align and not self.blend


@dataclass(frozen=True)
class PlannedMethod:
    """One row of a folder: ``label`` (the tables' name), ``init`` and the run whose network it transfers
    (``None``: no checkpoint), copied as ``checkpoints/<checkpoint>.safetensors`` (blended by ``blend``)."""

    label: str
    init: str
    run: str | None
    checkpoint: str | None
    blend: float = 0.0


@dataclass(frozen=True)
class EvaluationCall:
    """One ``crossd evaluate`` run of a seed: its folder (without the protocol's tag) and methods."""

    folder: str
    align: bool
    methods: tuple[PlannedMethod, ...]
    task: str | None = None
    """The 2D task evaluated (``None``: the study's 3D downstream set)."""


def evaluation_plan(arms: tuple[Arm, ...], inits: tuple[str, ...]) -> list[EvaluationCall]:
    """The evaluation folders of a study and what each compares (see the module doc); empty folders left out."""
    regular = {init: REGULAR if get_init(init).needs_checkpoint else None for init in inits}
    baselines = [PlannedMethod(init, init, regular[init], regular[init]) for init in inits]

    def own(arm: Arm) -> PlannedMethod:
        return PlannedMethod(arm.name, arm.init, arm.run_name, arm.name, arm.blend)

    crossd = [a for a in arms if a.init == "crossd"]
    calls = [
        EvaluationCall("eval", False, (*baselines, *(own(a) for a in crossd if not a.align))),
        EvaluationCall("eval_aligned", True, tuple(own(a) for a in crossd if a.align)),
        *(EvaluationCall(f"eval_{a.name}", False, (own(a),)) for a in arms if a.init != "crossd" and a.name != REGULAR),
    ]
    return [c for c in calls if c.methods]


def task_plan(arms: tuple[Arm, ...], task: str, only: tuple[str, ...] = ()) -> EvaluationCall:
    """The folder ``eval2d_<task>`` of a 2D task: the regular network as it was trained (``regular2d``), a random
    init and the network of every Cross-D arm :attr:`Arm.evaluated_in_2d` as a 2D network (of the arms ``only``
    names, when it names any)."""
    methods = (
        PlannedMethod("regular2d", "regular2d", REGULAR, REGULAR),
        PlannedMethod("random", "random", None, None),
        *(
            PlannedMethod(a.name, a.init, a.run_name, a.name)
            for a in arms
            if a.evaluated_in_2d and (not only or a.name in only)
        ),
    )
    return EvaluationCall(f"eval2d_{task}", False, methods, task)


def label_of(call: EvaluationCall, record: dict) -> str | None:
    """The planned label of one method record of the folder's ``results.json`` (matched on its init and the stem
    of its checkpoint file, the checkpoint copy's name), ``None`` for a method the plan does not hold."""
    checkpoint = record.get("checkpoint")
    stem = None if checkpoint is None else checkpoint.replace("\\", "/").rsplit("/", 1)[-1].removesuffix(".safetensors")
    for method in call.methods:
        if method.init == record["init"] and method.checkpoint == stem:
            return method.label
    return None
