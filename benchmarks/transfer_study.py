"""Does 2D-pretrained Cross-D transfer to 3D better than inflating 2D kernels? A multi-seed study on the demo data.

For every seed: pretrain each variant on the demo's 2D MRI set (``crossd.train.pretrain``), then evaluate all 3D
inits on the demo's 3D set with shared folds (``crossd.evaluate.evaluate``) under each protocol of ``--protocol``
(``bn``: convolutions frozen, BatchNorm + head trained; ``finetune``: everything trained, at ``--finetune-lr``).
The summary of each protocol pools every (seed, fold) pair of the seeds on disk that have finished it (parallel
processes share one output folder; each table names its seeds): mean ± population std of test accuracy, the mean
of per-seed means ± their std, and a paired Wilcoxon signed-rank test of each method against I3D, ACS, the fair
hybrid baselines and the published Cross-D (``shift``), per protocol and side by side. Results go to
``<output-dir>/study.json`` and the Markdown tables to ``--markdown`` (``docs/experiments.md`` keeps the runs we
report).

    python benchmarks/transfer_study.py --seeds 0 1 2 3 4 --output-dir runs/study --markdown runs/study/study.md
    python benchmarks/transfer_study.py --protocol bn finetune --variants regular project project_grid ...

Finished pretraining runs and evaluation folds are reused, so an interrupted study continues where it stopped.
``--shard K/N`` splits one study over N processes on the same output folder: shard K pretrains every N-th variant
(waiting for the other shards' runs) and runs its share of the evaluation jobs (``crossd.evaluate``'s shards); the
same command without ``--shard`` then merges the job files and writes the tables. ``--archive DIR`` copies the
small records of the run (fold results or job files, pretraining metrics, kernel energies; no checkpoints) to DIR;
``--summarise-only --output-dir DIR`` remakes the tables from them on a machine that has no run folder, and
``--resume-from DIR`` continues an unfinished seed there (the studies in ``docs/experiments.md`` keep their records
under ``benchmarks/results/``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open

from crossd.data.npz import NpzData, load_npz
from crossd.demo.data import (
    DemoDataConfig,
    build_demo_data,
)
from crossd.evaluate import EvaluateConfig, evaluate
from crossd.evaluate.kfold import parse_shard
from crossd.evaluate.results import Comparison, FoldResult, load_results
from crossd.evaluate.stats import paired_wilcoxon
from crossd.io import atomic_write, save_json, save_safetensors, save_text
from crossd.models import ModelSpec
from crossd.report.tables import format_comparison, markdown_table
from crossd.train import PretrainConfig, pretrain
from crossd.train.hybrid import HybridSteps, VolumeBatches
from crossd.train.model import build_model
from crossd.train.optim import build_optimizer


@dataclass(frozen=True)
class Variant:
    """A pretraining variant: its label, the PretrainConfig fields it changes, and how its 3D model is built.

    ``init`` is the 3D init it is evaluated with (``"crossd"``, or ``"i3d"``/``"acs"`` for regular networks);
    ``volumes_only`` trains no 2D batch at all: a fresh Cross-D network learns from the hybrid volumes alone,
    through its 3D twin, for as many 3D steps as a hybrid run takes (the control for what the volumes give).
    ``source`` reuses another variant's pretraining run; ``blend`` b transfers ``(1 - b) W + b repeat(W[c])``
    (off-plane voxels pulled towards the trained centre plane; ``rotate`` kernels only).
    """

    name: str
    pretrain: dict = field(default_factory=dict)
    init: str = "crossd"
    align: bool = False
    volumes_only: bool = False
    source: str | None = None
    blend: float = 0.0
    description: str = ""


VARIANTS = {
    v.name: v
    for v in [
        Variant("regular", {"conv": "regular"}, "i3d", description="regular 2D CNN (source of i3d/center/acs)"),
        Variant("shift", {"conv": "crossd", "mode": "shift"}, description="Cross-D, published formula"),
        Variant(
            "shift_aligned",
            {"conv": "crossd", "mode": "shift"},
            align=True,
            source="shift",
            description="Cross-D shift, transferred as roll(W, (1,1,1))",
        ),
        Variant("rotate", {"conv": "crossd", "mode": "rotate"}, description="Cross-D rotate (head planes)"),
        Variant(
            "rotate_blend",
            {"conv": "crossd", "mode": "rotate"},
            source="rotate",
            blend=0.5,
            description="ablation: the rotate checkpoints, off-plane voxels blended halfway to the trained plane",
        ),
        Variant(
            "rotate_random",
            {"conv": "crossd", "plane_sampling": "random"},
            description="rotate + uniformly random SO(3) planes in pretraining",
        ),
        Variant(
            "rotate_random_consistency",
            {"conv": "crossd", "plane_sampling": "random", "consistency": 1.0},
            description="rotate + random planes + slice-consistency term (symmetric KL of two slicings, weight 1)",
        ),
        Variant(
            "rotate_random_zero",
            {"conv": "crossd", "plane_sampling": "random", "crossd_init": "center"},
            description="rotate + random planes + off-plane voxels zero-initialised",
        ),
        Variant(
            "rotate_hybrid",
            {"conv": "crossd", "volumes": "hybrid"},
            description="rotate + hybrid 2D+3D pretraining (a 3D batch every 4 2D batches)",
        ),
        Variant(
            "rotate_random_hybrid",
            {"conv": "crossd", "plane_sampling": "random", "volumes": "hybrid"},
            description="rotate + random planes + hybrid 2D+3D pretraining",
        ),
        Variant(
            "shift_hybrid",
            {"conv": "crossd", "mode": "shift", "volumes": "hybrid"},
            description="Cross-D shift + hybrid 2D+3D pretraining",
        ),
        Variant(
            "regular_hybrid",
            {"conv": "regular", "volumes": "hybrid", "volume_init": "i3d"},
            "i3d",
            description="fair baseline: regular 2D CNN + the same volumes through its I3D-inflated twin, as i3d",
        ),
        Variant(
            "regular_hybrid_acs",
            {"conv": "regular", "volumes": "hybrid", "volume_init": "acs"},
            "acs",
            description="fair baseline: regular 2D CNN + the same volumes through its ACS twin, as acs",
        ),
        Variant("project", {"conv": "crossd", "mode": "project"}, description="Cross-D project (head planes)"),
        Variant(
            "project_random",
            {"conv": "crossd", "mode": "project", "plane_sampling": "random"},
            description="project + uniformly random SO(3) planes in pretraining",
        ),
        Variant(
            "project_grid",
            {"conv": "crossd", "mode": "project", "plane_sampling": "grid"},
            description="project + the 24 grid rotations (axial/coronal/sagittal views, in-plane quarter turns)",
        ),
        Variant(
            "project_random_inflate",
            {"conv": "crossd", "mode": "project", "plane_sampling": "random", "crossd_init": "inflate"},
            description="project + random SO(3) planes + depth-constant (I3D-inflated) initial kernels",
        ),
        Variant(
            "project_hybrid",
            {"conv": "crossd", "mode": "project", "volumes": "hybrid"},
            description="project + hybrid 2D+3D pretraining",
        ),
        Variant(
            "project_grid_hybrid",
            {"conv": "crossd", "mode": "project", "plane_sampling": "grid", "volumes": "hybrid"},
            description="project + grid rotations + hybrid 2D+3D pretraining",
        ),
        *(
            Variant(
                f"{base}_g{g}",
                {**pretrain, "granularity": g},
                description=f"{base} with {g} plane(s) per batch (study 9; plane groups)",
            )
            for base, pretrain, groups in [
                ("project_random", {"conv": "crossd", "mode": "project", "plane_sampling": "random"}, (4, 1)),
                ("project_grid", {"conv": "crossd", "mode": "project", "plane_sampling": "grid"}, (4, 1)),
                ("rotate", {"conv": "crossd", "mode": "rotate"}, (4,)),
            ]
            for g in groups
        ),
        Variant(
            "volumes_only",
            {"conv": "crossd"},
            volumes_only=True,
            description="control: no 2D data, the hybrid volumes alone (same 3D steps), as crossd",
        ),
    ]
}

BASELINES = ("random", "i3d", "center", "acs")
REFERENCES = {
    "i3d": "I3D",
    "acs": "ACS",
    "regular_hybrid": "I3D + same volumes",
    "regular_hybrid_acs": "ACS + same volumes",
    "volumes_only": "volumes only",
    "shift": "Cross-D shift",
}
"""Every method is compared (paired Wilcoxon) with each of these that the study ran."""


def run_pretraining(args, seed: int, variant: Variant, data_path: Path, volumes: Path, mine: bool = True) -> Path:
    """The variant's pretraining run folder, trained first unless finished; ``mine=False``: another shard trains
    it, so wait until it has finished."""
    out = args.output_dir / f"seed{seed}" / (variant.source or variant.name)
    if not mine:
        while not (out / "metrics.json").is_file():
            time.sleep(WAIT_SECONDS)
        return out
    if not (out / "metrics.json").is_file():
        if out.exists():
            shutil.rmtree(out)  # an unfinished run of this study: start it again
        settings = {k: (str(volumes) if v == "hybrid" else v) for k, v in variant.pretrain.items()}
        config = PretrainConfig(
            data_path=str(data_path),
            model=args.arch,
            epochs=args.pretrain_epochs,
            batch_size=args.batch_size,
            workers=0,
            lr=args.lr,
            output_dir=str(out),
            train_crop_size=args.size_2d,
            val_resize_size=args.size_2d,
            val_crop_size=args.size_2d,
            train_crop_scale=(1.0, 1.0),
            device="cpu",
            quiet=True,
            seed=seed,
            **settings,
        )
        start = time.perf_counter()
        if variant.volumes_only:
            train_volumes_only(config, volumes, load_npz(data_path))
        else:
            pretrain(config)
        # beside metrics.json, which must stay byte-identical across reruns (see restore)
        save_json({"seconds": time.perf_counter() - start}, out / "wall_time.json")
    return out


def train_volumes_only(config: PretrainConfig, volumes: Path, images: NpzData) -> None:
    """The ``volumes_only`` control: a fresh Cross-D network trained on ``volumes`` alone through its 3D twin,
    with ``config``'s optimiser, for the number of 3D steps a hybrid run of ``config`` takes."""
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


WAIT_SECONDS = 20
"""How often a shard looks for the pretraining runs of the other shards."""


def is_mine(shard: tuple[int, int] | None, index: int) -> bool:
    """Whether the process of ``shard`` (``(K, N)``, or ``None`` for all) trains the ``index``-th variant."""
    return shard is None or index % shard[1] == shard[0] - 1


def checkpoint_copy(run_dir: Path, label: str, blend: float = 0.0) -> Path:
    """The run's weights under a unique file name (evaluate labels methods by checkpoint stem); with ``blend``,
    every 3D kernel ``W`` (K >= 3) becomes ``(1 - blend) W + blend repeat(W[:, :, c])``."""
    target = run_dir.parent / "checkpoints" / f"{label}.safetensors"
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    if not blend:  # atomic: another shard may read the copy as soon as it exists
        return atomic_write(target, lambda tmp: shutil.copyfile(run_dir / "model.safetensors", tmp))
    with safe_open(run_dir / "model.safetensors", "pt") as f:
        metadata, state = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    if metadata.get("crossd.mode") != "rotate":
        raise ValueError(f"{run_dir}: blending needs rotate-mode kernels")
    for key, w in state.items():
        if w.dim() == 5 and w.shape[-1] >= 3 and "rotation_head" not in key:
            plane = w[:, :, w.shape[2] // 2 : w.shape[2] // 2 + 1].expand_as(w)
            state[key] = (1 - blend) * w + blend * plane
    return save_safetensors(state, target, metadata=metadata)


def evaluation_folders(variants) -> dict[str, str | None]:
    """Evaluation folder (without tag) -> the label of its single method, or ``None`` when it holds several
    (the baselines and the Cross-D variants). Regular-network variants get a folder each, since their method
    names (``i3d``, ``acs``) would otherwise clash with the baselines'."""
    own = [n for n in variants if n != "regular" and VARIANTS[n].init != "crossd"]
    return {"eval": None, "eval_aligned": None, **{f"eval_{n}": n for n in own}}


def protocol_tag(args, protocol: str) -> str:
    """Suffix of a protocol's evaluation folders: ``--eval-tag`` for the first protocol asked for (so one-protocol
    studies keep their folders), ``--eval-tag`` + ``_<protocol>`` for the others."""
    return args.eval_tag if protocol == args.protocol[0] else f"{args.eval_tag}_{protocol}"


def protocol_lr(args, protocol: str) -> float | None:
    """The evaluation learning rate of a protocol: ``--finetune-lr`` for ``finetune``, the protocol's own for
    ``paper`` (AdamW 1e-3 on the head, then Adam on head + BatchNorm), else ``--eval-lr``."""
    if protocol == "paper":
        return None
    return args.finetune_lr if protocol == "finetune" else args.eval_lr


def evaluate_seed(args, seed: int, runs: dict[str, Path], downstream: Path, protocol: str) -> None:
    """Evaluate every method of one seed on the same folds (results in ``seed<S>/eval*/results.json``)."""
    tag = protocol_tag(args, protocol)
    crossd = [n for n in runs if VARIANTS[n].init == "crossd"]
    calls = [
        (f"eval{tag}", False, [*BASELINES, *(n for n in crossd if not VARIANTS[n].align)]),
        (f"eval_aligned{tag}", True, [n for n in crossd if VARIANTS[n].align]),
    ]
    own = evaluation_folders(runs)
    calls += [(f"{folder}{tag}", False, [label]) for folder, label in own.items() if label]
    for name, align, labels in calls:
        if not labels:
            continue
        methods = []
        for label in labels:
            if label in BASELINES:
                methods.append((label, None if label == "random" else checkpoint_copy(runs["regular"], "regular")))
            else:
                v = VARIANTS[label]
                methods.append((v.init, checkpoint_copy(runs[label], label, v.blend)))
        evaluate(
            EvaluateConfig(
                data=str(downstream),
                methods=methods,
                output_dir=str(args.output_dir / f"seed{seed}" / name),
                protocol=protocol,
                lr=protocol_lr(args, protocol),
                folds=args.folds,
                repeats=1,
                epochs=args.epochs,
                seed=seed,
                align=align,
                recalibrate_bn=args.recalibrate_bn,
                arch=args.arch,
                # every study of docs/experiments.md ran with evaluate's default of then; kept explicit so that
                # reruns and --resume-from give the same numbers now that checkpoints record imagenet (warns)
                normalize="radimagenet",
                resume=True,
                progress=False,
            ),
            args.shard,
        )


def gather(output_dir: Path, tag: str = "") -> tuple[dict[str, list[FoldResult]], list[int]]:
    """Fold records per method label from every finished seed on disk (so parallel study processes agree).

    A fold's ``repeat`` becomes ``1000 * seed + repeat`` so paired tests pair the same (seed, fold).
    """
    per_method: dict[str, list[FoldResult]] = {}
    seeds = []
    for seed_dir in sorted(output_dir.glob("seed*"), key=lambda p: int(p.name[4:])):
        seed = int(seed_dir.name[4:])
        folders = evaluation_folders(VARIANTS)
        files = {name: seed_dir / f"{name}{tag}" / "results.json" for name in folders}
        loaded = {name: load_results(f) for name, f in files.items() if f.is_file()}
        if "eval" not in loaded or not all(r.complete for r in loaded.values()):
            continue
        seeds.append(seed)
        for folder, results in loaded.items():
            own = folders[folder]
            crossd = [m.checkpoint for m in results.methods if m.method.startswith("crossd")]
            for record in results.methods:
                method = record.method  # "crossd@<stem>" when several Cross-D checkpoints share a call
                if own:
                    label = own
                elif method.startswith("crossd"):
                    label = Path(record.checkpoint if len(crossd) > 1 else crossd[0]).stem
                else:
                    label = method
                per_method.setdefault(label, []).extend(replace(f, repeat=seed * 1000 + f.repeat) for f in record.folds)
    return per_method, seeds


def summarise(per_method: dict[str, list[FoldResult]], seeds: list[int]) -> list[dict]:
    rows = []
    for name, folds in per_method.items():
        acc = np.array([f.accuracy for f in folds])
        seed_means = [np.mean([f.accuracy for f in folds if f.repeat // 1000 == s]) for s in seeds]
        row = {
            "method": name,
            "n": len(acc),
            "mean": float(acc.mean()),
            "std": float(acc.std()),
            "seed_mean_std": float(np.std(seed_means)),
        }
        for ref in REFERENCES:
            if ref in per_method and ref != name:
                row[f"vs_{ref}"] = paired_wilcoxon(per_method[ref], folds).to_json()
        rows.append(row)
    return sorted(rows, key=lambda r: -r["mean"])


def energy_ratio(path: Path, shift: bool) -> float:
    """Energy of the off-centre depth slices over that of the centre slice, summed over the 3x3x3 kernels of one
    Cross-D checkpoint, in the plane used at angle 0 (``roll(W, (1, 1, 1))`` when ``shift``)."""
    from safetensors.torch import load_file

    from crossd.convert.kernels import shift_align

    centre = off = 0.0
    for key, w in load_file(str(path)).items():
        if w.dim() != 5 or w.shape[-1] != 3 or "rotation_head" in key:
            continue
        w = shift_align(w) if shift else w
        centre += float(w[:, :, 1].square().sum())
        off += float(w[:, :, [0, 2]].square().sum())
    return off / centre


def seed_kernel_energy(seed_dir: Path, variants: list[str]) -> dict[str, float]:
    """Per Cross-D variant of ``variants`` with a checkpoint in ``seed_dir/checkpoints``: its :func:`energy_ratio`.

    Kept in ``seed_dir/kernel_energy.json``: a checkpoint is read only when that file lacks it or is older than it,
    and an archive without checkpoints (``--archive``) reads the file alone."""
    cache = seed_dir / "kernel_energy.json"
    ratios = json.loads(cache.read_text()) if cache.is_file() else {}
    written = cache.stat().st_mtime if cache.is_file() else float("-inf")
    wanted = [n for n in variants if VARIANTS[n].init == "crossd" and not VARIANTS[n].align]
    stale = [
        path
        for path in (seed_dir / "checkpoints" / f"{n}.safetensors" for n in wanted)
        if path.is_file() and (path.stem not in ratios or path.stat().st_mtime > written)
    ]
    for path in stale:
        ratios[path.stem] = energy_ratio(path, VARIANTS[path.stem].pretrain.get("mode") == "shift")
    if stale:
        save_json(dict(sorted(ratios.items())), cache)
    return {n: ratios[n] for n in wanted if n in ratios}


def kernel_energy(output_dir: Path, seeds: list[int], variants: list[str]) -> dict[str, float]:
    """Per Cross-D variant of ``variants``: :func:`seed_kernel_energy`'s ratio, mean over ``seeds``."""
    ratios: dict[str, list[float]] = {}
    for seed in seeds:
        for name, ratio in seed_kernel_energy(output_dir / f"seed{seed}", variants).items():
            ratios.setdefault(name, []).append(ratio)
    return {k: float(np.mean(v)) for k, v in ratios.items()}


def archive(output_dir: Path, target: Path, seeds: list[int], variants: list[str]) -> None:
    """Copy the records of ``seeds`` from ``output_dir`` to ``target``, in the same layout, so that
    ``--summarise-only --output-dir target`` remakes the tables and ``--resume-from target`` continues a seed on
    another machine: pretraining metrics, kernel energies, each evaluation folder's settings, and its
    ``results.json`` once finished (replacing the job files an earlier archive of the unfinished folder kept),
    else its job files (no checkpoints)."""
    for seed in seeds:
        seed_dir = output_dir / f"seed{seed}"
        seed_kernel_energy(seed_dir, variants)
        paths = [*seed_dir.glob("*/metrics.json"), *seed_dir.glob("*/wall_time.json"), seed_dir / "kernel_energy.json"]
        for folder in sorted(seed_dir.glob("eval*")):
            results = folder / "results.json"
            finished = results.is_file() and json.loads(results.read_text()).get("complete")
            paths += [folder / "settings.json", *([results] if finished else folder.glob("jobs/*/*.json"))]
            if finished:
                shutil.rmtree(target / folder.relative_to(output_dir) / "jobs", ignore_errors=True)
        for path in sorted(p for p in paths if p.is_file()):
            save_text(path.read_text(), target / path.relative_to(output_dir))


def restore(source: Path, output_dir: Path, seed: int) -> None:
    """Copy the archived evaluation records of ``seed`` (see :func:`archive`) into ``output_dir``, where they are
    missing, so that the evaluation runs only the jobs they lack.

    They belong to the archived checkpoints, which are not kept: the seed's pretraining runs, trained again here,
    must reproduce every archived ``metrics.json`` byte for byte (pretraining is deterministic on one machine
    kind), else nothing is restored and the seed is evaluated afresh."""
    archived, seed_dir = source / f"seed{seed}", output_dir / f"seed{seed}"
    retrained = {path: seed_dir / path.relative_to(archived) for path in sorted(archived.glob("*/metrics.json"))}
    differ = [
        path.parent.name
        for path, again in retrained.items()
        if not again.is_file() or again.read_bytes() != path.read_bytes()
    ]
    if differ:
        print(f"seed {seed}: pretraining runs {differ} differ from {archived}: its records are not restored")
        return
    for path in sorted(archived.glob("eval*/**/*.json")):
        destination = seed_dir / path.relative_to(archived)
        if not destination.exists():
            save_text(path.read_text(), destination)


def pretrain_accuracy(output_dir: Path, seeds: list[int], variants: list[str]) -> dict[str, float]:
    """Per pretraining run with a 2D test set (not ``volumes_only``): its 2D test accuracy in percent, from the
    run's ``metrics.json``, mean over seeds."""
    accuracy: dict[str, list[float]] = {}
    for seed in seeds:
        for name in (n for n in variants if not VARIANTS[n].source):  # a reused run is listed once, by its name
            path = output_dir / f"seed{seed}" / name / "metrics.json"
            test = json.loads(path.read_text()).get("test") if path.is_file() else None
            if test:
                accuracy.setdefault(name, []).append(100 * test["accuracy"])
    return {k: float(np.mean(v)) for k, v in accuracy.items()}


def comparison(row: dict | None, reference: str) -> Comparison | None:
    """The paired test of a study row against ``reference``, ``None`` when it has none."""
    test = (row or {}).get(f"vs_{reference}")
    return None if test is None else Comparison.from_json(test)


def markdown(rows: list[dict], args, protocol: str, seeds: list[int]) -> str:
    describe = {
        **{b: f"{b} init from the regular 2D CNN" for b in ("i3d", "center", "acs")},
        "random": "random 3D init",
        **{n: v.description for n, v in VARIANTS.items()},
    }
    refs = [ref for ref in REFERENCES if any(r["method"] == ref for r in rows)]
    recalibrated = " + BatchNorm recalibration (AdaBN)" if args.recalibrate_bn else ""
    header = [
        "3D init",
        "accuracy (mean ± std over seed x fold)",
        "std of seed means",
        *(f"vs {REFERENCES[ref]}: Δ pts (p)" for ref in refs),
    ]
    table = [
        [
            f"`{r['method']}`: {describe.get(r['method'], '')}",
            f"{r['mean']:.3f} ± {r['std']:.3f}",
            f"{r['seed_mean_std']:.3f}",
            *(format_comparison(comparison(r, ref), digits=1, pairs=False) for ref in refs),
        ]
        for r in rows
    ]
    lines = [
        f"Arch `{args.arch}`, protocol `{protocol}`{recalibrated}, seeds {seeds} x "
        f"{args.folds} folds, "
        f"pretraining {args.pretrain_epochs} epochs, evaluation {args.epochs} epochs at lr "
        f"{protocol_lr(args, protocol) or 'of the protocol'}.",
        "",
        *markdown_table(header, table),
    ]
    return "\n".join(lines)


def protocol_comparison(by_protocol: dict[str, list[dict]]) -> str:
    """One row per method: its accuracy under each protocol and its paired difference with I3D and ACS."""
    protocols = list(by_protocol)
    by_name = {p: {r["method"]: r for r in rows} for p, rows in by_protocol.items()}
    header = ["3D init", *(f"`{p}` {c}" for p in protocols for c in ("accuracy", "vs I3D", "vs ACS"))]
    table = []
    for method in [r["method"] for r in by_protocol[protocols[0]]]:
        cells = [f"`{method}`"]
        for p in protocols:
            row = by_name[p].get(method)
            cells.append(f"{row['mean']:.3f}" if row else "–")
            cells += [format_comparison(comparison(row, ref), digits=1, pairs=False) for ref in ("i3d", "acs")]
        table.append(cells)
    return "\n".join(markdown_table(header, table))


def report(by_protocol: dict[str, list[dict]], seeds: dict[str, list[int]], args) -> str:
    """The Markdown of a study: one table per protocol (over the seeds ``seeds[protocol]`` it has finished), the
    protocols side by side, the pretrained networks' 2D accuracy and kernel energies, the command."""
    parts = [f"### Protocol `{p}`\n\n{markdown(rows, args, p, seeds[p])}" for p, rows in by_protocol.items()]
    if len(by_protocol) > 1:
        differ = len({tuple(s) for s in seeds.values()}) > 1
        note = "; seeds: " + ", ".join(f"`{p}` {seeds[p]}" for p in by_protocol) if differ else ""
        parts.append(
            f"### Protocols side by side (differences in points, paired over seed x fold{note})\n\n"
            f"{protocol_comparison(by_protocol)}"
        )
    pretrained = sorted(set().union(*seeds.values()))
    energy = kernel_energy(args.output_dir, pretrained, args.variants)
    accuracy = pretrain_accuracy(args.output_dir, pretrained, args.variants)
    lines = [
        "The pretrained networks: 2D test accuracy at the end of pretraining (mean over seeds; Cross-D networks "
        "use their heads' planes at test time) and the off-centre / centre slice energy of their 3x3x3 kernels "
        "(a fresh 3D Kaiming init gives 2.0):",
        "",
    ]
    rows = [
        [
            f"`{name}`",
            f"{accuracy[name]:.1f}" if name in accuracy else "–",
            f"{energy[name]:.2f}" if name in energy else "–",
        ]
        for name in sorted(accuracy.keys() | energy.keys())
    ]
    lines += markdown_table(["variant", "2D test accuracy (%)", "off / centre"], rows)
    command = " ".join(["python", "benchmarks/transfer_study.py", *sys.argv[1:]])
    lines += ["", f"Command: `{command}`", ""]
    return "\n\n".join(parts) + "\n\n" + "\n".join(lines)


def write_summary(args, label: str) -> bool:
    """Pool every protocol of ``args.protocol`` over the seeds on disk that finished it (other processes' too) and
    write ``study.json``, ``--markdown`` and stdout; ``False`` (nothing written) while a protocol has none."""
    by_protocol, seeds = {}, {}
    for protocol in args.protocol:
        per_method, seeds[protocol] = gather(args.output_dir, protocol_tag(args, protocol))
        by_protocol[protocol] = summarise(per_method, seeds[protocol])
    if not all(seeds.values()):
        return False
    record = {"args": {k: str(v) for k, v in vars(args).items()}, "rows": by_protocol[args.protocol[0]]}
    save_json({**record, "by_protocol": by_protocol, "seeds": seeds}, args.output_dir / "study.json")
    text = report(by_protocol, seeds, args)
    if args.markdown:
        save_text(text, args.markdown)
    print(f"{label}:\n{text}", flush=True)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output-dir", type=Path, default=Path("runs/study"))
    parser.add_argument("--markdown", type=Path, default=None, help="write the table here too")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--arch", default="small_cnn")
    parser.add_argument("--pretrain-epochs", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--size-2d", type=int, default=32)
    parser.add_argument("--samples-2d", type=int, default=3000)
    parser.add_argument("--hybrid-volumes", type=int, default=120, help="left-hemisphere cubes for hybrid runs")
    parser.add_argument(
        "--protocol",
        nargs="+",
        default=["bn"],
        choices=("bn", "linear", "finetune", "paper"),
        help="evaluation protocols, each on the same checkpoints and folds (e.g. bn finetune)",
    )
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=20, help="evaluation epochs per fold")
    parser.add_argument("--eval-lr", type=float, default=None, help="evaluation learning rate (protocol default)")
    parser.add_argument("--finetune-lr", type=float, default=1e-3, help="learning rate of protocol finetune (Adam)")
    parser.add_argument("--recalibrate-bn", action="store_true", help="AdaBN before each fold (crossd evaluate's)")
    parser.add_argument(
        "--eval-tag",
        default="",
        help="suffix of the evaluation folders, to compare evaluation settings on the same "
        "pretrained checkpoints (e.g. _lr1e-2)",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch threads (1 suits parallel processes)")
    parser.add_argument(
        "--shard",
        default=None,
        help="K/N: this process's share of the pretraining runs and evaluation jobs; rerun without it to merge",
    )
    parser.add_argument(
        "--summarise-only",
        action="store_true",
        help="train nothing: make the tables from the records in --output-dir (an --archive folder, say)",
    )
    parser.add_argument(
        "--archive",
        type=Path,
        default=None,
        help="then copy the records of --seeds (no checkpoints) to this folder, to remake the tables or resume there",
    )
    parser.add_argument(
        "--resume-from",
        type=Path,
        default=None,
        help="an --archive folder: reuse its evaluation records of --seeds when pretraining reproduces its runs",
    )
    args = parser.parse_args(argv)
    try:
        args.shard = parse_shard(args.shard)
    except ValueError as exc:
        parser.error(str(exc))
    if args.threads:
        torch.set_num_threads(args.threads)
    if "regular" not in args.variants:
        args.variants.insert(0, "regular")
    if args.summarise_only:
        if not write_summary(args, "summary"):
            parser.error(
                f"{args.output_dir}: no seed has finished every protocol of --protocol {' '.join(args.protocol)}"
            )
        return 0
    config = DemoDataConfig(size_2d=args.size_2d, samples_2d=args.samples_2d, samples_3d_pretrain=args.hybrid_volumes)
    data = build_demo_data(args.output_dir / "data", config)
    volumes = data.volumes_path
    for seed in args.seeds:
        mine = [n for i, n in enumerate(args.variants) if is_mine(args.shard, i)]
        order = [*mine, *(n for n in args.variants if n not in mine)]  # this shard's own runs first
        trained = {n: run_pretraining(args, seed, VARIANTS[n], data.pretrain_path, volumes, n in mine) for n in order}
        runs = {n: trained[n] for n in args.variants}
        if args.resume_from:
            restore(args.resume_from, args.output_dir, seed)
        for protocol in args.protocol:
            evaluate_seed(args, seed, runs, data.downstream_path, protocol)
        write_summary(args, f"after seed {seed}")
    if args.archive:
        archive(args.output_dir, args.archive, args.seeds, args.variants)
    return 0


if __name__ == "__main__":
    sys.exit(main())
