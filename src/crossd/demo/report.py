"""The demo's report: ``report.md`` from the run's summary, the accuracy box plot and the training curves.

Every number in the report is read from the summary that :func:`crossd.demo.run_demo` builds from the run's own
outputs (``metrics.json`` and ``log.csv`` of the pretraining runs, the evaluation's ``results.json``, timings).
"""

from __future__ import annotations

import csv
import shlex
from importlib import resources
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from crossd.io import atomic_write
from crossd.report.tables import (
    comparison_cell,
    design_note,
    dice_table,
    format_comparison,
    loading_note,
    markdown_table,
    mean_std,
    metric_cells,
)
from crossd.results import Comparison, MethodSummary, Results

STUDY_COMMAND = (
    "python benchmarks/transfer_study.py --output-dir runs/study_r18 --markdown runs/study_r18/study.md "
    "--arch resnet18 --variants regular regular_hybrid regular_hybrid_acs volumes_only shift rotate rotate_hybrid "
    "--samples-2d 3000 --size-2d 32 --pretrain-epochs 6 --batch-size 32 --epochs 20 --eval-lr 1e-2 --threads 1 "
    "--seeds 0 1 2 3 4"
)
"""The command behind Study 6 of ``docs/experiments.md``: this demo's network and settings, 5 seeds x 5 folds."""


def read_log(path: str | Path) -> list[dict[str, float]]:
    """Rows of a pretraining ``log.csv`` as floats (``[]`` when there is no log)."""
    path = Path(path)
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return [{k: float(v) for k, v in row.items() if v not in ("", None)} for row in csv.DictReader(f)]


def _save(fig: Figure, path: str | Path) -> Path:
    fig.tight_layout()
    return atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=110))


def accuracy_plot(results: Results, path: str | Path) -> Path:
    """Per-fold test accuracy (%) of each method of a classification evaluation: every fold as a dot (a strip
    plot: with a handful of folds a box would summarise three points), the mean as a bar, and chance level as a
    dashed line, all in the legend. Writes a PNG."""
    methods = [m for m in results.methods if m.folds]
    fig = Figure(figsize=(2.8 + 1.1 * max(len(methods), 1), 3.6))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    for x, m in enumerate(methods):
        values = [100 * f.accuracy for f in m.folds]
        jitter = np.linspace(-0.12, 0.12, len(values)) if len(values) > 1 else np.zeros(1)
        ax.scatter(x + jitter, values, s=22, color="C0", alpha=0.8, zorder=3, label="one fold" if x == 0 else None)
        ax.hlines(np.mean(values), x - 0.25, x + 0.25, color="C3", lw=2, zorder=4, label="mean" if x == 0 else None)
    ax.axhline(100 / results.data["num_classes"], color="0.5", ls="--", lw=0.8, label="chance")
    ax.set_xticks(range(len(methods)), [m.method for m in methods], rotation=20)
    ax.set_ylabel("test accuracy (%)")
    folds = max((len(m.folds) for m in methods), default=0)
    ax.set_title(f"3D test accuracy, {folds} folds per method", fontsize=9)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def training_curves(pretrain_logs: dict[str, list[dict[str, float]]], results: Results, path: str | Path) -> Path:
    """Two panels: pretraining train (dashed) and validation (solid) accuracy per epoch for each 2D network (from
    ``log.csv`` rows; lines without markers so the dashes show), and the downstream validation accuracy per epoch
    of each method, mean over folds. Writes a PNG."""
    fig = Figure(figsize=(9.0, 3.4))
    FigureCanvasAgg(fig)
    left, right = fig.subplots(1, 2)
    for i, (name, rows) in enumerate(pretrain_logs.items()):
        epochs = [r["epoch"] for r in rows]
        one = len(rows) == 1  # a single epoch draws no line: mark it (x train, o val)
        train_style, val_style = ("x", "o") if one else ("--", "-")
        left.plot(epochs, [r["train_acc1"] for r in rows], train_style, lw=1.6, color=f"C{i}", label=f"{name}: train")
        left.plot(epochs, [r["val_acc1"] for r in rows], val_style, lw=1.6, color=f"C{i}", label=f"{name}: val")
    left.set_xlabel("epoch")
    left.set_ylabel("accuracy (%)")
    left.set_title("2D pretraining: train dashed, validation solid", fontsize=9)
    left.legend(fontsize=7)
    for i, method in enumerate(results.methods):
        histories = [f.history["val_accuracy"] for f in method.folds if f.history]
        if not histories:
            continue
        length = min(len(h) for h in histories)
        curve = 100 * np.mean([h[:length] for h in histories], axis=0)
        right.plot(np.arange(1, length + 1), curve, "-", lw=1.4, color=f"C{i}", label=method.method)
    right.set_xlabel("epoch")
    right.set_ylabel("validation accuracy (%)")
    right.set_title(f"3D transfer ({results.args['protocol']} protocol), mean over folds", fontsize=9)
    right.legend(fontsize=7)
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    return _save(fig, path)


def evaluate_command(args: dict, output_dir: str | Path) -> str:
    """The ``crossd evaluate`` command that repeats the evaluation whose ``results.json`` ``args`` are given, every
    setting spelled out (the demo's normalisation, learning rate, folds and epochs differ from the command's
    defaults), writing to ``output_dir``."""
    inits = []
    for init, checkpoint, *label in args["methods"]:
        name = label[0] if label and label[0] != init else init
        name = name if name == init or name.startswith(f"{init}+") else f"{init}+{name}"
        inits.append(name if checkpoint is None else f"{name}={checkpoint}")
    words = ["crossd", "evaluate", "--data", args["data"], "--init", *inits, "--protocol", args["protocol"]]
    for flag in ("folds", "repeats", "epochs", "batch_size", "lr", "normalize", "seed", "size", "image_size", "arch"):
        if args.get(flag) is not None:
            words += [f"--{flag.replace('_', '-')}", f"{args[flag]:g}" if flag == "lr" else str(args[flag])]
    words += [f"--{flag.replace('_', '-')}" for flag in ("align", "drop_bn_stats", "recalibrate_bn") if args.get(flag)]
    words += ["--slice-pool", args["slice_pool"]] if args.get("slice_pool", "mean") != "mean" else []
    return shlex.join([*words, "--output-dir", str(output_dir)])


def balanced_equals_accuracy(records: list[dict]) -> bool:
    """Whether balanced accuracy equals accuracy in every record (fold records, or metrics dicts) that has both:
    true when every class has the same number of test samples."""
    pairs = [(r["accuracy"], r["balanced_accuracy"]) for r in records if "balanced_accuracy" in r]
    return bool(pairs) and all(abs(a - b) < 1e-9 for a, b in pairs)


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def _data_section(summary: dict) -> list[str]:
    d = summary["data"]["description"]
    c = d["config"]
    lines = [
        "## Data",
        "",
        f"Real MRI: the {d['source']} (shipped inside the `nilearn` package, loaded offline). Task: the "
        f"{d['task']}, {len(d['classes'])} classes ({', '.join(d['classes'])}), balanced. Each patch gets its "
        f"own random gamma, contrast, brightness, linear bias field and Gaussian noise (std {c['noise']:g} x "
        "0.5–1.5), so the centre intensity alone does not give the class.",
        "",
        "| Set | File | Patch | Centres from | Train / val / test |",
        "|---|---|---|---|---|",
    ]
    roles = (
        ("pretrain", "2D pretraining"),
        ("volumes", "3D pretraining (hybrid runs)"),
        ("downstream", "3D downstream"),
    )
    for key, role in roles:
        if key not in summary["data"]:
            continue
        part = d[key]
        sizes = " / ".join(str(sum(part["class_counts"][s])) for s in ("train", "val", "test"))
        shape = " x ".join(str(s) for s in part["shape"])
        where = f"{part['hemisphere']} hemisphere" + (f", {part['orientations']}" if "orientations" in part else "")
        lines.append(f"| {role} | `{summary['data'][key]}` | {shape} | {where} | {sizes} |")
    lines += [
        "",
        "The files use MedMNIST's layout (`train_images`, `train_labels`, `val_*`, `test_*`; uint8) and can be "
        "given to `crossd pretrain` / `crossd evaluate` directly; `data/mni152_tissue.json` lists the build "
        "settings and per-class counts.",
        "",
    ]
    return lines


def _pretrain_section(summary: dict) -> list[str]:
    s = summary["settings"]
    size = summary["data"]["description"]["pretrain"]["shape"][0]
    hybrid = any(run.get("volumes") for run in summary["pretrain"].values())
    lines = [
        "## 1. Pretraining",
        "",
        f"Torchvision ResNet-18s trained from scratch with `crossd.train.pretrain`: `crossd` has every convolution "
        f"a Cross-D layer (`rotate` mode, a 3D kernel sliced per sample by its rotation head), `regular` is the "
        f"plain network. {s['pretrain_epochs']} epoch(s), batch {s['pretrain_batch_size']}, AdamW lr {s['lr']:g}, "
        f"{size}x{size} random-resized crops of 50–100% of the patch area (so the labelled centre stays in view) "
        "and horizontal flips.",
        "",
    ]
    if hybrid:
        lines += [
            "The `+volumes` networks are trained the same way with **hybrid 2D+3D pretraining** (`crossd pretrain "
            "--volumes`): after every 4th 2D batch, a batch of 8 left-hemisphere volumes goes through a 3D twin that "
            "shares every weight — for `crossd+volumes` the stored 3D kernels themselves, for its fair baseline "
            "`regular+volumes` its 2D kernels in ACS form (the fair baseline `acs+volumes`). Both see exactly the same "
            "volumes.",
            "",
        ]
    tests = [run["metrics"].get("test", {}) for run in summary["pretrain"].values()]
    balanced = not balanced_equals_accuracy(tests)
    lines += [
        "| Network | Epochs | Val accuracy (%) | Test accuracy (%) | "
        + ("Test balanced acc. (%) | " if balanced else "")
        + "Time (s) |",
        "|---|---|---|---|" + ("---|" if balanced else "") + "---|",
    ]
    for name, run in summary["pretrain"].items():
        m = run["metrics"]
        test = m.get("test", {})
        shown = "reused" if run.get("reused") else f"{summary['timings'][f'pretrain {name}']['wall']:.0f}"
        extra = f" {_percent(test.get('balanced_accuracy'))} |" if balanced else ""
        lines.append(
            f"| {name} ResNet-18 | {m['epochs']} | {_percent(m['val'].get('accuracy'))} | "
            f"{_percent(test.get('accuracy'))} |{extra} {shown} |"
        )
    if not balanced:
        lines += [
            "",
            "The 2D test split has the same number of patches per class, so balanced accuracy equals "
            "accuracy and is not shown.",
        ]
    return [*lines, ""]


def _margins_section(summary: dict) -> list[str]:
    margins = summary.get("margins") or {}
    if not margins:
        return []
    bases = list(next(iter(margins.values())))
    lines = [
        "### Cross-D against each baseline",
        "",
        "Test-accuracy difference of each Cross-D transfer against each baseline, in points, with the paired "
        "Wilcoxon signed-rank test over the shared folds (positive: Cross-D is better; significant means p < 0.05).",
        "",
        *(
            []
            if "crossd+volumes" in margins
            else [
                "The best Cross-D setting of that study, hybrid 2D+3D pretraining, is not in this run: "
                "`crossd demo --volumes` adds it and its fair baseline (`crossd+volumes`, `acs+volumes`).",
                "",
            ]
        ),
    ]
    rows = [
        [method, *(format_comparison(Comparison.from_json(tests[b]), digits=1) for b in bases)]
        for method, tests in margins.items()
    ]
    return [*lines, *markdown_table(["Cross-D", *(f"vs {b}" for b in bases)], rows), ""]


def demo_results(summary: dict) -> Results:
    """The classification results a demo summary holds (its ``results``, ``comparisons`` and evaluation
    ``args``; ``crossd`` is the reference)."""
    methods = [MethodSummary.from_json(m) for m in summary["results"]]
    comparisons = {k: Comparison.from_json(c) for k, c in summary.get("comparisons", {}).items()}
    return Results("classification", summary["evaluate"]["args"], {}, methods, "crossd", comparisons)


def _evaluate_section(summary: dict) -> list[str]:
    results = demo_results(summary)
    args = results.args
    select = args["protocol_constants"]["select"].replace("_", " ").replace("val ", "validation ")
    folds_per_method = max((len(m.folds) for m in results.methods), default=0)
    if args["protocol"] == "paper":
        c = args["protocol_constants"]
        trained = (
            f"the authors' later protocol (the paper's Tables 2 and 3): convolutions frozen, the new head trained "
            f"alone (AdamW lr {args['lr']:g}), then head + BatchNorm affine parameters (Adam) from epoch "
            f"{c['bn_epoch']}, batch {args['batch_size']}, {args['epochs']} epoch(s), best epoch by {select}), "
            f"{args['folds']}-fold cross-validation x {args['repeats']} repeat(s)"
        )
    else:
        trained = (
            f"convolutions frozen, BatchNorm and a new linear head trained (Adam lr {args['lr']:g}, batch "
            f"{args['batch_size']}, {args['epochs']} epoch(s), best epoch by {select}), {args['folds']}-fold "
            f"stratified cross-validation x {args['repeats']} repeat(s)"
        )
    folds = [f for m in summary["results"] for f in m["folds"]]
    keys = ("accuracy", "balanced_accuracy", "f1_macro")
    if balanced_equals_accuracy(folds):
        keys = ("accuracy", "f1_macro")
    titles = {"accuracy": "Test accuracy (%)", "balanced_accuracy": "Balanced acc. (%)", "f1_macro": "F1 macro (%)"}
    header = ["Method", "3D network", *(titles[k] for k in keys), "Wilcoxon vs crossd: Δ acc. (p)"]
    rows = [
        [m.method, loading_note(m), *metric_cells(m, keys), comparison_cell(results, m.method, digits=1)]
        for m in results.methods
    ]
    lines = [
        "## 2. Transfer to 3D and evaluation",
        "",
        f"The 2D networks become 3D ResNet-18s (`crossd.to_3d`) and are compared with `crossd.evaluate` under "
        f"protocol **{args['protocol']}**: {trained} on the pooled 3D set, `{args['normalize']}` normalisation.",
        "",
        baselines_note(summary),
        "",
        *markdown_table(header, rows),
    ]
    if "balanced_accuracy" not in keys:
        lines += [
            "",
            "Balanced accuracy equals accuracy in every fold (stratified folds of balanced classes hold the same "
            "number of test samples per class), so only accuracy is shown.",
        ]
    lines += [
        "",
        f"Mean ± population std over {folds_per_method} fold(s) per method, in percent; chance is "
        f"{100 / len(summary['data']['description']['classes']):.0f}%. Every fold of every method, with its "
        f"per-epoch history, is in `{summary['evaluate']['results']}`. The same table again, every setting "
        "spelled out (the demo probes with `imagenet` normalisation, as its networks were pretrained, and its own "
        "learning rate and epochs, not `crossd evaluate`'s defaults):",
        "",
        f"    {summary['evaluate']['command']}",
        "",
        "More folds narrow the spread: "
        + (
            "`crossd demo --protocol paper --folds 5 --repeats 3` runs the paper's full protocol."
            if args["protocol"] == "paper"
            else "`crossd demo --folds 5 --repeats 3 --epochs 100 --eval-lr 1e-3` runs the full protocol."
        ),
        "",
        f"![Test accuracy per method]({summary['figures']['accuracy']})",
        "",
        f"![Training curves]({summary['figures']['training_curves']})",
        "",
        *_margins_section(summary),
    ]
    return lines


def baselines_note(summary: dict) -> str:
    """Which baselines ran (every method that is not a Cross-D transfer), and what ``--baselines core`` leaves
    out."""
    names = ", ".join(f"`{m['method']}`" for m in summary["results"] if m["init"] != "crossd")
    if summary["settings"].get("baselines", "core") == "all":
        return (
            f"Baselines in this run: {names}; `slices` runs the regular 2D network on every axial slice and "
            "averages the slice features (slice aggregation), `2.5d` gives its kernels depth 1 (2.5D)."
        )
    return (
        f"Baselines in this run (`--baselines core`): {names}. The default run adds slice aggregation (`slices`) "
        "and 2.5D kernels (`2.5d`) of the regular network."
    )


READABLE = 0.3
"""Neighbour correlation from which kernel pictures show shapes a reader can see (i.i.d. noise gives 0)."""


def _filters_section(summary: dict) -> list[str]:
    f, r = summary["figures"], summary["kernel_structure"]
    readable = max(r.values()) >= READABLE
    lines = [
        "## 3. What the Cross-D network learned",
        "",
        f"`{f['planes']}`: the planes the rotation heads pick on real 2D test patches. Left: the first layer's "
        "rotation angles and plane tilts (the angle between the chosen plane and the kernel's centre slice, the "
        "plane at angle 0; a turn about the depth axis tilts nothing). Right: the tilt in every Cross-D layer. "
        "Tilts near 0° mean the heads keep one orientation and 2D training reaches little of each 3D kernel "
        "beyond its centre slice.",
        "",
        f"![Predicted planes]({f['planes']})",
        "",
        "How much the first layer learned, as the correlation of neighbouring kernel weights (the kernels summed "
        "over input channels, which is what a grey image repeated over them meets; 0 for random kernels, 0.5 and "
        f"more for the smooth edge and blob detectors of a well-trained first layer): Cross-D centre slice "
        f"r = {r['crossd_centre']:.2f}, its other depth slices r = {r['crossd_other']:.2f}, regular network "
        f"r = {r['regular']:.2f}.",
        "",
    ]
    pictures = (
        f"`{f['kernel3d']}` draws the 12 strongest (most energy) Cross-D `conv1` kernels as depth slices, the "
        "centre one marked 0°, beside the regular network's 2D kernels of the same channels `#k` (I3D repeats "
        f"those at every depth, ACS uses them in three orthogonal planes); `{f['filters']}` animates the 16 Cross-D "
        "kernels that change most as the plane turns about each kernel axis through ±45°, the range the heads may use. "
        "Each "
        "kernel is scaled to its own peak (white positive, black negative). `crossd viz kernel3d --grey` and "
        "`crossd viz filters --grey` draw them for any checkpoint."
    )
    if not readable:
        return [
            *lines,
            f"Below r = {READABLE:g} kernel pictures look like noise to the eye, so they are not shown here: "
            + pictures,
            "",
        ]
    return [
        *lines,
        pictures,
        "",
        f"![3D kernels beside the regular network's 2D kernels]({f['kernel3d']})",
        "",
        f"![Dynamic filters]({f['filters']})",
        "",
    ]


def _read_first_section(summary: dict) -> list[str]:
    """What one run can and cannot show, and where the repository's multi-seed evidence is."""
    pairs = min((c["pairs"] for c in summary.get("comparisons", {}).values()), default=0)
    note = design_note(pairs)
    lines = [
        "## Read this first: one run, few folds",
        "",
        f"> {note}" if note else f"> This run pairs {pairs} folds per comparison; it is still one run of one seed.",
        "> The evidence this repository holds on whether Cross-D transfers better is the multi-seed study described "
        "next, not this table.",
        "",
    ]
    study = summary.get("study")
    if not study:
        return [
            *lines,
            "**Multi-seed evidence.** Study 6 of `docs/experiments.md` in the crossd repository runs this demo's "
            "network and settings with 5 seeds x 5 folds (25 paired folds per comparison) and reports its table "
            "with paired Wilcoxon tests; its conclusion, in the README: Cross-D does not beat I3D and ACS on this "
            "task, and regular 2D + ACS transfers best. It was produced by",
            "",
            f"    {STUDY_COMMAND}",
            "",
            "which writes `runs/study_r18/study.json` (`crossd demo --study runs/study_r18/study.json` shows a "
            "rerun of it here instead) and the table below, as its `--markdown` output printed it (fractions, "
            "differences in points, paired Wilcoxon p; shipped with crossd as `crossd/demo/study6.md`, the same "
            "table as in `docs/experiments.md`):",
            "",
            *shipped_study_table().strip().splitlines(),
            "",
            STUDY7_NOTE,
            "",
        ]
    return [*lines, *_study_table(study)]


STUDY7_NOTE = (
    "The crossd README's multi-seed table (study 7, ResNet-18, `bn` column) is the same setting run again: the "
    "same network, budget, probe and seeds, on 2026-12-03 with the code of then (commit `4714a57`), against this "
    "table's run of 2026-11-25 (commit `e652cb7`). Its arms differ from these by up to 2.1 points (ACS 52.2 % "
    "there, 53.6 % here; `shift` 46.4 % and 48.5 %), within what two runs of one study differ by (up to 3.2 "
    'points; study 7\'s "Two runs of the same study" in `docs/experiments.md`), and both runs reach the same '
    "conclusions."
)
"""Where the README's study 7 table and this report's study 6 table meet, and why their numbers differ."""


def shipped_study_table() -> str:
    """Study 6's table as ``benchmarks/transfer_study.py --markdown`` wrote it (``STUDY_COMMAND``), shipped with
    the package so that every demo report carries the multi-seed evidence beside its one run."""
    return resources.files("crossd.demo").joinpath("study6.md").read_text(encoding="utf-8")


def _study_table(study: dict) -> list[str]:
    """The multi-seed table of a ``study.json`` (``crossd study``), in percent."""
    args = study["args"]
    refs = [r for r in ("i3d", "acs") if any(f"vs_{r}" in row for row in study["rows"])]
    header = ["3D init", "Accuracy (%), mean ± std over seed x fold", "Folds", *(f"vs {r}" for r in refs)]
    rows = [
        [
            f"`{row['method']}`",
            mean_std(row["mean"], row["std"]),
            str(row["n"]),
            *(format_comparison(study_comparison(row, ref), digits=1, pairs=False) for ref in refs),
        ]
        for row in study["rows"]
    ]
    return [
        f"**Multi-seed evidence** from `{study['path']}` (`crossd study`: arch `{args.get('arch')}`, "
        f"protocol `{args.get('protocol')}`, seeds {args.get('seeds')}, {args.get('folds')} folds each):",
        "",
        *markdown_table(header, rows),
        "",
    ]


def study_comparison(row: dict, reference: str) -> Comparison | None:
    """The paired test of a ``study.json`` row against ``reference`` (``None`` when the row has none)."""
    test = row.get(f"vs_{reference}")
    return None if test is None else Comparison.from_json(test)


def _segmentation_section(summary: dict) -> list[str]:
    seg = summary.get("segmentation")
    if not seg:
        return []
    results = Results.from_json(seg)
    args, data = results.args, results.data
    return [
        "## 4. Second task: grey/white-matter segmentation",
        "",
        f"Blocks of the MNI152 template ({data['samples']} blocks of {data['shape']}) segmented into "
        f"{', '.join(data['classes'])} by a 3D U-Net (`crossd.models.UNet3D`) whose encoder is each "
        f"transferred network; protocol **{args['protocol']}** (encoder convolutions frozen), "
        f"{args['folds']}-fold cross-validation x {args['repeats']} repeat(s), {args['epochs']} epoch(s).",
        "",
        *dice_table(results, comparisons=False),
        "",
        "Dice in %, mean ± population std over folds; every fold is in `segmentation/results.json`.",
        "",
    ]


def report_markdown(summary: dict) -> str:
    """The ``report.md`` text for a demo summary (the ``demo.json`` dictionary of :func:`crossd.demo.run_demo`)."""
    machine, timings, s = summary["machine"], summary["timings"], summary["settings"]
    flags = f" --folds {s['folds']} --repeats {s['repeats']}"
    flags += "" if s["epochs"] is None else f" --epochs {s['epochs']}"
    flags += "" if s["eval_lr"] is None else f" --eval-lr {s['eval_lr']:g}"
    flags += "" if s.get("protocol", "bn") == "bn" else f" --protocol {s['protocol']}"
    flags += f" --segmentation --segmentation-epochs {s['segmentation_epochs']}" if s.get("segmentation") else ""
    flags += " --volumes" if s.get("volumes") else ""
    flags += " --baselines core" if s.get("baselines", "core") == "core" else ""
    flags += f" --pretrain-epochs {s['pretrain_epochs']} --seed {s['seed']}"
    flags += f" --samples-2d {s['data']['samples_2d']} --samples-3d {s['data']['samples_3d']}"
    lines = [
        "# crossd demo: Cross-D transfer on real MRI",
        "",
        f"Finished {summary['finished']} in **{timings['total']['wall']:.0f} s** ({timings['total']['cpu']:.0f} CPU "
        f"seconds) on {machine['cpus']} CPU core(s) of {machine['cpu'] or 'an unnamed CPU'} "
        f"(torch's CPU kernels: {machine['cpu_capability']}; {machine['platform']}, Python {machine['python']}, "
        f"torch {machine['torch']}, crossd {machine['crossd']}).",
        f"Command: `crossd demo --output-dir {s['output_dir']}{' --quick' if s['quick'] else ''}{flags}`.",
        "",
        "Cross-D pretrains 3D convolution kernels on 2D images: each layer stores a 3D kernel and, per 2D input, "
        "cuts a 2D kernel from it along a plane its rotation head chooses. This demo pretrains such a network and "
        "a regular one on 2D MRI patches (and, with `--volumes`, both again with a few volumes mixed in), moves them "
        "to "
        "3D and compares how well their frozen kernels serve a 3D task.",
        "",
        *_read_first_section(summary),
        *_data_section(summary),
        *_pretrain_section(summary),
        *_evaluate_section(summary),
        *_filters_section(summary),
        *_segmentation_section(summary),
        "## Timings",
        "",
        "| Stage | Wall-clock s | CPU s |",
        "|---|---|---|",
        *[f"| {stage} | {t['wall']:.1f} | {t['cpu']:.1f} |" for stage, t in timings.items()],
        "",
        "CPU seconds count every thread of this process; on a machine shared with other jobs they, not the "
        "wall-clock, show the work done. Stages reuse their outputs when the demo runs again in the same folder "
        "with the same settings.",
        "",
    ]
    return "\n".join(lines)
