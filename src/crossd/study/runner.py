"""Run a study: per seed, pretrain every arm (resuming unfinished runs), evaluate every arm and baseline on shared
folds under each protocol, and write the tables (:mod:`crossd.study.summary`).

``output_dir`` holds ``data/`` (the demo's sets, when the study builds them), and per seed ``seed<S>/<arm>/`` (the
pretraining runs: ``checkpoint.pt``, ``model.safetensors``, ``metrics.json``, ``wall_time.json`` with the wall
and CPU seconds and the :func:`~crossd.machine.machine` it ran on),
``seed<S>/checkpoints/<arm>.safetensors`` (the networks the evaluations load) and ``seed<S>/eval*/`` (the
evaluation folders of :mod:`crossd.study.arms`), then ``study.json``.

``shard=(K, N)`` splits one study over N processes sharing ``output_dir``: shard K pretrains every N-th arm, waits
(at most ``wait_seconds``, saying for what) for the other shards' runs, and runs its share of the evaluation jobs
(:mod:`crossd.evaluate.kfold`'s shards); the same study without a shard then merges the job files and writes the
tables.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import safe_open

from crossd.data.npz import load_npz
from crossd.demo.data import build_demo_data
from crossd.demo.tasks_2d import build_task_2d
from crossd.errors import CrossdError, SettingsError
from crossd.evaluate import EvaluateConfig, evaluate
from crossd.io import atomic_write, save_json, save_safetensors, save_text
from crossd.machine import machine
from crossd.models import ModelSpec
from crossd.study.archive import archive, restore, unlike_machine
from crossd.study.arms import Arm
from crossd.study.config import HYBRID, StudyConfig
from crossd.study.records import seed_kernel_energy
from crossd.study.summary import summarise_study, write_study_json
from crossd.study.tables import study_markdown
from crossd.train import PretrainConfig, pretrain
from crossd.train.hybrid import HybridSteps, VolumeBatches
from crossd.train.model import build_model
from crossd.train.optim import build_optimizer

WAIT_SECONDS = 6 * 3600
"""How long a shard waits by default for a pretraining run another shard trains."""

POLL_SECONDS = 20
"""How often a waiting shard looks again."""


@dataclass(frozen=True)
class StudyData:
    """The files a study trains and evaluates on: 2D pretraining images, 3D downstream set, hybrid volumes and
    the 2D tasks by name."""

    pretrain: Path
    downstream: Path
    volumes: Path | None
    tasks_2d: dict[str, Path] = field(default_factory=dict)


def study_data(config: StudyConfig, output_dir: Path) -> StudyData:
    """The files of ``[data]``, or the demo's sets built (or reused) in ``output_dir/data``; the 2D tasks of
    ``[evaluate] tasks_2d`` built (or reused) there too, at the demo's 2D patch size."""
    data, settings = config.data, config.evaluate
    tasks = {
        t: build_task_2d(t, output_dir / "data", data.demo.size_2d, settings.task_2d_samples, data.demo.seed)
        for t in settings.tasks_2d
    }
    if data.pretrain is not None:
        volumes = Path(data.volumes) if data.volumes else None
        return StudyData(Path(data.pretrain), Path(data.downstream), volumes, tasks)
    built = build_demo_data(output_dir / "data", data.demo)
    return StudyData(built.pretrain_path, built.downstream_path, built.volumes_path, tasks)


def is_mine(shard: tuple[int, int] | None, index: int) -> bool:
    """Whether the process of ``shard`` (``(K, N)``, or ``None`` for all) pretrains the ``index``-th arm."""
    return shard is None or index % shard[1] == shard[0] - 1


def wait_for(path: Path, what: str, timeout: float, poll: float = POLL_SECONDS) -> None:
    """Return once ``path`` exists; say once what is awaited (``what``) and raise after ``timeout`` seconds.

    Raises:
        CrossdError: ``path`` did not appear within ``timeout`` seconds.
    """
    if path.is_file():
        return
    print(f"waiting for {what} ({path}), at most {timeout:g} s", flush=True)
    deadline = time.monotonic() + timeout
    while not path.is_file():
        if time.monotonic() >= deadline:
            raise CrossdError(
                f"of {timeout:g} s ran out waiting for {what} ({path}); is that process running?",
                field="wait_seconds",
            )
        time.sleep(min(poll, max(0.0, deadline - time.monotonic())))


def pretraining_run(
    config: StudyConfig,
    arm: Arm,
    seed: int,
    data: StudyData,
    output_dir: Path,
    owner: str | None = None,
    wait_seconds: float = WAIT_SECONDS,
) -> Path:
    """The run folder of ``arm`` for ``seed``, trained first unless finished (an unfinished one is resumed from its
    ``checkpoint.pt``); ``owner`` (e.g. ``"shard 2/3"``) trains it elsewhere: wait until it has finished."""
    out = output_dir / f"seed{seed}" / arm.name
    metrics = out / "metrics.json"
    if owner is not None:
        wait_for(metrics, f"seed {seed}'s pretraining run {arm.name!r}, which {owner} trains", wait_seconds)
    if metrics.is_file():
        return out
    volumes = None if data.volumes is None else str(data.volumes)
    if volumes is None and (arm.volumes_only or {**config.pretrain, **arm.pretrain}.get("volumes") == HYBRID):
        raise SettingsError(f"arm {arm.name!r} trains on the study's volumes, but [data] gives none", field="volumes")
    cfg = config.pretrain_config(arm, seed, str(data.pretrain), volumes, str(out))
    checkpoint = out / "checkpoint.pt"
    resumed = checkpoint.is_file() and not arm.volumes_only
    if resumed:
        cfg.resume = str(checkpoint)
        print(f"seed {seed}: resuming the unfinished pretraining run {out}", flush=True)
    start, cpu_start = time.perf_counter(), time.process_time()
    if arm.volumes_only:
        train_volumes_only(cfg, Path(volumes))
    else:
        pretrain(cfg)
    wall = {
        "seconds": time.perf_counter() - start,
        "cpu_seconds": time.process_time() - cpu_start,  # this process's CPU time: not inflated by other processes
        "machine": machine(),
    }
    if resumed:  # the time before the interruption is not known
        wall["resumed"] = True
    save_json(wall, out / "wall_time.json")  # beside metrics.json, which must stay byte-identical across reruns
    return out


def train_volumes_only(config: PretrainConfig, volumes: Path) -> None:
    """The ``volumes_only`` control: a fresh Cross-D network trained on ``volumes`` alone through its 3D twin,
    with ``config``'s optimiser, for the number of 3D steps a hybrid run of ``config`` takes."""
    images = load_npz(config.data_path)
    torch.manual_seed(config.seed)
    spec = ModelSpec(config.model, "crossd", config.mode, images.num_classes)
    model = build_model(spec)
    optimizer = build_optimizer(model, config)
    batches = VolumeBatches(volumes, config.volume_batch_size, config.seed, spec.num_classes, torch.device("cpu"))
    steps_2d = len(images.splits["train"].labels) // config.batch_size  # the 2D loader drops its last batch
    steps = HybridSteps(model, optimizer, batches, 1, "crossd")
    losses = []
    for epoch in range(config.epochs):
        steps.start_epoch(epoch)
        for step in range(steps_2d // config.volume_every):
            steps(step)
        losses.append(steps.mean_loss())
    out = Path(config.output_dir)
    save_safetensors(model.state_dict(), out / "model.safetensors", metadata=spec.metadata())
    save_json({"epochs": config.epochs, "volume_loss": losses}, out / "metrics.json")


def checkpoint_copy(run_dir: Path, name: str, blend: float = 0.0) -> Path:
    """The run's weights as ``checkpoints/<name>.safetensors`` beside the run (evaluate names methods by checkpoint
    stem); with ``blend``, every 3D kernel ``W`` (K >= 3) becomes ``(1 - blend) W + blend repeat(W[:, :, c])``."""
    target = run_dir.parent / "checkpoints" / f"{name}.safetensors"
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    if not blend:  # atomic: another shard may read the copy as soon as it exists
        return atomic_write(target, lambda tmp: shutil.copyfile(run_dir / "model.safetensors", tmp))
    with safe_open(run_dir / "model.safetensors", "pt") as f:
        metadata, state = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    for key, w in state.items():
        if w.dim() == 5 and w.shape[-1] >= 3 and "rotation_head" not in key:
            plane = w[:, :, w.shape[2] // 2 : w.shape[2] // 2 + 1].expand_as(w)
            state[key] = (1 - blend) * w + blend * plane
    return save_safetensors(state, target, metadata=metadata)


def evaluate_seed(
    config: StudyConfig,
    seed: int,
    runs: dict[str, Path],
    data: StudyData,
    output_dir: Path,
    protocol: str,
    shard: tuple[int, int] | None = None,
) -> None:
    """Evaluate every planned method of one seed under ``protocol`` on the same folds (and, under the 2D tasks'
    protocols, every 2D task)."""
    settings = config.evaluate
    for call, folder in config.plan(protocol):
        methods = [
            (m.init, None if m.run is None else checkpoint_copy(runs[m.run], m.checkpoint, m.blend))
            for m in call.methods
        ]
        evaluate(
            EvaluateConfig(
                data=str(data.downstream if call.task is None else data.tasks_2d[call.task]),
                methods=methods,
                output_dir=str(output_dir / f"seed{seed}" / folder),
                protocol=protocol,
                lr=settings.lr_of(protocol),
                folds=settings.folds,
                repeats=1,
                epochs=settings.epochs,
                seed=seed,
                align=call.align,
                recalibrate_bn=settings.recalibrate_bn,
                arch=config.arch,
                normalize=settings.normalize,
                slice_pool=settings.slice_pool,
                resume=True,
                progress=False,
            ),
            shard,
        )


def pretrain_seed(
    config: StudyConfig,
    seed: int,
    data: StudyData,
    output_dir: Path,
    shard: tuple[int, int] | None = None,
    wait_seconds: float = WAIT_SECONDS,
) -> dict[str, Path]:
    """Every arm's pretraining run of ``seed`` (this shard's own first, then the other shards'), by arm name."""
    training = [a for a in config.arms if a.source is None]
    owners = {
        a.name: None if is_mine(shard, i) else f"shard {i % shard[1] + 1}/{shard[1]}" for i, a in enumerate(training)
    }
    order = sorted(training, key=lambda a: owners[a.name] is not None)  # stable: this shard's own runs first
    runs = {a.name: pretraining_run(config, a, seed, data, output_dir, owners[a.name], wait_seconds) for a in order}
    return {a.name: runs[a.run_name] for a in config.arms}


def write_summary(
    config: StudyConfig, output_dir: Path, markdown: Path | None = None, command: str | None = None
) -> str | None:
    """Summarise ``output_dir`` (every seed that finished, other processes' too): write ``study.json`` and the
    Markdown to ``markdown``, and return the Markdown; ``None`` (nothing written) while a protocol has no seed."""
    summary = summarise_study(config, output_dir)
    if summary is None:
        return None
    write_study_json(summary, output_dir)
    text = study_markdown(summary, command)
    if markdown is not None:
        save_text(text, markdown)
    return text


def run_study(
    config: StudyConfig,
    output_dir: str | Path,
    shard: tuple[int, int] | None = None,
    wait_seconds: float = WAIT_SECONDS,
    archive_dir: str | Path | None = None,
    resume_from: str | Path | None = None,
    markdown: str | Path | None = None,
    command: str | None = None,
) -> str | None:
    """Run every seed of ``config``: pretrain its arms (:func:`pretrain_seed`), reuse the records of
    ``resume_from`` (an archive) where the pretraining reproduces them, evaluate every protocol
    (:func:`evaluate_seed`), archive the seed's records to ``archive_dir`` as soon as it finishes (what a session
    ends with is kept), and print the summary; returns the last summary's Markdown (``None`` while no seed finished
    every protocol, e.g. in a shard)."""
    output_dir = Path(output_dir)
    markdown = None if markdown is None else Path(markdown)
    data = study_data(config, output_dir)

    text = None
    for seed in config.seeds:
        if resume_from is not None and (warning := unlike_machine(Path(resume_from), seed, machine())):
            print(warning, flush=True)
        runs = pretrain_seed(config, seed, data, output_dir, shard, wait_seconds)
        if resume_from is not None:
            restore(Path(resume_from), output_dir, seed)
        for protocol in config.evaluate.protocols:
            evaluate_seed(config, seed, runs, data, output_dir, protocol, shard)
        seed_kernel_energy(config, output_dir / f"seed{seed}")
        if archive_dir is not None:
            archive(config, output_dir, Path(archive_dir), [seed])
        text = write_summary(config, output_dir, markdown, command)
        if text is not None:
            print(f"after seed {seed}:\n{text}", flush=True)
    return text
