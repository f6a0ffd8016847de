"""``crossd study --summarise-only`` remakes study 7's archived ResNet-18 tables (docs/experiments.md) from its
records in benchmarks/results/study7_r18, number for number."""

from __future__ import annotations

import json
import math
import re
import shutil
import statistics
from pathlib import Path

import pytest

from crossd.cli import main
from crossd.demo.report import _study_table
from crossd.report.study import read_study

ROOT = Path(__file__).parents[2]
ARCHIVE = ROOT / "benchmarks" / "results" / "study7_r18"
CELL = re.compile(r"^([+-]\d+\.\d)(?: pts)? \(p ?= ?([0-9.e+-]+|n/a)")


def _tables(text: str) -> dict[str, list[list[str]]]:
    """Table rows (cells) under each ``### ``/``#### `` heading of ``text``."""
    tables, heading = {}, None
    for line in text.splitlines():
        if line.startswith("#"):
            heading = line.lstrip("#").strip().split(" (")[0]
        elif line.startswith("| `") and heading:
            tables.setdefault(heading, []).append([c.strip() for c in line.strip("|").split("|")])
    return tables


def _cell(text: str) -> tuple[str, float] | str:
    match = CELL.match(text)
    return (match[1], float(match[2])) if match else text


def _remake(tmp_path: Path, study: str) -> tuple[Path, str]:
    """Copy ``benchmarks/results/<study>`` to ``tmp_path``, run ``crossd study --summarise-only`` on the copy with
    ``benchmarks/studies/<study>.toml``; the copy and the Markdown it wrote."""
    archive = shutil.copytree(ROOT / "benchmarks" / "results" / study, tmp_path / study)
    config = ROOT / "benchmarks" / "studies" / f"{study}.toml"
    markdown = tmp_path / "study.md"
    assert (
        main(["study", str(config), "--summarise-only", "--output-dir", str(archive), "--markdown", str(markdown)]) == 0
    )
    return archive, markdown.read_text()


def test_summarise_only_reproduces_the_archived_resnet18_tables(tmp_path):
    archive, text = _remake(tmp_path, "study7_r18")
    docs = (ROOT / "docs" / "experiments.md").read_text()
    section = docs[docs.index("### ResNet-18, 5 seeds x 5 folds") : docs.index("**What it shows** (25 paired folds")]
    old, new = _tables(section), _tables(text)
    for protocol in ("bn", "finetune", "paper"):
        heading = f"Protocol `{protocol}`"
        assert len(new[heading]) == len(old[heading]) == 16
        for was, now in zip(old[heading], new[heading], strict=True):
            assert was[:3] == now[:3]  # method, mean ± std, std of seed means
            assert now[3] == "—"  # no wall time recorded in this archive
            assert [_cell(c) for c in was[3:]] == [_cell(c) for c in now[4:]]  # differences and p (3 digits)
    side = "Protocols side by side"
    rows = [(was, now) for was, now in zip(old[side], new[side], strict=False) if len(was) == 10]
    assert len(rows) == 16
    for was, now in rows:
        assert was[0] == now[0]
        for a, b in zip(was[1:], now[1:], strict=True):  # p printed with 2 digits there, 3 here
            a, b = _cell(a), _cell(b)
            assert a == b if isinstance(a, str) else (a[0] == b[0] and math.isclose(a[1], b[1], rel_tol=0.05))
    pretrained = {row[0]: row[1:] for row in old[side] if len(row) == 3}  # arm, 2D accuracy, off / centre
    assert len(pretrained) == 13
    assert {row[0]: row[1:3] for row in new[side] if len(row) == 4} == pretrained
    study = read_study(archive / "study.json")  # what crossd demo --study reads
    archived = json.loads((ARCHIVE / "study.json").read_text())
    assert study["by_protocol"] == archived["by_protocol"] and study["rows"] == archived["rows"]
    assert study["args"]["arch"] == "resnet18" and study["args"]["seeds"] == [0, 1, 2, 3, 4]
    demo_table = "\n".join(_study_table(study))  # crossd demo --study shows the first protocol's rows
    assert "| `regular_hybrid_acs` | 56.75 ± 6.41 | 25 |" in demo_table and "protocol `bn`" in demo_table


@pytest.mark.parametrize(
    ("network", "start", "end", "grid_g4"),
    [
        ("cnn", "## Study 9 — plane groups", "### What study 9 shows (small CNN)", "+0.5 (p = 0.418"),
        ("r18", "## Study 9 on ResNet-18", "### What study 9 shows on ResNet-18", "+1.1 (p = 0.637"),
    ],
)
def test_study_9s_tables_in_the_docs_are_remade_from_its_archive(tmp_path, network, start, end, grid_g4):
    """docs/experiments.md's study 9 tables (small CNN and ResNet-18) are crossd study's output on the archived
    records, row for row, with each plane-group arm's paired test against its per-sample arm (``compare_with``)."""
    _, text = _remake(tmp_path, f"study9_{network}")
    tables = _tables(text)
    bn = {row[0].split(":")[0]: row for row in tables["Protocol `bn`"]}
    assert len(bn) == 12 and bn["`project_grid_g4`"][-1].startswith(f"`project_grid`: {grid_g4}")
    assert bn["`project_grid`"][-1] == "—"  # a per-sample arm is no variant
    docs = (ROOT / "docs" / "experiments.md").read_text()
    section = docs[docs.index(start) : docs.index(end)]
    rows = [line for line in text.splitlines() if line.startswith("| `")]
    assert len(rows) == 12 * 3 + 9 + 9 + 8 and all(row in section for row in rows)  # + 2D classifiers, differences


def test_the_2d_classifier_table_is_the_archived_test_metrics_per_seed(tmp_path):
    """The seed paper's Table 1 analog: each arm's five metrics are the mean ± std over seeds of its
    ``metrics.json`` test scores, and each difference from ``regular`` counts the seeds it is higher on."""
    archive, text = _remake(tmp_path, "study9_cnn")
    tables = _tables(text)["The pretrained networks as 2D classifiers"]
    rows = {row[0]: row for row in tables if len(row) == 7}  # the metrics table (the differences have 6 cells)

    def test_scores(arm: str) -> list[dict]:
        return [json.loads((archive / f"seed{s}" / arm / "metrics.json").read_text())["test"] for s in range(5)]

    regular, rotate = test_scores("regular"), test_scores("rotate")
    metrics = ("precision_macro", "recall_macro", "f1_macro", "balanced_accuracy", "accuracy")
    for arm, scores in (("regular", regular), ("rotate", rotate)):
        row = rows[f"`{arm}`"]
        assert row[1] == "5"  # arm, seeds and the five metrics
        for metric, cell in zip(metrics, row[2:], strict=True):
            values = [100 * s[metric] for s in scores]
            mean, std = (float(v) for v in cell.split(" ± "))
            assert math.isclose(mean, sum(values) / 5, abs_tol=0.051)
            assert math.isclose(std, statistics.pstdev(values), abs_tol=0.051)
    differences = [row for row in tables if len(row) == 6 and row[0] == "`rotate`"]
    assert len(differences) == 1
    f1 = [100 * (b["f1_macro"] - a["f1_macro"]) for a, b in zip(regular, rotate, strict=True)]
    higher = sum(d > 0 for d in f1)
    assert differences[0][3].startswith(f"{sum(f1) / 5:+.1f} ({higher}/5 seeds higher, p = ")


def test_study_8s_table_1_analog_in_the_docs_is_remade_from_study_7s_archive(tmp_path):
    """docs/experiments.md's ResNet-18 Table 1 analog is crossd study's classifier table on study 7's records."""
    _, text = _remake(tmp_path, "study7_r18")
    table = _tables(text)["The pretrained networks as 2D classifiers"]
    docs = (ROOT / "docs" / "experiments.md").read_text()
    section = docs[docs.index("### Table 1 analog, ResNet-18") : docs.index("## Study 9")]
    assert len(table) == 12 + 11 and all("| " + " | ".join(row) + " |" in section for row in table)


@pytest.mark.parametrize(
    ("study", "arch", "section"),
    [("study8_cnn", "small_cnn", "Small CNN, study 8"), ("study8_r18", "resnet18", "ResNet-18, study 8")],
)
def test_study_8s_tables_in_the_docs_are_remade_from_its_archive(tmp_path, study, arch, section):
    """docs/experiments.md's study 8 tables of each network (3D inits, 2D tasks, the networks as 2D classifiers)
    are crossd study's output on the archived records, line for line, for the seeds the archive holds."""
    _, text = _remake(tmp_path, study)
    bn = {row[0].split(":")[0]: row for row in _tables(text)["Protocol `bn`"]}
    assert len(bn) == 11
    if arch == "small_cnn":  # one model on this network (test_slice_model); ResNet-18's stem pool keeps them apart
        assert bn["`2.5d`"][1:3] == bn["`slices`"][1:3]
    docs = (ROOT / "docs" / "experiments.md").read_text()
    start = docs.index(f"### {section}")
    part = docs[start : docs.index("### What study 8 shows", start)]
    lines = [line for line in text.splitlines() if line.startswith(("| `", f"Arch `{arch}`"))]
    assert len(lines) > 60 and all(line in part for line in lines)


def test_readmes_study_8_rows_are_the_archived_small_cnn_means():
    """README's 2.5D / slices / slices3 rows (small CNN columns) and the I3D / ACS figures beside them are the
    archived study 8 means in percent, for the seeds the archive holds."""
    study = json.loads((ROOT / "benchmarks" / "results" / "study8_cnn" / "study.json").read_text())
    rows = {p: {r["method"]: r for r in study["by_protocol"][p]} for p in ("bn", "finetune", "paper")}
    readme = (ROOT / "README.md").read_text()
    seeds = study["seeds"]["bn"]
    assert seeds == study["seeds"]["finetune"] == study["seeds"]["paper"]
    for method in ("2.5d", "slices", "slices3"):
        cells = [f"{100 * rows[p][method]['mean']:.1f} ± {100 * rows[p][method]['std']:.1f}" for p in rows]
        row = next(
            line
            for line in readme.splitlines()
            if line.startswith("| regular 2D")
            and "study 8" in line
            and (f"`{method}`" in line or (method == "2.5d" and "2.5D" in line))
        )
        assert f"seeds {seeds[0]}-{seeds[-1]}" in row and row.replace("**", "").endswith(" | ".join(cells) + " |")
    for method in ("i3d", "acs"):
        figures = " / ".join(f"{100 * rows[p][method]['mean']:.1f}" for p in rows)
        assert f" {figures}" in readme.replace("\n", " ")
