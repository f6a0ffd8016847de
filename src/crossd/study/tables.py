"""A study's Markdown (``crossd study``): one table per protocol, the protocols side by side, and the pretrained
networks (2D accuracy, kernel energy, wall time), built from :mod:`crossd.report.tables`' cells. It lives with the
study, whose config it reads; :func:`crossd.report.study.read_study` reads the ``study.json`` back for the demo."""

from __future__ import annotations

import numpy as np

from crossd.convert.inits import get_init
from crossd.evaluate.stats import wilcoxon_pairs
from crossd.report.tables import format_comparison
from crossd.study.arms import REGULAR
from crossd.study.records import CLASSIFIER_METRICS
from crossd.study.summary import TASK_REFERENCES, StudyRow, StudySummary

TASK_DESCRIPTIONS = {"regular2d": "the regular 2D CNN as trained", "random": "random 2D init"}
"""What the comparison rows of a 2D task's table are."""

METRIC_NAMES = ("precision", "recall", "F1", "balanced accuracy", "accuracy")
"""Column names of :data:`~crossd.study.records.CLASSIFIER_METRICS` (macro averages for the first three)."""


def _seconds(seconds: float | None) -> str:
    return "—" if seconds is None else f"{seconds:.0f}"


def _cell(row: StudyRow | None, ref: str) -> str:
    comparison = row.comparisons.get(ref) if row else None
    return "—" if comparison is None else format_comparison(comparison, digits=1, pairs=False)


def describe(summary: StudySummary) -> dict[str, str]:
    """What each row is: the arm's description, or which network a baseline init transfers."""
    inits = {
        i: "random 3D init" if not get_init(i).needs_checkpoint else f"{i} init from the regular 2D CNN"
        for i in summary.config.evaluate.inits
    }
    return {**inits, **{a.name: a.description for a in summary.config.arms}}


def protocol_table(summary: StudySummary, protocol: str, task: str | None = None) -> str:
    """One protocol's table: every method's accuracy, its pretraining wall time and its paired differences with
    the reference arms, best first; with arms that are variants of another (``compare_with``), a last column of
    each variant's paired difference with its arm. With ``task``, that 2D task's table (compared with the regular
    network as trained and a random init)."""
    config = summary.config
    if task is None:
        rows, seeds, references, what = summary.by_protocol[protocol], summary.seeds[protocol], config.references, ""
    else:
        rows, seeds, references = summary.by_task[task][protocol], summary.task_seeds[task][protocol], TASK_REFERENCES
        what = f", 2D task `{task}`"
    refs = [ref for ref in references if any(r.method == ref for r in rows)]
    recalibrated = " + BatchNorm recalibration (AdaBN)" if config.evaluate.recalibrate_bn else ""
    lr = config.evaluate.lr_of(protocol)
    epochs = config.pretrain.get("epochs", "default")
    text = describe(summary) if task is None else {**describe(summary), **TASK_DESCRIPTIONS}
    variant_of = {a.name: a.compare_with for a in config.arms if a.compare_with}
    variants = ["vs the arm it varies"] if variant_of else []
    lines = [
        f"Arch `{config.arch}`{what}, protocol `{protocol}`{recalibrated}, seeds {seeds} x {config.evaluate.folds} "
        f"folds, pretraining {epochs} epochs, evaluation {config.evaluate.epochs} epochs at lr "
        f"{'of the protocol' if lr is None else lr}. Differences in points, paired over seed x fold.",
        "",
        f"| {'3D init' if task is None else '2D network'} | accuracy (mean ± std over seed x fold) | std of seed means "
        "| pretraining (s) | " + " | ".join([*(f"vs {references[ref]}" for ref in refs), *variants]) + " |",
        "|---|---|---|---|" + "---|" * (len(refs) + len(variants)),
    ]
    for r in rows:
        cells = [_cell(r, ref) for ref in refs]
        if variants:
            arm = variant_of.get(r.method)
            cells.append("—" if arm is None else f"`{arm}`: {_cell(r, arm)}")
        lines.append(
            f"| `{r.method}`: {text.get(r.method, '')} | {r.mean:.3f} ± {r.std:.3f} | {r.seed_mean_std:.3f} | "
            f"{_seconds(summary.wall_seconds(r.method))} | " + " | ".join(cells) + " |"
        )
    return "\n".join(lines)


def protocols_side_by_side(summary: StudySummary, references: tuple[str, ...] = ("i3d", "acs")) -> str:
    """One row per method: its accuracy under each protocol and its paired difference with ``references``."""
    protocols = list(summary.by_protocol)
    by_name = {p: {r.method: r for r in rows} for p, rows in summary.by_protocol.items()}
    labels = summary.config.references
    header = " | ".join(
        " | ".join([f"`{p}` accuracy", *(f"`{p}` vs {labels.get(ref, ref)}" for ref in references)]) for p in protocols
    )
    lines = [f"| 3D init | {header} |", "|---|" + "---|" * ((1 + len(references)) * len(protocols))]
    for method in [r.method for r in summary.by_protocol[protocols[0]]]:
        cells = []
        for p in protocols:
            row = by_name[p].get(method)
            cells += [f"{row.mean:.3f}" if row else "—", *(_cell(row, ref) for ref in references)]
        lines.append(f"| `{method}` | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def pretraining_table(summary: StudySummary) -> str:
    """Each pretrained network: 2D test accuracy, off-centre / centre kernel energy, mean wall time."""
    resumed = sum(r.resumed for r in summary.pretraining.values())
    lines = [
        "The pretrained networks: 2D test accuracy at the end of pretraining (mean over seeds; Cross-D networks "
        "use their heads' planes at test time), the off-centre / centre slice energy of their 3x3x3 kernels "
        "(a fresh 3D Kaiming init gives 2.0) and the pretraining wall time (median over seeds"
        + (f"; {resumed} resumed run(s) count from their resumption" if resumed else "")
        + "):",
        "",
        "| arm | 2D test accuracy (%) | off / centre | wall time (s) |",
        "|---|---|---|---|",
    ]
    for name in sorted(summary.pretraining):
        r = summary.pretraining[name]
        accuracy = "—" if r.accuracy is None else f"{r.accuracy:.1f}"
        energy = "—" if r.energy is None else f"{r.energy:.2f}"
        lines.append(f"| `{name}` | {accuracy} | {energy} | {_seconds(r.seconds)} |")
    return "\n".join(lines)


def _seed_cell(pairs: list[tuple[float, float]]) -> str:
    """A paired difference over seeds as ``"-4.2 (0/5 seeds higher, p = 0.0625)"`` (points)."""
    comparison = wilcoxon_pairs(pairs, "seeds")
    if comparison.mean_difference is None:
        return f"– ({comparison.note})"
    higher = sum(b > a for a, b in pairs)
    p = "no test" if comparison.p_value is None else f"p = {comparison.p_value:.3g}"
    return f"{100 * comparison.mean_difference:+.1f} ({higher}/{len(pairs)} seeds higher, {p})"


def classifier_table(summary: StudySummary, reference: str = REGULAR) -> str:
    """The pretrained networks as 2D classifiers on the pretraining task's held-out test images (the seed paper's
    Table 1): each metric's mean ± std over seeds (percent) and, below, each arm's paired difference from
    ``reference`` per metric (Wilcoxon over the seeds both finished); ``""`` when no arm has test scores."""
    scored = {name: r.scores for name, r in summary.pretraining.items() if r.scores}
    if not scored:
        return ""
    header = " | ".join(METRIC_NAMES)
    lines = [
        "| arm | seeds | " + header + " |",
        "|---|---|" + "---|" * len(METRIC_NAMES),
    ]
    for name, per_seed in scored.items():
        cells = []
        for metric in CLASSIFIER_METRICS:
            values = 100 * np.array([s[metric] for s in per_seed.values()])
            cells.append(f"{values.mean():.1f} ± {values.std():.1f}")
        lines.append(f"| `{name}` | {len(per_seed)} | " + " | ".join(cells) + " |")
    ref = scored.get(reference)
    if ref is not None and len(scored) > 1:
        lines += [
            "",
            f"Paired differences from `{reference}` in points, the seeds on which the arm scores higher and a "
            f"Wilcoxon test over seeds (with {len(ref)} seed{'s' * (len(ref) != 1)} no two-sided p can be below "
            f"{2 / 2 ** len(ref):.3g}, "
            "so the seed count is the readable evidence):",
            "",
            "| arm | " + header + " |",
            "|---|" + "---|" * len(METRIC_NAMES),
        ]
        for name, per_seed in scored.items():
            if name == reference:
                continue
            shared = sorted(per_seed.keys() & ref.keys())
            cells = [_seed_cell([(ref[s][m], per_seed[s][m]) for s in shared]) for m in CLASSIFIER_METRICS]
            lines.append(f"| `{name}` | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def study_markdown(summary: StudySummary, command: str | None = None) -> str:
    """The whole Markdown of a study, ending with the command that made it (when given)."""
    parts = [f"### Protocol `{p}`\n\n{protocol_table(summary, p)}" for p in summary.by_protocol]
    if len(summary.by_protocol) > 1:
        seeds = summary.seeds
        differ = len({tuple(s) for s in seeds.values()}) > 1
        note = "; seeds: " + ", ".join(f"`{p}` {seeds[p]}" for p in seeds) if differ else ""
        parts.append(
            f"### Protocols side by side (differences in points, paired over seed x fold{note})\n\n"
            f"{protocols_side_by_side(summary)}"
        )
    for task, protocols in summary.by_task.items():
        parts += [f"### 2D task `{task}`, protocol `{p}`\n\n{protocol_table(summary, p, task)}" for p in protocols]
    parts.append(pretraining_table(summary))
    if classifiers := classifier_table(summary):
        parts.append(
            "### The pretrained networks as 2D classifiers (the seed paper's Table 1)\n\n"
            "Macro precision, recall and F1, balanced accuracy and accuracy (%) on the pretraining task's held-out "
            "test images, mean ± std over seeds (Cross-D networks use their heads' planes at test time, also those "
            "trained on sampled planes):\n\n" + classifiers
        )
    if command:
        parts.append(f"Command: `{command}`")
    return "\n\n".join(parts) + "\n"
