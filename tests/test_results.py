"""Typed results: the JSON round trip of every type, on hand-made records and on an archived ``results.json``."""

import json
from pathlib import Path

import pytest

from crossd.errors import DataError
from crossd.results import (
    Comparison,
    FoldResult,
    MethodSummary,
    Results,
    SegmentationFold,
    SegmentationSummary,
    load_results,
)

ARCHIVE = Path(__file__).parents[1] / "benchmarks" / "results" / "study7_r18" / "seed0" / "eval" / "results.json"


def _fold(repeat, fold, accuracy, **extra):
    scores = dict.fromkeys(("balanced_accuracy", "precision_macro", "recall_macro", "f1_macro"), accuracy / 2)
    return {"repeat": repeat, "fold": fold, "accuracy": accuracy, **scores, **extra}


def test_an_archived_results_json_loads_and_writes_back_unchanged():
    record = json.loads(ARCHIVE.read_text())
    results = load_results(ARCHIVE)
    assert results.task == "classification" and results.reference == record["reference"]
    assert len(results.methods) == len(record["results"]) and all(len(m.folds) == 5 for m in results.methods)
    first = results.methods[0]
    assert isinstance(first, MethodSummary) and isinstance(first.folds[0], FoldResult)
    assert first.folds[0].predicted_classes is None  # written before it was recorded
    assert first.mean("accuracy") == record["results"][0]["accuracy_mean"]
    assert results.to_json() == record  # summaries recomputed from the folds give the stored numbers, bit for bit


def test_summary_is_the_mean_and_population_std_of_the_folds():
    method = MethodSummary(
        "acs", "acs", None, {}, [FoldResult.from_json(_fold(0, i, a)) for i, a in enumerate([0.5, 1.0])]
    )
    assert method.mean("accuracy") == 0.75 and method.std("accuracy") == 0.25
    assert method.summary()["f1_macro_mean"] == 0.375
    empty = MethodSummary("acs", "acs", None)
    assert empty.mean("accuracy") is None
    assert "accuracy_mean" not in empty.to_json()  # a method without folds has no summary keys, as before


def test_fold_round_trip_keeps_optional_fields_out_when_absent():
    full = _fold(1, 2, 0.8, predicted_classes=3, best_epoch=4, n_train=10, n_val=3, n_test=5, history={"lr": [0.1]})
    assert FoldResult.from_json(full).to_json() == full
    assert list(FoldResult.from_json(full).to_json()) == list(full)  # the key order of results.json
    short = _fold(0, 0, 0.5)
    assert FoldResult.from_json(short).to_json() == short


def test_segmentation_round_trip_and_per_class_summary():
    folds = [
        {"repeat": 0, "fold": 0, "dice_mean": 0.6, "dice": [0.4, 0.8], "best_epoch": 1, "history": {"val_dice": [0.5]}},
        {
            "repeat": 0,
            "fold": 1,
            "dice_mean": 0.7,
            "dice": [None, 0.7],
            "best_epoch": 0,
            "history": {"val_dice": [0.7]},
        },
    ]
    method = SegmentationSummary.from_json(
        {"method": "acs", "init": "acs", "checkpoint": None, "folds": folds}, ["grey", "white"]
    )
    assert isinstance(method.folds[1], SegmentationFold) and method.folds[1].dice == [None, 0.7]
    summary = method.summary()
    assert summary["dice_grey_mean"] == 0.4 and summary["dice_grey_std"] == 0.0  # the absent class is skipped
    assert summary["dice_white_mean"] == pytest.approx(0.75) and summary["dice_white_std"] == pytest.approx(0.05)
    assert method.mean() == pytest.approx(0.65) and method.std("dice_white") == pytest.approx(0.05)
    record = {
        "task": "segmentation",
        "args": {"protocol": "linear"},
        "data": {"samples": 4, "classes": ["background", "grey", "white"]},
        "results": [{"method": "acs", "init": "acs", "checkpoint": None, "loading": {}, **summary, "folds": folds}],
        "reference": None,
        "comparisons": {},
        "complete": True,
        "not_reported": {},
    }
    results = Results.from_json(record)
    assert results.classes == ["grey", "white"] and results.method("acs").classes == ["grey", "white"]
    assert results.to_json() == json.loads(json.dumps(record))


def test_comparison_round_trip_and_older_files():
    record = {"pairs": 5, "mean_difference": -0.02, "p_value": 0.875, "note": ""}
    assert Comparison.from_json(record).to_json() == record
    old = Results.from_json({"args": {}, "data": {}, "results": [{"method": "crossd", "init": "crossd", "folds": []}]})
    assert old.task == "classification" and old.reference == "crossd" and old.complete


def test_a_file_that_is_not_results_is_one_line(tmp_path):
    (tmp_path / "x.json").write_text('{"task": "classification"}')
    with pytest.raises(DataError, match="not a results.json"):
        load_results(tmp_path / "x.json")
    (tmp_path / "y.json").write_text('{"task": "dance", "results": []}')
    with pytest.raises(DataError, match="unknown task 'dance'"):
        load_results(tmp_path / "y.json")
    with pytest.raises(KeyError, match="methods: \\['crossd'\\]"):
        Results.from_json({"results": [{"method": "crossd", "init": "crossd"}]}).method("acs")
