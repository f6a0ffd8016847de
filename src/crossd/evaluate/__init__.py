"""Transfer evaluation: protocols, folds, metrics, statistics."""

from crossd.evaluate.metrics import METRIC_NAMES, classification_metrics

__all__ = ["METRIC_NAMES", "classification_metrics"]
