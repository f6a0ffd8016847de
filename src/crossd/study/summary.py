"""A study's summary: every arm's folds pooled over the seeds that finished a protocol, paired tests against the
reference arms, and ``study.json``.

A fold's ``repeat`` becomes ``1000 * seed + repeat`` when pooled, so that paired tests pair the same (seed, fold).
``study.json`` keeps the layout ``benchmarks/transfer_study.py`` wrote (``args``, ``rows`` of the first protocol,
``by_protocol``, ``seeds``), which ``crossd demo --study`` reads (:func:`crossd.report.study.read_study`), plus
the pretraining records.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from crossd.convert.inits import get_init
from crossd.evaluate.stats import paired_wilcoxon
from crossd.io import save_json
from crossd.results import Comparison, FoldResult, Results
from crossd.study.arms import REGULAR, EvaluationCall, label_of
from crossd.study.config import StudyConfig
from crossd.study.records import PretrainRecord, pretrain_records


@dataclass
class StudyRow:
    """One method under one protocol, pooled over seeds x folds: mean ± population std of test accuracy
    (fractions), the std of its per-seed means, and its paired :class:`Comparison` with each reference arm and
    with the arm it is a variant of (``compare_with``), keyed by their names."""

    method: str
    n: int
    mean: float
    std: float
    seed_mean_std: float
    comparisons: dict[str, Comparison] = field(default_factory=dict)

    def to_json(self) -> dict:
        row = {"method": self.method, "n": self.n, "mean": self.mean, "std": self.std}
        row["seed_mean_std"] = self.seed_mean_std
        return {**row, **{f"vs_{ref}": c.to_json() for ref, c in self.comparisons.items()}}


TASK_REFERENCES = {"regular2d": "regular 2D", "random": "random"}
"""What every network is compared with on a 2D task: the regular network as trained, and a random init."""


@dataclass
class StudySummary:
    """The tables' contents: rows per protocol (best first), the seeds each protocol pooled, each arm's
    :class:`PretrainRecord`, and per 2D task the rows and seeds of each of its protocols (tasks and protocols
    without a finished seed left out)."""

    config: StudyConfig
    by_protocol: dict[str, list[StudyRow]]
    seeds: dict[str, list[int]]
    pretraining: dict[str, PretrainRecord]
    by_task: dict[str, dict[str, list[StudyRow]]] = field(default_factory=dict)
    task_seeds: dict[str, dict[str, list[int]]] = field(default_factory=dict)

    def wall_seconds(self, method: str) -> float | None:
        """Median pretraining wall time of the run behind ``method`` (a baseline's is the ``regular`` arm's)."""
        runs = {a.name: a.run_name for a in self.config.arms}
        runs.update({i: REGULAR for i in self.config.evaluate.inits if get_init(i).needs_checkpoint})
        run = runs.get(method)
        record = self.pretraining.get(run) if run else None
        return record.seconds if record else None

    def _task_json(self, task: str, protocol: str) -> dict:
        return {"seeds": self.task_seeds[task][protocol], "rows": [r.to_json() for r in self.by_task[task][protocol]]}

    def to_json(self) -> dict:
        first = self.config.evaluate.protocols[0]
        args = {
            "config": self.config.path,
            "arch": self.config.arch,
            "protocol": first,
            "protocols": list(self.config.evaluate.protocols),
            "seeds": self.seeds[first],
            "folds": self.config.evaluate.folds,
        }
        return {
            "args": args,
            "rows": [r.to_json() for r in self.by_protocol[first]],
            "by_protocol": {p: [r.to_json() for r in rows] for p, rows in self.by_protocol.items()},
            "seeds": self.seeds,
            "pretraining": {name: vars(record) for name, record in self.pretraining.items()},
            "tasks_2d": {
                task: {p: self._task_json(task, p) for p in protocols} for task, protocols in self.by_task.items()
            },
        }


def gather(
    config: StudyConfig, output_dir: Path, plan: list[tuple[EvaluationCall, str]]
) -> tuple[dict[str, list[FoldResult]], list[int]]:
    """The folds of every method of ``plan``'s folders (from :meth:`StudyConfig.plan`) over the study's seeds whose
    folders have all finished (so parallel processes agree), and those seeds."""
    per_method: dict[str, list[FoldResult]] = {}
    seeds = []
    for seed in config.seeds:
        files = [(call, output_dir / f"seed{seed}" / folder / "results.json") for call, folder in plan]
        if not all(path.is_file() for _, path in files):
            continue
        loaded = [(call, Results.from_json(json.loads(path.read_text()))) for call, path in files]
        if not all(results.complete for _, results in loaded):
            continue
        seeds.append(seed)
        for call, results in loaded:
            for method in results.methods:
                label = label_of(call, method.to_json())
                if label is not None:
                    folds = [replace(f, repeat=1000 * seed + f.repeat) for f in method.folds]
                    per_method.setdefault(label, []).extend(folds)
    return per_method, seeds


def summarise(
    config: StudyConfig, per_method: dict[str, list[FoldResult]], seeds: list[int], references: dict[str, str]
) -> list[StudyRow]:
    """One :class:`StudyRow` per method, best mean first, compared with each of ``references`` it has."""
    rows = []
    for name, folds in per_method.items():
        accuracy = np.array([f.accuracy for f in folds])
        seed_means = [np.mean([f.accuracy for f in folds if f.repeat // 1000 == s]) for s in seeds]
        variant_of = {a.name: a.compare_with for a in config.arms if a.compare_with}
        refs = [*references, *([variant_of[name]] if name in variant_of else [])]
        comparisons = {
            ref: paired_wilcoxon(per_method[ref], per_method[name])
            for ref in dict.fromkeys(refs)
            if ref in per_method and ref != name
        }
        rows.append(
            StudyRow(
                name, len(folds), float(accuracy.mean()), float(accuracy.std()), float(np.std(seed_means)), comparisons
            )
        )
    return sorted(rows, key=lambda r: -r.mean)


def summarise_study(config: StudyConfig, output_dir: Path) -> StudySummary | None:
    """The :class:`StudySummary` of ``output_dir``, or ``None`` while some protocol has no finished seed."""
    by_protocol, seeds = {}, {}
    for protocol in config.evaluate.protocols:
        plan = [(call, folder) for call, folder in config.plan(protocol) if call.task is None]
        per_method, seeds[protocol] = gather(config, output_dir, plan)
        by_protocol[protocol] = summarise(config, per_method, seeds[protocol], config.references)
    if not all(seeds.values()):
        return None
    by_task: dict[str, dict[str, list[StudyRow]]] = {}
    task_seeds: dict[str, dict[str, list[int]]] = {}
    for task in config.evaluate.tasks_2d:
        for protocol in config.evaluate.task_protocols():
            plan = [(call, folder) for call, folder in config.plan(protocol) if call.task == task]
            per_method, finished = gather(config, output_dir, plan)
            if finished:
                by_task.setdefault(task, {})[protocol] = summarise(config, per_method, finished, TASK_REFERENCES)
                task_seeds.setdefault(task, {})[protocol] = finished
    pretrained = sorted(set().union(*seeds.values()))
    records = pretrain_records(config, output_dir, pretrained)
    return StudySummary(config, by_protocol, seeds, records, by_task, task_seeds)


def write_study_json(summary: StudySummary, output_dir: Path) -> Path:
    """``output_dir/study.json`` (see the module doc)."""
    return save_json(summary.to_json(), output_dir / "study.json")
