"""Figures of evaluation results: per-fold accuracy of every method, in percent (matplotlib, Agg backend)."""

from __future__ import annotations

from pathlib import Path

from crossd.io import atomic_write
from crossd.results import Results


def plot_fold_accuracies(results: Results, path: str | Path, metric: str = "accuracy") -> Path:
    """Save a PNG with one column per method: each fold's ``metric`` in percent as a dot (folds of the same repeat share
    a colour, the same fold is joined across methods by a faint line) and the mean ± std as a bar.

    Args:
        results: a classification evaluation's results.
        path: where to write the ``.png``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = results.methods
    fig, ax = plt.subplots(figsize=(2.6 + 1.3 * max(len(methods), 1), 3.6))
    keys = sorted({(f.repeat, f.fold) for m in methods for f in m.folds})
    for key in keys:
        xs, ys = [], []
        for x, m in enumerate(methods):
            value = next((getattr(f, metric) for f in m.folds if (f.repeat, f.fold) == key), None)
            if value is not None:
                xs.append(x)
                ys.append(100 * value)
        ax.plot(xs, ys, color="0.8", lw=0.7, zorder=1)
        label = f"repeat {key[0]}" if key[1] == min(f for r, f in keys if r == key[0]) else None
        ax.scatter(xs, ys, s=16, color=f"C{key[0] % 10}", zorder=2, label=label)
    for x, m in enumerate(methods):
        mean, std = m.mean(metric), m.std(metric)
        if mean is not None:
            label = "mean ± std" if x == 0 else None
            ax.errorbar(
                x + 0.18, 100 * mean, yerr=100 * std, fmt="s", color="k", capsize=3, ms=4, zorder=3, label=label
            )
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    ax.set_xticks(range(len(methods)), [m.method for m in methods])
    ax.set_xlim(-0.5, len(methods) - 0.3)
    ax.set_ylabel(f"{metric.replace('_', ' ')} (%)")
    ax.set_title(f"{results.args['protocol']} protocol: per-fold {metric.replace('_', ' ')}", fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()

    def write(tmp: Path) -> None:
        fig.savefig(tmp, format="png", dpi=120)

    try:
        return atomic_write(path, write)
    finally:
        plt.close(fig)
