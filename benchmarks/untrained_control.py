"""Does Cross-D *pretraining* hurt fine-tuning on a 2D task, or does a Cross-D network fine-tune badly anyway?

Study 8 (ResNet-18, docs/experiments.md) finds the pretrained Cross-D 2D networks 11-19 points under a random
regular init when fine-tuned on `mni_planes`. This control fine-tunes an *untrained* Cross-D network (the study
arm's architecture, built by the pretraining's `build_model` after `torch.manual_seed(seed)`) on the same task
with the study's fine-tuning settings, seeds and so folds, beside a random regular init, and pairs it fold by fold
with the study's archived pretrained Cross-D folds.

    python benchmarks/untrained_control.py run --output-dir runs/untrained_control --seeds 0 1 2 --shard 1/2 --threads 1
    python benchmarks/untrained_control.py run --output-dir runs/untrained_control --seeds 0 1 2 --shard 2/2 --threads 1
    python benchmarks/untrained_control.py run --output-dir runs/untrained_control --seeds 0 1 2
    python benchmarks/untrained_control.py report --output-dir runs/untrained_control --seeds 0 1 2

`run` writes `seedS/untrained_ARM.safetensors` and fine-tunes them with `crossd evaluate` into `seedS/eval` (a
`--shard K/N` call runs its share of the jobs; the call without `--shard` runs what is missing and merges, as
`crossd evaluate` does; give each of two shards on two cores `--threads 1`); `report` reads the job files
there (an unfinished run's too), prints a Markdown table and the paired Wilcoxon tests over seed x fold. `--data`
is the study's task file, which `crossd study` builds in its output folder.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from crossd.evaluate.folds import Split
from crossd.evaluate.kfold import Store
from crossd.evaluate.stats import wilcoxon_pairs
from crossd.io import save_safetensors
from crossd.models import ModelSpec
from crossd.results import load_results
from crossd.study.config import load_study
from crossd.train.model import build_model

STUDY = Path(__file__).parent / "studies" / "study8_r18.toml"
ARCHIVE = Path(__file__).parent / "results" / "study8_r18"
TASK = "mni_planes"
PRETRAIN_CLASSES = 4  # the demo's pretraining task (its head is replaced by the 2D task's anyway)


def untrained_checkpoint(arm_name: str, seed: int, path: Path) -> Path:
    """The study arm's Cross-D network, freshly initialised after ``torch.manual_seed(seed)``, saved as ``path``."""
    config = load_study(STUDY)
    arm = next(a for a in config.arms if a.name == arm_name)
    settings = {**config.pretrain, **arm.pretrain}
    spec = ModelSpec(config.pretrain["model"], settings["conv"], settings["mode"], PRETRAIN_CLASSES)
    torch.manual_seed(seed)
    model = build_model(spec, None, settings.get("crossd_init", "random"), settings.get("plane_sampling", "head"))
    path.parent.mkdir(parents=True, exist_ok=True)
    return save_safetensors(model.state_dict(), path, metadata=spec.metadata())


def run(args: argparse.Namespace) -> None:
    evaluate = load_study(STUDY).evaluate
    for seed in args.seeds:
        folder = args.output_dir / f"seed{seed}"
        paths = {a: untrained_checkpoint(a, seed, folder / f"untrained_{a}.safetensors") for a in args.arms}
        inits = [f"crossd+{a}={path}" for a, path in paths.items()]
        command = [
            sys.executable, "-m", "crossd", "evaluate", "--data", str(args.data), "--init", "random", *inits,
            "--arch", "resnet18", "--protocol", "finetune", "--folds", str(evaluate.folds), "--repeats", "1",
            "--epochs", str(evaluate.epochs), "--lr", str(evaluate.finetune_lr), "-b", "32",
            "--normalize", evaluate.normalize, "--seed", str(seed), "--output-dir", str(folder / "eval"),
            "--resume", "--quiet", *(["--shard", args.shard] if args.shard else []),
            *(["--threads", str(args.threads)] if args.threads else []),
        ]  # fmt: skip
        subprocess.run(command, check=True)


def fold_accuracies(results: Path, method: str) -> dict[tuple[int, int], float]:
    """``(repeat, fold) -> accuracy`` of ``method`` in a ``crossd evaluate`` results.json."""
    return {(f.repeat, f.fold): f.accuracy for f in load_results(results).method(method).folds}


def job_accuracies(folder: Path, method: str, folds: int) -> dict[tuple[int, int], float]:
    """``(0, fold) -> accuracy`` of the job files of ``method`` that a (sharded, or unfinished) ``crossd evaluate``
    run with one repeat of ``folds`` folds wrote in ``folder`` (named as its :class:`~crossd.evaluate.kfold.Store`
    names them)."""
    store, none = Store(folder), np.empty(0)
    paths = {(0, fold): store.job_path(method, Split(0, fold, none, none, none)) for fold in range(folds)}
    return {key: json.loads(path.read_text())["record"]["accuracy"] for key, path in paths.items() if path.is_file()}


def report(args: argparse.Namespace) -> None:
    rows: dict[str, list[dict[tuple[int, int], float]]] = {}
    n_folds = load_study(STUDY).evaluate.folds
    for seed in args.seeds:
        here = args.output_dir / f"seed{seed}" / "eval"
        archived = ARCHIVE / f"seed{seed}" / f"eval2d_{TASK}_finetune" / "results.json"
        found = {"random (this run)": job_accuracies(here, "random", n_folds)}
        found.update({f"untrained {a}": job_accuracies(here, f"crossd+{a}", n_folds) for a in args.arms})
        found["random (study 8)"] = fold_accuracies(archived, "random")
        found["regular2d (study 8)"] = fold_accuracies(archived, "regular2d")
        found.update({f"pretrained {a} (study 8)": fold_accuracies(archived, f"crossd@{a}") for a in args.arms})
        for name, folds in found.items():
            rows.setdefault(name, []).append({(seed, *k): v for k, v in folds.items()})
    merged = {name: {k: v for seed in per_seed for k, v in seed.items()} for name, per_seed in rows.items()}
    print(f"Fine-tuned on `{TASK}`, ResNet-18, seeds {args.seeds} x 5 folds: accuracy (%), mean ± std over folds\n")
    print("| network | folds | accuracy |\n|---|---|---|")
    for name, folds in merged.items():
        values = 100 * np.array(list(folds.values()))
        print(f"| {name} | {len(values)} | {values.mean():.1f} ± {values.std():.1f} |")
    print("\nPaired over seed x fold (points, two-sided Wilcoxon):\n")
    references = ("random (this run)", "random (study 8)", "pretrained {} (study 8)")
    comparisons = [(f"untrained {a}", ref.format(a)) for a in args.arms for ref in references]
    for row, ref in [*comparisons, ("random (this run)", "random (study 8)")]:  # the last: this machine vs study 8's
        pairs = [(merged[ref][k], merged[row][k]) for k in sorted(set(merged[ref]) & set(merged[row]))]
        test = wilcoxon_pairs(pairs, unit="folds")
        p = test.note if test.p_value is None else f"p = {test.p_value:.2g}"
        higher = sum(b > a for a, b in pairs)
        print(f"- {row} - {ref}: {100 * test.mean_difference:+.1f} ({higher}/{test.pairs} folds higher, {p})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["run", "report"])
    parser.add_argument("--output-dir", type=Path, required=True)
    parser.add_argument("--data", type=Path, default=Path("runs/study8_r18/data/mni_planes_32.npz"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--arms", nargs="+", default=["shift"], choices=["shift", "rotate"])
    parser.add_argument("--shard", help="K/N: this process's share of the folds (crossd evaluate --shard)")
    parser.add_argument("--threads", type=int, help="torch CPU threads of each fine-tuning (crossd evaluate --threads)")
    args = parser.parse_args()
    run(args) if args.action == "run" else report(args)


if __name__ == "__main__":
    main()
