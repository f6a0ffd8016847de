"""The Markdown of results: ``results.md`` of both evaluation tasks in the paper's style (mean ± std over folds),
and the cells and tables every other report (the demo's, the transfer study's) builds from the same types."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from crossd.convert.inits import KERNEL_INITS
from crossd.results import Comparison, MethodSummary, Results, SegmentationSummary

COLUMNS = (
    ("accuracy", "Accuracy"),
    ("balanced_accuracy", "Balanced acc."),
    ("f1_macro", "F1 (macro)"),
    ("precision_macro", "Precision (macro)"),
    ("recall_macro", "Recall (macro)"),
)


def mean_std(mean: float | None, std: float | None) -> str:
    """``"85.31 ± 1.20"`` in percent, or ``"–"`` when there is no value."""
    return "–" if mean is None else f"{100 * mean:.2f} ± {100 * (std or 0.0):.2f}"


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    """The lines of a Markdown table: ``header``, the separator, one line per row of cells."""
    return [
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(row) + " |" for row in rows),
    ]


ALPHA = 0.05
"""The significance level the reports use."""


def smallest_wilcoxon_p(pairs: int) -> float:
    """The smallest p-value a two-sided exact Wilcoxon signed-rank test can reach with ``pairs`` paired
    differences: ``2 / 2**pairs``, when every difference has the same sign (3 pairs: 0.25; 6: 0.031)."""
    return min(1.0, 2.0 / 2**pairs)


def design_note(pairs: int) -> str:
    """A sentence on what ``pairs`` paired folds can show: a warning when no paired Wilcoxon test can reach
    p < :data:`ALPHA`, else ``""``."""
    if pairs < 1 or smallest_wilcoxon_p(pairs) < ALPHA:
        return ""
    needed = next(n for n in range(pairs, 64) if smallest_wilcoxon_p(n) < ALPHA)
    return (
        f"With {pairs} paired fold(s), a two-sided Wilcoxon signed-rank test cannot give p below "
        f"{smallest_wilcoxon_p(pairs):.3g} (reached only when every fold favours the same method), so **no "
        f"difference between methods here can be statistically significant** (p < {ALPHA:g} needs at least "
        f"{needed} paired folds); the ranking of this run may reverse in the next."
    )


def significance(p_value: float) -> str:
    """``"significant"`` below :data:`ALPHA`, else ``"not significant"``."""
    return "significant" if p_value < ALPHA else "not significant"


def format_comparison(comparison: Comparison | None, digits: int = 2, pairs: bool = True) -> str:
    """A paired test as one table cell: the mean paired difference in points with ``digits`` decimals, the p-value
    and whether it is below :data:`ALPHA`, and (``pairs``) the number of paired folds:
    ``"+2.60 (p = 0.103, not significant, n=10)"``. Without a test: ``"+0.00 (no test: identical on every fold,
    n=3)"``; without shared folds ``"– (no shared folds)"``; without a comparison ``"–"``."""
    if comparison is None:
        return "–"
    if comparison.mean_difference is None:
        return f"– ({comparison.note})"
    n = f", n={comparison.pairs}" if pairs else ""
    p = comparison.p_value
    test = f"no test: {comparison.note}" if p is None else f"p = {p:.3g}, {significance(p)}"
    return f"{100 * comparison.mean_difference:+.{digits}f} ({test}{n})"


def comparison_cell(results: Results, method: str, digits: int = 2) -> str:
    """The paired-test cell of ``method`` in a table of ``results``: ``(reference)`` for the reference, else
    :func:`format_comparison` of its test."""
    if method == results.reference:
        return "(reference)"
    if method not in results.comparisons:
        return "– (no crossd method)"
    return format_comparison(results.comparisons[method], digits)


def loading_note(method: MethodSummary | SegmentationSummary) -> str:
    """One sentence saying how a method's network was built from its checkpoint."""
    loading = method.loading
    init, ckpt = method.init, loading.get("checkpoint")
    source = f"`{Path(ckpt).name}`" if ckpt else "no checkpoint"
    notes = {
        "crossd": "Cross-D network" if loading.get("spatial_dims") == 2 else "Cross-D 3D kernels copied into Conv3d",
        "acs": "ACS convolution of the 2D kernels",
        "i3d": "2D kernels inflated over depth (I3D)",
        "center": "2D kernels in the central depth slice",
        "2.5d": "2D kernels as (1, k, k) 3D kernels (2.5D: slices mixed only by pooling)",
        "random": "random initialisation (architecture only)",
        "regular2d": "the regular 2D network",
        "slices": f"the 2D network on every axial slice, {loading.get('pool')}-pooled",
        "slices3": f"the 2D network on the slices of 3 orientations, {loading.get('pool')}-pooled, concatenated",
    }
    text = f"{notes.get(init, init)} from {source}"
    kernel_init = KERNEL_INITS.get(init)  # None for names of older results
    if loading.get("source_conv") == "crossd" and kernel_init is not None and kernel_init.angle0:
        text += " (the Cross-D kernels' angle-0 slices)"
    if loading.get("align"):
        text += ", shift kernels aligned"
    if loading.get("spatial_dims") == 3 and (kernel_init is None or kernel_init.needs_checkpoint):
        if loading.get("drop_bn_stats"):
            text += "; BatchNorms named `*bn*` reset, downsample BatchNorms kept (the authors' loading)"
        else:
            text += "; all BatchNorm statistics and affine parameters kept"
    return text


def schedule_note(args: dict) -> str:
    """One sentence on which parameters trained, and whether a shortened ``paper`` run reached every phase."""
    c, protocol = args["protocol_constants"], args["protocol"]
    if protocol != "paper":
        trained = {"bn": "BatchNorm + new head", "linear": "new head only", "finetune": "all parameters"}[protocol]
        return (
            f"Trained: {trained} (Adam, x{c['gamma']:g} at {'/'.join(f'{f:.0%}' for f in c['milestones_fraction'])})."
        )
    text = (
        f"Trained: new head with AdamW (x{c['gamma']:g} at epochs {', '.join(map(str, c['milestones']))}), then from "
        f"epoch {c['bn_epoch']} (counted from 0) head + all BatchNorm affine parameters with Adam at the lr reached."
    )
    if args["epochs"] <= c["bn_epoch"]:
        text += f" With {args['epochs']} epochs the BatchNorm phase was not reached."
    return text


def reference_method(results: Results) -> str:
    """The method the Wilcoxon column compares with: ``results.reference`` (``crossd``, else the first Cross-D
    method), ``"crossd"`` when there is none."""
    return results.reference or "crossd"


def split_note(args: dict, data: dict) -> str:
    """One sentence on the test sets when the file's official test split was kept, else ``""``."""
    if args.get("split") != "official":
        return ""
    return (
        f"Test set: the file's official test split ({data['test_samples']} samples) in every job; the folds cut "
        "train + val into training and validation (the held-out fold)."
    )


def quality_flags(method: MethodSummary, num_classes: int) -> list[str]:
    """Warnings about a method's folds: folds whose test predictions all fell in one class (the network collapsed
    to a constant), and a mean balanced accuracy under chance (``1 / num_classes``)."""
    flags = []
    collapsed = sum(f.predicted_classes == 1 for f in method.folds)
    if collapsed:
        flags.append(f"{collapsed} of {len(method.folds)} folds predicted one class for every test sample")
    balanced = method.mean("balanced_accuracy")
    if balanced is not None and balanced < 1 / num_classes:
        flags.append(
            f"mean balanced accuracy {100 * balanced:.2f} % is under chance ({100 / num_classes:.2f} % for "
            f"{num_classes} classes)"
        )
    return flags


def metric_cells(method: MethodSummary, metrics: Sequence[str]) -> list[str]:
    """``mean ± std`` over the folds, in percent, of each of ``metrics``."""
    return [mean_std(method.mean(k), method.std(k)) for k in metrics]


def results_markdown(results: Results) -> str:
    """The ``results.md`` text of a classification evaluation."""
    args, data = results.args, results.data
    constants = args["protocol_constants"]
    reference = reference_method(results)
    lines = [
        f"# Evaluation of `{Path(args['data']).name}`",
        "",
        f"Protocol **{args['protocol']}**: {args['folds']}-fold cross-validation x {args['repeats']} repeat(s), "
        f"{args['epochs']} epoch(s), batch {args['batch_size']}, lr {args['lr']:g}, best epoch by "
        f"{constants['select'].replace('_', ' ')}, {constants['scaling'].replace('_', '-')} min-max scaling, "
        f"`{args['normalize']}` normalisation, seed {args['seed']}.",
        f"Data: {data['samples']} samples, {data['num_classes']} classes, {data['spatial_dims']}D, sample shape "
        f"{tuple(data['shape'])}.",
        *filter(None, [split_note(args, data)]),
        schedule_note(args),
        "",
    ]
    flags = {m.method: quality_flags(m, data["num_classes"]) for m in results.methods}
    header = ["Method", *(title for _, title in COLUMNS), "Folds", f"Wilcoxon vs {reference}: Δ acc. (p)"]
    rows = [
        [
            m.method,
            *metric_cells(m, [key for key, _ in COLUMNS]),
            f"{len(m.folds)} ⚠" if flags[m.method] else str(len(m.folds)),
            comparison_cell(results, m.method),
        ]
        for m in results.methods
    ]
    lines += markdown_table(header, rows)
    lines += ["", "Values are percentages, mean ± population std over folds; Δ is the mean paired difference."]
    warnings = [f"- ⚠ **{name}**: {'; '.join(texts)}." for name, texts in flags.items() if texts]
    if warnings:
        lines += ["", "**⚠ Check these runs before reading their numbers** (a collapsed or under-chance network):", ""]
        lines += warnings
    pairs = [c.pairs for c in results.comparisons.values()]
    note = design_note(min(pairs)) if pairs else ""
    lines += ["", note, ""] if note else [""]
    lines += ["## How each network was loaded", ""]
    lines += [f"- **{m.method}**: {loading_note(m)}." for m in results.methods]
    if not results.complete:
        lines += ["", "_Incomplete: the run stopped before every fold finished; rerun with `--resume`._"]
    return "\n".join(lines) + "\n"


def dice_table(results: Results, comparisons: bool = True) -> list[str]:
    """The Markdown table of a segmentation evaluation: per method with folds, mean Dice and Dice per foreground
    class (mean ± population std over folds, in percent), and with ``comparisons`` the fold count and the paired
    test of mean Dice against the reference."""
    classes = results.classes
    header = ["Method", "Mean Dice", *(f"Dice {c}" for c in classes)]
    if comparisons:
        header += ["Folds", f"Wilcoxon vs {reference_method(results)}: Δ Dice (p)"]
    rows = []
    for m in (m for m in results.methods if m.folds):
        row = [m.method, *metric_cells(m, ["dice_mean", *(f"dice_{c}" for c in classes)])]
        rows.append([*row, str(len(m.folds)), comparison_cell(results, m.method)] if comparisons else row)
    return markdown_table(header, rows)


def segmentation_markdown(results: Results) -> str:
    """The ``results.md`` text of a segmentation evaluation."""
    args, data = results.args, results.data
    lines = [
        f"# Segmentation of `{Path(str(args['data'])).name}`",
        "",
        f"Protocol **{args['protocol']}**: {args['folds']}-fold cross-validation x {args['repeats']} repeat(s), "
        f"{args['epochs']} epoch(s), batch {args['batch_size']}, lr {args['lr']:g}, UNet3D decoder "
        f"{tuple(args['decoder_channels'])}, best epoch by validation mean Dice, seed {args['seed']}.",
        f"Data: {data['samples']} volumes of shape {tuple(data['shape'])}, classes {', '.join(data['classes'])}.",
        "",
        *dice_table(results),
        "",
        "Dice in percent (background excluded), mean ± population std over folds.",
        "",
        "## How each encoder was loaded",
        "",
    ]
    lines += [f"- **{m.method}**: {loading_note(m)}; fresh UNet3D decoder." for m in results.methods]
    return "\n".join(lines) + "\n"


def summary_lines(results: Results) -> list[str]:
    """One console line per method with folds: mean ± std over folds of accuracy (classification), or of mean Dice
    and Dice per class (segmentation)."""
    lines = []
    for m in (m for m in results.methods if m.folds):
        if results.task == "segmentation":
            per_class = ", ".join(f"{c} {mean_std(m.mean(f'dice_{c}'), m.std(f'dice_{c}'))}" for c in results.classes)
            score = f"Dice {mean_std(m.mean(), m.std())} ({per_class})"
        else:
            score = f"accuracy {mean_std(m.mean('accuracy'), m.std('accuracy'))}"
        lines.append(f"{m.method:>12}: {score} over {len(m.folds)} folds")
    return lines
