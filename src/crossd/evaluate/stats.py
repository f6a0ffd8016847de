"""Paired tests between methods over the folds they share (summaries over folds: :mod:`crossd.results`)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from crossd.results import Comparison, FoldResult, SegmentationFold


def paired_wilcoxon(
    reference: Sequence[FoldResult | SegmentationFold],
    other: Sequence[FoldResult | SegmentationFold],
    metric: str = "accuracy",
) -> Comparison:
    """Two-sided Wilcoxon signed-rank test of ``other`` against ``reference`` on ``metric`` (a fold attribute) over
    the (repeat, fold) pairs both have.

    ``mean_difference`` is mean(other - reference); ``p_value`` is ``None`` with a note when fewer than 2 pairs
    exist or every difference is zero.
    """
    from scipy.stats import wilcoxon

    ref = {(f.repeat, f.fold): getattr(f, metric) for f in reference}
    pairs = [(ref[(f.repeat, f.fold)], getattr(f, metric)) for f in other if (f.repeat, f.fold) in ref]
    if not pairs:
        return Comparison(0, note="no shared folds")
    diffs = np.array([b - a for a, b in pairs])
    out = Comparison(len(pairs), float(diffs.mean()))
    if len(pairs) < 2:
        out.note = "needs at least 2 shared folds"
    elif np.all(diffs == 0):
        out.note = "identical on every fold"
    else:
        p = float(wilcoxon(diffs).pvalue)
        out.p_value = None if math.isnan(p) else p
        out.note = "" if out.p_value is not None else "test undefined"
    return out
