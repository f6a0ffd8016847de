"""The k-fold engine of every evaluation task: jobs (method x repeat x fold) and their seeds, devices, data-loading
workers, per-job result files, resume, sharding over processes, and the merge into typed
:class:`~crossd.results.Results` (``results.json``, and ``results.md`` rendered by :mod:`crossd.report.tables`)
with paired tests. Tasks (:mod:`crossd.evaluate.classification`, :mod:`crossd.evaluate.segmentation`) only build
models and loaders, train and score one job, type its record, and name their table's renderer.

``output_dir`` holds:

- ``settings.json``: the settings that change the numbers; a resumed, sharded or parallel run must agree on them.
- ``jobs/<method>/r<repeat>f<fold>.json``: one finished job, written atomically the moment it ends.
- ``results.json``, ``results.md`` (and the task's plot): rebuilt from the job files of the methods asked for;
  job files of other methods stay on disk and are listed under ``not_reported``.
- ``.lock``: the pid and host of the processes using the directory (:mod:`crossd.lock`): one run alone, or the
  shards of one ``K/N`` split together; a merge started while a shard runs is refused.

Scale-out: the jobs are dealt to ``W`` processes method by method (:func:`owner`), so every method's folds spread
evenly over them, however much more one method's folds cost than another's. Under ``torchrun`` rank ``r`` runs its
deal on its ``LOCAL_RANK`` GPU (or the CPU; gloo) and rank 0 merges after a barrier. ``shard=(K, N)`` runs deal
``K - 1`` of ``N`` without any rendezvous and merges nothing; the same run without ``shard`` later merges the shards'
files (and runs what is missing). Each job seeds torch with its own seed and builds its model from a template seeded
by the run's seed alone, so a job's numbers do not depend on which process ran it, or on which other methods were
asked for.
"""

from __future__ import annotations

import copy
import json
import re
import sys
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from crossd.errors import CheckpointError, DataError, OutputError, SettingsError
from crossd.evaluate.folds import Split
from crossd.evaluate.methods import Method, method_names, resolve_preprocessing
from crossd.evaluate.stats import paired_wilcoxon
from crossd.evaluate.task_config import TaskConfig
from crossd.fingerprint import changed_line, describe, fingerprint, same_content
from crossd.io import ensure_writable_dir, plain_json, remove_stale_temps, save_json, save_text, user_path_errors
from crossd.lock import LOCK_NAME, DirectoryLock
from crossd.results import MethodSummary, Results, SegmentationSummary
from crossd.train.distributed import (
    DistInfo,
    all_gather_objects,
    barrier,
    close_distributed,
    init_distributed,
    on_main,
)

RESULTS_JSON, RESULTS_MD, SETTINGS_JSON, JOBS_DIR = "results.json", "results.md", "settings.json", "jobs"
REFERENCE = "crossd"  # the method every other one is compared with (else the first method of init crossd)


@dataclass
class Job:
    """One training run: ``method`` on ``split``, number ``index`` in the run's job list, seeded by ``seed``."""

    index: int
    method: Method
    split: Split
    seed: int

    @property
    def name(self) -> str:
        return f"{self.method.name} r{self.split.repeat}f{self.split.fold}"


class Task(ABC):
    """What differs between evaluation tasks. ``cfg`` is the task's :class:`~crossd.evaluate.task_config.TaskConfig`,
    validated here and with the normalisation and window the checkpoints record where it gives none
    (:func:`crossd.evaluate.methods.resolve_preprocessing`); :meth:`load` sets ``splits`` and ``data_record``."""

    name: str
    metric: str  # the per-fold number the paired tests compare
    splits: list[Split]
    data_record: dict

    def __init__(self, cfg: TaskConfig):
        cfg.validate()
        cfg.normalize, cfg.window = resolve_preprocessing(cfg.methods, cfg.normalize, cfg.window)
        self.cfg = cfg

    def settings(self) -> dict:
        """Every setting as JSON values (``results.json``'s ``args``)."""
        return self.cfg.record()

    def resume_keys(self) -> tuple[str, ...]:
        """The keys of :meth:`settings` that change the numbers: all but the config's fields marked
        :data:`crossd.settings.RUN_ONLY`."""
        return self.cfg.resume_keys()

    @abstractmethod
    def load(self) -> None:
        """Read the data and make the splits (validation and slow work go here, before any job)."""

    @abstractmethod
    def build(self, method: Method) -> tuple[nn.Module, dict]:
        """The template network of ``method`` and a description of how it was loaded."""

    @abstractmethod
    def run_job(self, job: Job, template: nn.Module, device: torch.device, on_epoch: Callable[[], None]) -> dict:
        """Train a copy of ``template`` on ``job.split`` and score it; the fold record (without repeat/fold)."""

    @abstractmethod
    def method_summary(self, method: Method, loading: dict, folds: list[dict]) -> MethodSummary | SegmentationSummary:
        """The typed results of ``method`` from its fold records (each with ``repeat`` and ``fold``)."""

    @abstractmethod
    def render(self, results: Results) -> str:
        """The ``results.md`` text."""

    def plot(self, results: Results, out_dir: Path) -> None:  # noqa: B027 (optional hook)
        """Extra figures (none by default)."""

    @property
    def epochs(self) -> int:
        return self.cfg.resolved("epochs")


def job_seed(seed: int, split: Split) -> int:
    """The same for every method on a fold, so heads start equal and batches come in the same order."""
    return seed * 100_003 + split.repeat * 1_000 + split.fold


def fold_loader(dataset: Dataset, batch_size: int, train: bool, seed: int, workers: int) -> DataLoader:
    """A job's loader: shuffled by a generator seeded with ``seed`` when ``train`` (with the last batch dropped
    when it would hold a single sample: BatchNorm needs 2), in order otherwise."""
    n = len(dataset)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=train,
        drop_last=train and n % batch_size == 1 and n > 1,
        num_workers=workers,
        generator=torch.Generator().manual_seed(seed) if train else None,
    )


def fit_best(
    model: nn.Module, epochs: int, train_epoch: Callable[[int], dict[str, float]], score: Callable[[dict], float]
) -> tuple[int, dict[str, list[float]]]:
    """Run ``train_epoch(epoch) -> row`` for every epoch and load the weights of the epoch with the highest
    ``score(row)`` (ties keep the earlier). Returns the best epoch (from 0) and the history ``{key: [per epoch]}``."""
    history: dict[str, list[float]] = {}
    best_score, best_epoch, best_state = None, 0, None
    for epoch in range(epochs):
        row = train_epoch(epoch)
        for key, value in row.items():
            history.setdefault(key, []).append(value)
        if best_score is None or score(row) > best_score:
            best_score, best_epoch = score(row), epoch
            best_state = copy.deepcopy({k: v.detach().cpu() for k, v in model.state_dict().items()})
    if best_state is not None:
        model.load_state_dict(best_state)
    return best_epoch, history


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """``"K/N"`` (``1 <= K <= N``) -> ``(K, N)``; a one-line :class:`~crossd.errors.SettingsError` otherwise."""
    if text is None:
        return None
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not match or not 1 <= int(match[1]) <= int(match[2]):
        raise SettingsError(f"{text}: expected K/N with 1 <= K <= N, e.g. 1/4", field="shard")
    return int(match[1]), int(match[2])


def _job_dir(method: str) -> str:
    return re.sub(r"[^A-Za-z0-9._@+=-]", "_", method).lstrip(".") or "_"


class Store:
    """The files of one output directory (see the module docstring). ``sources``: the fingerprint of each
    method's checkpoint (:mod:`crossd.fingerprint`), recorded in its job files and compared with theirs."""

    def __init__(self, out_dir: str | Path):
        self.out = Path(out_dir)
        self.jobs = self.out / JOBS_DIR
        self.sources: dict[str, dict] = {}

    def job_path(self, method: str, split: Split) -> Path:
        return self.jobs / _job_dir(method) / f"r{split.repeat}f{split.fold}.json"

    def mismatch(self, stored: dict, method: Method) -> tuple[str, bool] | None:
        """Why job file content ``stored`` is not a job of ``method`` (``None`` when it is: the same init and a
        checkpoint of the same content), and whether the reason is that the checkpoint file of the same path now
        holds other content (which ``allow_changed`` may discard) rather than the label given to another init or
        checkpoint (always refused)."""
        old, new = stored.get("source"), self.sources.get(method.name)
        if stored.get("init") == method.init and old is not None and new is not None:
            if same_content(old, new):
                return None  # the same checkpoint, however its path is spelled
            if old["path"] == new["path"]:
                then, now = describe(old), describe(new)
                return (
                    f"was computed from {method.checkpoint} as it was then ({then}); it holds other content now "
                    f"({now})",
                    True,
                )
        elif stored.get("init") == method.init and stored.get("checkpoint") == method.checkpoint:
            return None  # job files written before fingerprints: paths as text
        return (
            f"holds method {method.name!r} with init {stored.get('init')!r} and checkpoint "
            f"{(old or {}).get('path', stored.get('checkpoint'))!r}",
            False,
        )

    def read_job(self, method: Method, split: Split) -> dict | None:
        """The stored fold record of ``method`` on ``split``, or ``None``; a one-line error when the file holds
        another init or checkpoint under the same label."""
        path = self.job_path(method.name, split)
        if not path.is_file():
            return None
        stored = _read_json(path)
        problem = self.mismatch(stored, method)
        if problem is not None:
            raise OutputError(
                f"{path} {problem[0]}; use another folder, or move {path.parent} away", field="output_dir"
            )
        return stored["record"]

    def discard_changed(self, methods: list[Method], allow_changed: bool) -> dict[str, int]:
        """Check every stored job file of ``methods`` before any training: one whose checkpoint has other
        content now is refused in one line, or with ``allow_changed`` deleted (a method's folds never mix two
        checkpoints). Returns ``{method: number of job files deleted}``."""
        discarded: dict[str, int] = {}
        for method in methods:
            for path in sorted((self.jobs / _job_dir(method.name)).glob("r*f*.json")):
                problem = self.mismatch(_read_json(path), method)
                if problem is None:
                    continue
                why, changed = problem
                if not (changed and allow_changed):
                    hint = "pass allow_changed to discard its finished jobs, " if changed else ""
                    raise OutputError(
                        f"{path} {why}; {hint}use another folder, or move {path.parent} away",
                        field="output_dir",
                        mentions=("allow_changed",),
                    )
                path.unlink()
                discarded[method.name] = discarded.get(method.name, 0) + 1
        return discarded

    def discard_all(self) -> int:
        """Delete every job file (the data changed: no finished job holds)."""
        files = sorted(self.jobs.glob("*/r*f*.json"))
        for path in files:
            path.unlink()
        return len(files)

    def write_job(self, job: Job, record: dict) -> None:
        m = job.method
        content = {"method": m.name, "init": m.init, "checkpoint": m.checkpoint, "seed": job.seed}
        content.update(source=self.sources.get(m.name), record=record)
        save_json(content, self.job_path(m.name, job.split))

    def stored_methods(self) -> dict[str, int]:
        """``{method label: number of job files}`` of every method with files on disk."""
        out: dict[str, int] = {}
        for folder in sorted(p for p in self.jobs.glob("*") if p.is_dir()):
            files = sorted(folder.glob("r*f*.json"))
            if files:
                out[_read_json(files[0]).get("method", folder.name)] = len(files)
        return out


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise OutputError(f"{path}: not valid JSON ({exc}); move it away to run that part again") from None


def _data_fingerprint(data: str | Path) -> dict | None:
    """The fingerprint of the data path, or ``None`` for data that is not a path (``"mni152"``)."""
    try:
        exists = Path(data).exists()
    except OSError:
        exists = True  # let fingerprint() say why it cannot be read
    return fingerprint(data, "data") if exists else None


def _show(value: Any) -> str:
    return json.dumps(value) if isinstance(value, dict | list) else str(value)


def check_settings(task: Task, store: Store, shard: tuple[int, int] | None) -> tuple[dict, bool]:
    """The run's settings after checking them against the directory: a finished earlier run needs ``resume``
    (shards and merges of shards do not), and every setting that changes numbers must match the stored ones.
    The data is compared by content (:mod:`crossd.fingerprint`), not by path. Returns the settings and whether
    the data holds other content than the stored run's (allowed only with ``allow_changed``)."""
    record = plain_json(task.settings())
    results = store.out / RESULTS_JSON
    previous = _read_json(results) if results.is_file() else None
    if previous and not task.cfg.resume and shard is None and any(m.get("folds") for m in previous["results"]):
        raise OutputError(f"{results} already holds results; resume it or use another folder", field="output_dir")
    record["data_fingerprint"] = data = _data_fingerprint(task.cfg.data)
    stored = store.out / SETTINGS_JSON
    before = _read_json(stored) if stored.is_file() else (previous or {}).get("args")
    if before is None:
        return record, False
    old_data = before.get("data_fingerprint")
    by_content = old_data is not None and data is not None
    defaults = {f.name: f.default for f in fields(task.cfg)}  # a setting added since that run: its default
    keys = [
        k
        for k in task.resume_keys()
        if before.get(k, defaults.get(k)) != record.get(k) and not (k == "data" and by_content)
    ]
    if keys:
        changed = [f"{k} ({_show(before.get(k, defaults.get(k)))} -> {_show(record.get(k))})" for k in keys]
        raise SettingsError(f"{store.out}: cannot resume, settings differ in {'; '.join(changed)}", mentions=keys)
    if by_content and not same_content(old_data, data):
        if not task.cfg.allow_changed:
            raise DataError(
                f"{changed_line(str(task.cfg.data), old_data, data)}; pass allow_changed to discard the finished "
                "jobs and evaluate the new content",
                field="data",
                mentions=("allow_changed",),
            )
        return record, True
    return record, False


def _adopt_legacy_results(store: Store, methods: list[Method]) -> None:
    """Folds of a ``results.json`` written before job files existed (no ``settings.json``) become job files."""
    path = store.out / RESULTS_JSON
    if not path.is_file():
        return
    by_name = {m.name: m for m in methods}
    for entry in _read_json(path).get("results", []):
        method = by_name.get(entry["method"])
        if method is None or (entry["init"], entry["checkpoint"]) != (method.init, method.checkpoint):
            continue
        for fold in entry["folds"]:
            split = Split(fold["repeat"], fold["fold"], np.empty(0), np.empty(0), np.empty(0))
            if not store.job_path(method.name, split).is_file():
                store.write_job(Job(-1, method, split, -1), fold)


def owner(index: int, methods: int, splits: int, processes: int) -> int:
    """The process (``0 .. processes - 1``) that runs job ``index`` of a split-major job list of ``methods`` methods
    on ``splits`` splits: the jobs are dealt round-robin in method-major order, so each method's jobs go to the
    processes in turn (with two methods and two processes, ``index % 2`` would give each process one method's jobs
    only, and a Cross-D fine-tune costs about three regular ones), and a process runs its jobs split by split."""
    split, method = divmod(index, methods)
    return (method * splits + split) % processes


def _process(cfg: Any, shard: tuple[int, int] | None) -> tuple[DistInfo, int, int]:
    """This process (device, collective group) and its share ``(index, count)`` of the job list."""
    device = cfg.device or "auto"
    try:
        info = init_distributed(device)
    except RuntimeError as exc:
        raise SettingsError(f"{device!r} is not a device ({exc})", field="device") from None
    if shard is not None:
        if info.distributed:
            raise SettingsError(
                "splits jobs without torchrun; under torchrun the ranks share the jobs already", field="shard"
            )
        return info, shard[0] - 1, shard[1]
    return info, info.rank, info.world_size


def merge(task: Task, store: Store, methods: list[Method], loadings: dict, settings: dict) -> Results:
    """``results.json``'s content rebuilt from the job files of ``methods``."""
    entries = []
    for m in methods:
        folds = []
        for split in task.splits:
            record = store.read_job(m, split)
            if record is not None:
                folds.append({"repeat": split.repeat, "fold": split.fold, **record})
        entries.append(task.method_summary(m, loadings[m.name], folds))
    reference = next((e for e in entries if e.method == REFERENCE), None)
    reference = reference or next((e for e in entries if e.init == REFERENCE), None)
    comparisons = {
        e.method: paired_wilcoxon(reference.folds, e.folds, metric=task.metric)
        for e in entries
        if reference is not None and e is not reference
    }
    asked = {m.name for m in methods}
    return Results(
        task=task.name,
        args=settings,
        data=task.data_record,
        methods=entries,
        reference=None if reference is None else reference.method,
        comparisons=comparisons,
        complete=all(len(e.folds) == len(task.splits) for e in entries),
        not_reported={k: n for k, n in store.stored_methods().items() if k not in asked},
    )


def write_results(task: Task, store: Store, results: Results) -> None:
    save_json(results.to_json(), store.out / RESULTS_JSON)
    text = task.render(results)
    if results.not_reported:
        kept = ", ".join(f"{name} ({n} jobs)" for name, n in results.not_reported.items())
        text += f"\nKept in `{JOBS_DIR}/`, not reported here (not asked for in this run): {kept}.\n"
    save_text(text, store.out / RESULTS_MD)
    if any(e.folds for e in results.methods):
        task.plot(results, store.out)


LOG_INTERVAL_S = 60.0  # a log file (nohup, SLURM) gets at most one progress line per this many seconds


def progress_bar(total: int, enabled: bool) -> tqdm:
    """The evaluation's bar of ``total`` epochs: live on a terminal; in a log file (stderr not a terminal) at most
    one line per :data:`LOG_INTERVAL_S`. tqdm's monitor thread redraws a bar that has not printed for
    ``maxinterval`` s (default 10), so that is pinned to the same interval: no extra line between the minute's."""
    log_file = not sys.stderr.isatty()
    return tqdm(
        total=total,
        disable=not enabled,
        desc="evaluate",
        unit="epoch",
        mininterval=LOG_INTERVAL_S if log_file else 0.1,
        maxinterval=LOG_INTERVAL_S if log_file else 10.0,
    )


def run_kfold(task: Task, shard: tuple[int, int] | None = None) -> Results:
    """Run this process's share of ``task``'s jobs, then merge (see the module docstring).

    Returns the merged results (written to ``results.json`` by the merging process: a single process, or rank 0
    of ``torchrun``; a shard writes only its job files), with ``jobs`` (the evaluation's) and ``ran`` (those this
    call trained, all processes). Job files of finished jobs are never rewritten.
    """
    cfg = task.cfg
    store = Store(cfg.output_dir)
    info, index, count = _process(cfg, shard)
    merging = shard is None and info.is_main
    lock = DirectoryLock(store.out / LOCK_NAME, shard)
    try:

        def take() -> None:
            with user_path_errors("output_dir", store.out, OutputError):  # a folder that cannot hold the lock
                lock.acquire()

        on_main(info, take)  # one lock per run (torchrun: rank 0 takes it for all ranks)
        try:
            return _run_locked(task, store, info, index, count, merging, shard, lock.sole)
        finally:
            if info.is_main:
                lock.release()
    finally:
        if info.distributed:
            close_distributed()


def _run_locked(
    task: Task,
    store: Store,
    info: DistInfo,
    index: int,
    count: int,
    merging: bool,
    shard: tuple[int, int] | None,
    sole: bool,
) -> Results:
    cfg = task.cfg
    methods = method_names(cfg.methods)
    store.sources = {
        m.name: fingerprint(m.checkpoint, "methods", CheckpointError, full=True) for m in methods if m.checkpoint
    }
    settings, data_changed = check_settings(task, store, shard)

    def discard() -> dict[str, int]:
        out = {"all methods (the data changed)": store.discard_all()} if data_changed else {}
        out.update(store.discard_changed(methods, cfg.allow_changed))
        for what, n in out.items():
            if n:
                print(f"note: discarded {n} finished job(s) of {what}: computed from other content", file=sys.stderr)
        return out

    discarded = on_main(info, discard) or {}
    task.load()
    templates, loadings = {}, {}
    for method in methods:  # build everything first: bad checkpoints fail before any training
        torch.manual_seed(cfg.seed)  # a random init depends on the seed only, not on the other methods
        templates[method.name], loadings[method.name] = task.build(method)
    on_main(info, lambda: [ensure_writable_dir(store.jobs / _job_dir(m.name), "methods") for m in methods])
    if info.is_main:  # (above: every job file's folder before any job, for a label too long or a read-only folder)
        for folder in (store.out, *(p for p in (store.out / "jobs").glob("*") if p.is_dir())):
            remove_stale_temps(folder, min_age=0 if sole else 60)  # a killed run's; other shards may be writing
        if cfg.resume and not (store.out / SETTINGS_JSON).is_file():
            _adopt_legacy_results(store, methods)
        save_json(settings, store.out / SETTINGS_JSON)
    jobs = [
        Job(i, method, split, job_seed(cfg.seed, split))
        for i, (split, method) in enumerate((s, m) for s in task.splits for m in methods)
    ]
    mine = [
        job
        for job in jobs
        if owner(job.index, len(methods), len(task.splits), count) == index
        and store.read_job(job.method, job.split) is None
    ]
    bar = progress_bar(len(mine) * task.epochs, enabled=cfg.progress and info.is_main)
    try:
        for job in mine:
            bar.set_postfix(job=job.name, refresh=False)  # no extra line in a log file
            torch.manual_seed(job.seed)
            store.write_job(job, task.run_job(job, templates[job.method.name], info.device, lambda: bar.update(1)))
            if merging and not info.distributed:
                write_results(task, store, merge(task, store, methods, loadings, settings))
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM as the CLI raises it: say what is kept and how to go on
        saved = sum(store.read_job(job.method, job.split) is not None for job in jobs)
        raise type(exc)(
            f"with {saved} of {len(jobs)} jobs saved in {store.out / 'jobs'}; resume with the same settings to run "
            "the rest"
        ) from None
    finally:
        bar.close()
    barrier(info)
    results = merge(task, store, methods, loadings, settings)
    if merging:
        write_results(task, store, results)
    results.discarded = discarded
    results.jobs = len(jobs)
    results.ran = sum(all_gather_objects(len(mine), info))  # jobs trained by this call, all processes
    return results
