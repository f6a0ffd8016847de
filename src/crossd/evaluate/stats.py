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
    the (repeat, fold) pairs both have (:func:`wilcoxon_pairs`).
    """
    ref = {(f.repeat, f.fold): getattr(f, metric) for f in reference}
    pairs = [(ref[(f.repeat, f.fold)], getattr(f, metric)) for f in other if (f.repeat, f.fold) in ref]
    return wilcoxon_pairs(pairs, unit="folds")


def wilcoxon_pairs(pairs: Sequence[tuple[float, float]], unit: str = "pairs") -> Comparison:
    """Two-sided Wilcoxon signed-rank test over ``(reference, other)`` value pairs (folds, seeds, ...):
    ``mean_difference`` is mean(other - reference); ``p_value`` is ``None`` with a note (naming ``unit``) when
    fewer than 2 pairs exist or every difference is zero."""
    from scipy.stats import wilcoxon

    if not pairs:
        return Comparison(0, note=f"no shared {unit}")
    diffs = np.array([b - a for a, b in pairs])
    out = Comparison(len(pairs), float(diffs.mean()))
    if len(pairs) < 2:
        out.note = f"needs at least 2 shared {unit}"
    elif np.all(diffs == 0):
        out.note = f"identical on every {unit.rstrip('s')}"
    else:
        p = float(wilcoxon(diffs).pvalue)
        out.p_value = None if math.isnan(p) else p
        out.note = "" if out.p_value is not None else "test undefined"
    return out
