"""Summaries over folds (mean ± population std, as the paper reports) and paired tests between methods."""

from __future__ import annotations

import math

import numpy as np

from crossd.metrics import METRIC_NAMES


def summarize(folds: list[dict]) -> dict[str, float | None]:
    """``{metric}_mean`` and ``{metric}_std`` (``ddof=0``) for every metric over the fold records."""
    out: dict[str, float | None] = {}
    for name in METRIC_NAMES:
        values = [f[name] for f in folds if name in f]
        out[f"{name}_mean"] = float(np.mean(values)) if values else None
        out[f"{name}_std"] = float(np.std(values)) if values else None
    return out


def paired_wilcoxon(reference: list[dict], other: list[dict], metric: str = "accuracy") -> dict:
    """Wilcoxon signed-rank test of ``other`` against ``reference`` over the (repeat, fold) pairs both have.

    Returns ``{"pairs": n, "mean_difference": mean(other - reference), "p_value": p or None, "note": ...}``;
    ``p_value`` is ``None`` with a note when fewer than 2 pairs exist or every difference is zero.
    """
    from scipy.stats import wilcoxon

    ref = {(f["repeat"], f["fold"]): f[metric] for f in reference}
    pairs = [(ref[(f["repeat"], f["fold"])], f[metric]) for f in other if (f["repeat"], f["fold"]) in ref]
    out = {"pairs": len(pairs), "mean_difference": None, "p_value": None, "note": ""}
    if not pairs:
        out["note"] = "no shared folds"
        return out
    diffs = np.array([b - a for a, b in pairs])
    out["mean_difference"] = float(diffs.mean())
    if len(pairs) < 2:
        out["note"] = "needs at least 2 shared folds"
    elif np.all(diffs == 0):
        out["note"] = "identical on every fold"
    else:
        p = float(wilcoxon(diffs).pvalue)
        out["p_value"] = None if math.isnan(p) else p
        out["note"] = "" if out["p_value"] is not None else "test undefined"
    return out
