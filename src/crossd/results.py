"""What an evaluation produces, as types: one fold's scores, one method's folds and their summary, one paired test,
and a whole ``results.json``.

Classification and segmentation each have a fold type (:class:`FoldResult`, :class:`SegmentationFold`) and a
method type (:class:`MethodSummary`, :class:`SegmentationSummary`); :class:`Comparison` and :class:`Results` serve
both. Every type has ``to_json()`` (plain JSON values) and ``from_json()``; the JSON is the ``results.json`` layout
that older versions wrote, so their files load, and ``from_json(d).to_json() == d`` for every file they wrote.
A method's summary numbers (``{metric}_mean``, ``{metric}_std``) are not stored in the types: they are computed
from the folds (mean and population std, as the paper reports) and written beside them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np

from crossd.errors import DataError
from crossd.metrics import METRIC_NAMES


def _mean_std(values: list[float]) -> tuple[float | None, float | None]:
    """Mean and population std (``ddof=0``) of ``values``; ``(None, None)`` when there are none."""
    return (float(np.mean(values)), float(np.std(values))) if values else (None, None)


@dataclass(kw_only=True)
class RunRecord:
    """What a fold records besides its scores (keyword-only, in the order ``results.json`` lists it): the epoch
    whose weights were scored (from 0), the sizes of the training, validation and test sets, and per-epoch
    ``history`` lists. Files of older versions may lack them (``None``)."""

    best_epoch: int | None = None
    n_train: int | None = None
    n_val: int | None = None
    n_test: int | None = None
    history: dict[str, list[float]] | None = None

    def run_record(self) -> dict:
        """The recorded ones as JSON, leaving out what the fold did not record."""
        return {f.name: getattr(self, f.name) for f in fields(RunRecord) if getattr(self, f.name) is not None}

    @classmethod
    def record_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(RunRecord))


@dataclass
class FoldResult(RunRecord):
    """One classification job's test scores (fractions in ``[0, 1]``) on fold ``fold`` of repeat ``repeat``.

    ``predicted_classes`` is how many distinct classes the test predictions hold (1: the network collapsed to a
    constant); ``best_epoch`` (from 0) is the epoch whose weights were scored; ``history`` holds per-epoch lists
    (``train_loss``, ``val_loss``, ``val_accuracy``, ``lr``). Files of older versions may lack the last ones.
    """

    repeat: int
    fold: int
    accuracy: float
    balanced_accuracy: float
    precision_macro: float
    recall_macro: float
    f1_macro: float
    predicted_classes: int | None = None

    def to_json(self) -> dict:
        out = {"repeat": self.repeat, "fold": self.fold, **{m: getattr(self, m) for m in METRIC_NAMES}}
        if self.predicted_classes is not None:
            out["predicted_classes"] = self.predicted_classes
        return {**out, **self.run_record()}

    @classmethod
    def from_json(cls, record: dict) -> FoldResult:
        names = ("repeat", "fold", *METRIC_NAMES, "predicted_classes", *cls.record_names())
        return cls(**{k: record[k] for k in names if k in record})


@dataclass
class SegmentationFold(RunRecord):
    """One segmentation job's test Dice on fold ``fold`` of repeat ``repeat``: ``dice`` per foreground class
    (``None`` where the class is absent from the test volumes) and ``dice_mean`` over the present ones; the rest as
    for :class:`FoldResult` (history: ``train_loss``, ``val_dice``)."""

    repeat: int
    fold: int
    dice_mean: float
    dice: list[float | None]

    def to_json(self) -> dict:
        out = {"repeat": self.repeat, "fold": self.fold, "dice_mean": self.dice_mean, "dice": list(self.dice)}
        return {**out, **self.run_record()}

    @classmethod
    def from_json(cls, record: dict) -> SegmentationFold:
        names = ("repeat", "fold", "dice_mean", "dice", *cls.record_names())
        return cls(**{k: record[k] for k in names if k in record})


@dataclass
class MethodSummary:
    """One classification method's folds: ``method`` is its label, ``init`` and ``checkpoint`` what built it,
    ``loading`` how (:func:`crossd.evaluate.methods.build_network`'s description)."""

    method: str
    init: str
    checkpoint: str | None
    loading: dict = field(default_factory=dict)
    folds: list[FoldResult] = field(default_factory=list)

    def values(self, metric: str) -> list[float]:
        """``metric`` of every fold, in fold order."""
        return [getattr(f, metric) for f in self.folds]

    def mean(self, metric: str) -> float | None:
        """Mean of ``metric`` over the folds (``None`` without folds)."""
        return _mean_std(self.values(metric))[0]

    def std(self, metric: str) -> float | None:
        """Population std (``ddof=0``) of ``metric`` over the folds (``None`` without folds)."""
        return _mean_std(self.values(metric))[1]

    def summary(self) -> dict[str, float | None]:
        """``{metric}_mean`` and ``{metric}_std`` of every metric, as ``results.json`` lists them."""
        out: dict[str, float | None] = {}
        for name in METRIC_NAMES:
            out[f"{name}_mean"], out[f"{name}_std"] = _mean_std(self.values(name))
        return out

    def to_json(self) -> dict:
        head = {"method": self.method, "init": self.init, "checkpoint": self.checkpoint, "loading": self.loading}
        summary = self.summary() if self.folds else {}
        return {**head, **summary, "folds": [f.to_json() for f in self.folds]}

    @classmethod
    def from_json(cls, record: dict) -> MethodSummary:
        folds = [FoldResult.from_json(f) for f in record.get("folds", [])]
        return cls(record["method"], record["init"], record.get("checkpoint"), record.get("loading", {}), folds)


@dataclass
class SegmentationSummary:
    """One segmentation method's folds (fields as for :class:`MethodSummary`); ``classes`` names the foreground
    classes that ``SegmentationFold.dice`` lists, in order."""

    method: str
    init: str
    checkpoint: str | None
    classes: list[str]
    loading: dict = field(default_factory=dict)
    folds: list[SegmentationFold] = field(default_factory=list)

    def class_dice(self, index: int) -> list[float]:
        """Dice of foreground class ``classes[index]`` on every fold where the class is present."""
        return [f.dice[index] for f in self.folds if f.dice[index] is not None]

    def summary(self) -> dict[str, float | None]:
        """``dice_mean_{mean,std}`` over the folds' mean Dice, and ``dice_<class>_{mean,std}`` per class."""
        out: dict[str, float | None] = {}
        out["dice_mean_mean"], out["dice_mean_std"] = _mean_std([f.dice_mean for f in self.folds])
        for i, name in enumerate(self.classes):
            out[f"dice_{name}_mean"], out[f"dice_{name}_std"] = _mean_std(self.class_dice(i))
        return out

    def mean(self, metric: str = "dice_mean") -> float | None:
        """Mean over folds of ``dice_mean`` or of a class's Dice (``"dice_<class>"``)."""
        return self.summary()[f"{metric}_mean"]

    def std(self, metric: str = "dice_mean") -> float | None:
        """Population std over folds of ``dice_mean`` or of a class's Dice (``"dice_<class>"``)."""
        return self.summary()[f"{metric}_std"]

    def to_json(self) -> dict:
        head = {"method": self.method, "init": self.init, "checkpoint": self.checkpoint, "loading": self.loading}
        summary = self.summary() if self.folds else {}
        return {**head, **summary, "folds": [f.to_json() for f in self.folds]}

    @classmethod
    def from_json(cls, record: dict, classes: list[str]) -> SegmentationSummary:
        """``classes``: the foreground class names (``results.json``'s ``data.classes`` without the background)."""
        folds = [SegmentationFold.from_json(f) for f in record.get("folds", [])]
        return cls(
            record["method"], record["init"], record.get("checkpoint"), list(classes), record.get("loading", {}), folds
        )


@dataclass
class Comparison:
    """A paired two-sided Wilcoxon signed-rank test of one method against the reference over the ``pairs`` (repeat,
    fold) pairs both have: ``mean_difference`` is mean(method - reference) (``None`` without pairs), ``p_value`` is
    ``None`` with a ``note`` saying why when the test is undefined (fewer than 2 pairs, every difference zero)."""

    pairs: int
    mean_difference: float | None = None
    p_value: float | None = None
    note: str = ""

    def to_json(self) -> dict:
        return {
            "pairs": self.pairs,
            "mean_difference": self.mean_difference,
            "p_value": self.p_value,
            "note": self.note,
        }

    @classmethod
    def from_json(cls, record: dict) -> Comparison:
        return cls(record["pairs"], record.get("mean_difference"), record.get("p_value"), record.get("note", ""))


TASKS = ("classification", "segmentation")


@dataclass
class Results:
    """A whole ``results.json``: the task, its settings (``args``), the data's description, every method's folds,
    the reference method (``None`` without a Cross-D method), each other method's :class:`Comparison` with it,
    whether every job finished, and ``not_reported``: ``{label: job files}`` kept on disk but not asked for.

    ``jobs``, ``ran`` and ``discarded`` say, for results returned by an evaluation, how many jobs it has, how many
    the call trained (all processes) and how many finished jobs it discarded because what they read changed
    (``{what: count}``); they describe the call, not the results, and are not written to ``results.json``."""

    task: str
    args: dict
    data: dict
    methods: list[MethodSummary] | list[SegmentationSummary]
    reference: str | None = None
    comparisons: dict[str, Comparison] = field(default_factory=dict)
    complete: bool = True
    not_reported: dict[str, int] = field(default_factory=dict)
    jobs: int | None = field(default=None, compare=False)
    ran: int | None = field(default=None, compare=False)
    discarded: dict[str, int] = field(default_factory=dict, compare=False)

    @property
    def classes(self) -> list[str]:
        """Segmentation's foreground class names (``data.classes`` without the background)."""
        return list(self.data.get("classes", [])[1:])

    def method(self, label: str) -> MethodSummary | SegmentationSummary:
        """The method called ``label``; a ``KeyError`` naming the ones there are otherwise."""
        for m in self.methods:
            if m.method == label:
                return m
        raise KeyError(f"no method {label!r}; methods: {[m.method for m in self.methods]}")

    def to_json(self) -> dict:
        return {
            "task": self.task,
            "args": self.args,
            "data": self.data,
            "results": [m.to_json() for m in self.methods],
            "reference": self.reference,
            "comparisons": {k: c.to_json() for k, c in self.comparisons.items()},
            "complete": self.complete,
            "not_reported": self.not_reported,
        }

    @classmethod
    def from_json(cls, record: dict) -> Results:
        """Results from a ``results.json`` dictionary (files without ``task`` are classification's; without
        ``reference``, ``crossd`` was the reference)."""
        task = record.get("task", "classification")
        if task not in TASKS:
            raise DataError(f"unknown task {task!r}; expected one of {TASKS}")
        data = record.get("data", {})
        if task == "segmentation":
            classes = data.get("classes", [])[1:]
            methods: list = [SegmentationSummary.from_json(m, classes) for m in record["results"]]
        else:
            methods = [MethodSummary.from_json(m) for m in record["results"]]
        return cls(
            task,
            record.get("args", {}),
            data,
            methods,
            record.get("reference", "crossd"),
            {k: Comparison.from_json(c) for k, c in record.get("comparisons", {}).items()},
            record.get("complete", True),
            record.get("not_reported", {}),
        )


def load_results(path: str | Path) -> Results:
    """The :class:`Results` of a ``results.json`` file; a one-line :class:`~crossd.errors.DataError` when it is
    not one."""
    path = Path(path)
    try:
        record = json.loads(path.read_text())
        return Results.from_json(record)
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
        raise DataError(f"{path}: not a results.json ({type(exc).__name__}: {exc})") from None
