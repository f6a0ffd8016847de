"""results.md table and the per-fold plot, from hand-made results."""

from dataclasses import replace

import pytest

from crossd.evaluate.stats import paired_wilcoxon
from crossd.report.plots import plot_fold_accuracies
from crossd.report.tables import design_note, mean_std, results_markdown, smallest_wilcoxon_p
from crossd.results import FoldResult, MethodSummary, Results


def _folds(accuracies):
    return [FoldResult(i // 5, i % 5, a, a, a, a, a, best_epoch=0) for i, a in enumerate(accuracies)]


def _results(drop_bn_stats=False, with_crossd=True):
    crossd = _folds([0.8, 0.82, 0.84, 0.86, 0.88, 0.8, 0.81, 0.83, 0.85, 0.87])
    acs = _folds([0.7, 0.72, 0.75, 0.76, 0.79, 0.71, 0.74, 0.73, 0.78, 0.77])
    methods = [
        MethodSummary(
            "crossd",
            "crossd",
            "/x/crossd.pt",
            {"checkpoint": "/x/crossd.pt", "spatial_dims": 3, "drop_bn_stats": drop_bn_stats},
            crossd,
        ),
        MethodSummary(
            "acs", "acs", "/x/reg.pt", {"checkpoint": "/x/reg.pt", "spatial_dims": 3, "source_conv": "regular"}, acs
        ),
    ][0 if with_crossd else 1 :]
    comparisons = {"acs": paired_wilcoxon(crossd, acs)} if with_crossd else {}
    args = {
        "data": "/d/organ.npz",
        "protocol": "paper",
        "folds": 5,
        "repeats": 2,
        "epochs": 15,
        "batch_size": 8,
        "lr": 1e-3,
        "normalize": "radimagenet",
        "seed": 0,
        "protocol_constants": {
            "select": "val_loss",
            "scaling": "global",
            "gamma": 0.1,
            "milestones": [7, 11],
            "bn_epoch": 10,
        },
    }
    data = {"samples": 100, "num_classes": 3, "spatial_dims": 3, "shape": [1, 8, 8, 8]}
    return Results("classification", args, data, methods, "crossd" if with_crossd else None, comparisons)


def test_table_in_paper_style_with_paired_test():
    text = results_markdown(_results())
    crossd_row = next(line for line in text.splitlines() if line.startswith("| crossd |"))
    assert (
        crossd_row.split(" | ")[1] == mean_std(0.836, 0.02728) == "83.60 ± 2.73"
    )  # population std: sqrt(0.00744 / 10)
    acs_row = next(line for line in text.splitlines() if line.startswith("| acs |"))
    # every fold of acs is below crossd: the exact two-sided p of 10 same-sign pairs is 2 / 2**10
    assert f"-9.10 (p = {2 / 2**10:.3g}, significant, n=10)" in acs_row
    assert "Protocol **paper**" in text and "val loss" in text and "global min-max" in text
    assert "all BatchNorm statistics and affine parameters kept" in text
    assert "from epoch 10" in text and "not reached" not in text
    assert "reset" in results_markdown(_results(drop_bn_stats=True))
    assert "no crossd method" in results_markdown(_results(with_crossd=False))


def test_a_shortened_paper_run_says_which_phases_it_skipped():
    results = _results()
    results.args["epochs"] = 3
    assert "With 3 epochs the BatchNorm phase was not reached" in results_markdown(results)


def test_summaries_use_population_std():
    s = MethodSummary("m", "random", None, folds=_folds([0.5, 1.0])).summary()
    assert s["accuracy_mean"] == pytest.approx(0.75) and s["accuracy_std"] == pytest.approx(0.25)


def test_wilcoxon_edge_cases():
    same = _folds([0.5, 0.6, 0.7])
    assert paired_wilcoxon(same, same).note == "identical on every fold"
    assert paired_wilcoxon(same, same[:1]).p_value is None
    assert paired_wilcoxon(same, []).note == "no shared folds"


def test_fold_plot_is_a_png(tmp_path):
    path = plot_fold_accuracies(_results(), tmp_path / "plot.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000


@pytest.mark.parametrize("pairs", [2, 3, 4, 5, 6, 7])
def test_smallest_wilcoxon_p_is_what_scipy_gives_when_every_fold_agrees(pairs):
    from scipy.stats import wilcoxon

    one_sign = [0.01 * (i + 1) for i in range(pairs)]
    assert smallest_wilcoxon_p(pairs) == pytest.approx(wilcoxon(one_sign).pvalue, rel=1e-12)


def test_the_table_warns_when_the_design_cannot_reach_significance():
    assert "significant" not in design_note(6) and design_note(6) == ""
    note = design_note(3)
    assert "cannot give p below 0.25" in note and "no difference between methods here can be" in note
    assert "at least 6 paired folds" in note
    results = _results()
    for m in results.methods:
        m.folds = m.folds[:3]
    results.comparisons = {"acs": paired_wilcoxon(results.methods[0].folds, results.methods[1].folds)}
    text = results_markdown(results)
    assert note in text and "p = 0.25, not significant" in text
    assert "cannot give p below" not in results_markdown(_results())  # 10 pairs can
    assert "p = 0.00195, significant" in results_markdown(_results())


def test_collapsed_and_under_chance_runs_are_flagged():
    results = _results()
    assert "⚠" not in results_markdown(results) and "Check these runs" not in results_markdown(results)
    acs = results.methods[1]
    acs.folds = [
        replace(f, predicted_classes=1 if i < 2 else None, balanced_accuracy=0.30) for i, f in enumerate(acs.folds)
    ]
    text = results_markdown(results)
    rows = {line.split(" | ")[0]: line for line in text.splitlines() if line.startswith("| ")}
    assert " | 10 ⚠ | " in rows["| acs"] and " | 10 | " in rows["| crossd"]  # the flagged method's folds cell
    assert (
        "- ⚠ **acs**: 2 of 10 folds predicted one class for every test sample; mean balanced accuracy 30.00 % "
        "is under chance (33.33 % for 3 classes)." in text
    )


def test_official_split_is_stated():
    results = _results()
    assert "official test split" not in results_markdown(results)
    results.args["split"] = "official"
    results.data["test_samples"] = 20
    assert "Test set: the file's official test split (20 samples) in every job" in results_markdown(results)


def test_format_comparison_one_cell_for_every_table():
    from crossd.report.tables import format_comparison
    from crossd.results import Comparison

    test = Comparison(pairs=10, mean_difference=-0.091, p_value=2 / 2**10)
    assert format_comparison(test) == "-9.10 (p = 0.00195, significant, n=10)"
    assert format_comparison(test, digits=1, pairs=False) == "-9.1 (p = 0.00195, significant)"
    assert format_comparison(Comparison(3, 0.026, 0.25)) == "+2.60 (p = 0.25, not significant, n=3)"
    same = Comparison(3, 0.0, None, "identical on every fold")
    assert format_comparison(same) == "+0.00 (no test: identical on every fold, n=3)"
    assert format_comparison(Comparison(0, None, None, "no shared folds")) == "– (no shared folds)"
    assert format_comparison(None) == "–"
