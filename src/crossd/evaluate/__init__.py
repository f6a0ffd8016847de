"""Transfer evaluation: protocols, folds, metrics, statistics, on one k-fold engine (:mod:`crossd.evaluate.kfold`).

``evaluate(EvaluateConfig(data=..., methods=[("crossd", "ckpt.pt"), ("acs", "regular.pt")], output_dir=...))``
runs every method on shared cross-validation folds, writes ``results.json``, ``results.md`` and a plot, and returns
the typed :class:`~crossd.results.Results` (``load_results(path)`` reads a ``results.json`` back).
``torchrun --nproc_per_node=N -m crossd evaluate <flags>`` spreads the jobs over N processes.
"""

from crossd.evaluate.classification import evaluate, make_splits
from crossd.evaluate.config import PROTOCOLS, BnConstants, EvaluateConfig, PaperConstants
from crossd.metrics import METRIC_NAMES, classification_metrics
from crossd.results import Comparison, FoldResult, MethodSummary, Results, load_results

__all__ = [
    "METRIC_NAMES",
    "PROTOCOLS",
    "BnConstants",
    "Comparison",
    "EvaluateConfig",
    "FoldResult",
    "MethodSummary",
    "PaperConstants",
    "Results",
    "classification_metrics",
    "evaluate",
    "load_results",
    "make_splits",
]
