"""Transfer evaluation: protocols, folds, metrics, statistics.

``evaluate(EvaluateConfig(data=..., methods=[("crossd", "ckpt.pt"), ("acs", "regular.pt")], output_dir=...))``
runs every method on shared cross-validation folds and writes ``results.json``, ``results.md`` and a plot.
"""

from crossd.evaluate.config import PROTOCOLS, BnConstants, EvaluateConfig, PaperConstants
from crossd.evaluate.metrics import METRIC_NAMES, classification_metrics
from crossd.evaluate.runner import evaluate, make_splits

__all__ = [
    "METRIC_NAMES",
    "PROTOCOLS",
    "BnConstants",
    "EvaluateConfig",
    "PaperConstants",
    "classification_metrics",
    "evaluate",
    "make_splits",
]
