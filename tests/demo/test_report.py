"""Pieces of the demo report that need no run: the reproducing command, the study table, the accuracy columns."""

import argparse
import shlex
from pathlib import Path

import pytest

from crossd.commands import evaluate as evaluate_command_module
from crossd.demo.report import (
    STUDY7_NOTE,
    _read_first_section,
    _study_table,
    balanced_equals_accuracy,
    evaluate_command,
    shipped_study_table,
)
from crossd.evaluate import EvaluateConfig
from crossd.evaluate.methods import method_names

IGNORED = ("output_dir", "resume", "progress", "device", "num_workers")
"""Settings that do not change the table."""


def _record(**overrides) -> dict:
    methods = [
        ("crossd", "o/pretrain-crossd/model.safetensors", "crossd"),
        ("crossd", "o/pretrain-crossd-volumes/model.safetensors", "crossd+volumes"),
        ("acs", "o/pretrain-regular/model.safetensors", "acs"),
        ("random", None, "random"),
    ]
    cfg = EvaluateConfig(data="o/data/x 3d.npz", methods=methods, output_dir="o/evaluate", epochs=20, lr=1e-2)
    for name, value in {"folds": 3, "repeats": 1, "normalize": "imagenet", **overrides}.items():
        setattr(cfg, name, value)
    return cfg.record()


@pytest.mark.parametrize(
    "overrides", [{}, {"protocol": "paper", "drop_bn_stats": True, "size": 16}, {"slice_pool": "attention"}]
)
def test_the_printed_evaluate_command_repeats_the_same_evaluation(overrides):
    record = _record(**overrides)
    command = evaluate_command(record, "o/again")
    words = shlex.split(command)
    assert words[:2] == ["crossd", "evaluate"]
    parser = argparse.ArgumentParser()
    evaluate_command_module.add_arguments(parser)
    again = evaluate_command_module.config_from_args(parser.parse_args(words[2:])).record()
    assert again["output_dir"] == "o/again"
    ignored = (*IGNORED, "methods")
    assert {k: v for k, v in again.items() if k not in ignored} == {k: v for k, v in record.items() if k not in ignored}
    assert method_names(again["methods"]) == method_names(record["methods"])  # the same labels, inits, checkpoints
    assert "--normalize imagenet" in command and "--lr 0.01" in command  # the demo's, not evaluate's defaults


def test_balanced_accuracy_is_shown_only_where_it_differs():
    assert balanced_equals_accuracy([{"accuracy": 0.5, "balanced_accuracy": 0.5}])
    assert not balanced_equals_accuracy([{"accuracy": 0.5, "balanced_accuracy": 0.45}])
    assert not balanced_equals_accuracy([{"accuracy": 0.5}])  # nothing to compare


def test_the_study_table_is_read_from_the_study_file():
    test = {"pairs": 25, "mean_difference": -0.038, "p_value": 0.0206, "note": ""}
    study = {
        "path": "runs/study_r18/study.json",
        "args": {"arch": "resnet18", "protocol": "bn", "seeds": "[0, 1]", "folds": "5"},
        "rows": [
            {"method": "acs", "n": 25, "mean": 0.536, "std": 0.063, "seed_mean_std": 0.029},
            {"method": "rotate_hybrid", "n": 25, "mean": 0.497, "std": 0.048, "vs_acs": test},
        ],
    }
    text = "\n".join(_study_table(study))
    assert "| `acs` | 53.60 ± 6.30 | 25 | – |" in text
    assert "| `rotate_hybrid` | 49.70 ± 4.80 | 25 | -3.8 (p = 0.0206, significant) |" in text
    assert "runs/study_r18/study.json" in text


def test_without_a_study_file_the_report_shows_the_shipped_study_6_table_the_same_as_the_docs():
    table = shipped_study_table()
    docs = (Path(__file__).parents[2] / "docs" / "experiments.md").read_text()
    study6 = docs[docs.index("## Study 6") : docs.index("## Study 7")]
    assert table.strip() in study6  # the table the study's --markdown printed, not a copy that drifted
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    assert len(rows) == 10 and any(row.startswith("| `i3d`") for row in rows)
    section = "\n".join(_read_first_section({"comparisons": {"a": {"pairs": 3}}}))
    assert "cannot give p below 0.25" in section
    assert all(row in section for row in rows)


README_TO_STUDY6 = {
    "regular 2D + I3D inflation": "i3d",
    "regular 2D + ACS": "acs",
    "Cross-D, published `shift`": "shift",
    "Cross-D `rotate` (exact rotation, central plane)": "rotate",
    "**Cross-D `rotate` + hybrid 2D+3D pretraining** (120 volumes)": "rotate_hybrid",
    "fair baseline: regular 2D + the same volumes, ACS": "regular_hybrid_acs",
    "control: the same volumes alone": "volumes_only",
    "random 3D init": "random",
}


def test_study_6_and_the_readme_study_7_table_point_at_each_other_with_the_true_gap():
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    study7 = {}  # README row -> ResNet-18 bn mean (%)
    for line in readme.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells[0] in README_TO_STUDY6:
            study7[README_TO_STUDY6[cells[0]]] = float(cells[1].split(" ± ")[0])
    study6 = {}
    for line in shipped_study_table().splitlines():
        if line.startswith("| `"):
            cells = line.split(" | ")
            study6[cells[0].split("`")[1]] = 100 * float(cells[1].split(" ± ")[0])
    assert len(study7) == len(README_TO_STUDY6)
    gaps = {arm: abs(study7[arm] - study6[arm]) for arm in study7}
    assert f"{max(gaps.values()):.1f}" == "2.1" and study7["acs"] == 52.2 and study6["acs"] == pytest.approx(53.6)
    assert study7["shift"] == 46.4 and study6["shift"] == pytest.approx(48.5)
    for text in (STUDY7_NOTE, readme):
        assert "by up to 2.1 points (ACS 52.2 %" in " ".join(text.split())
    assert "(study 7, ResNet-18, `bn` column)" in STUDY7_NOTE and "report (study 6)" in readme
    section = "\n".join(_read_first_section({"comparisons": {"a": {"pairs": 3}}}))
    assert STUDY7_NOTE in section
    docs = (Path(__file__).parents[2] / "docs" / "experiments.md").read_text()
    assert "Single arms moved by up to 3.2 points between the two runs" in docs
