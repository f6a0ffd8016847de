"""Classification metrics shared by pretraining and evaluation (neither imports the other for them)."""

import warnings
from collections.abc import Sequence

import numpy as np
from sklearn.metrics import accuracy_score, balanced_accuracy_score, precision_recall_fscore_support

METRIC_NAMES = ("accuracy", "balanced_accuracy", "precision_macro", "recall_macro", "f1_macro")
TOP_K = 5


def reports_top5(num_classes: int) -> bool:
    """Whether top-5 accuracy says anything: only with more than :data:`TOP_K` classes (with 5 or fewer every
    label is among the top 5, so it is 100 % by construction). Pretraining logs and metrics leave ``acc5`` out
    otherwise."""
    return num_classes > TOP_K


def classification_metrics(y_true: Sequence[int] | np.ndarray, y_pred: Sequence[int] | np.ndarray) -> dict[str, float]:
    """Macro precision/recall/F1, balanced accuracy and accuracy of integer label predictions.

    Args:
        y_true: (N,) true class indices.
        y_pred: (N,) predicted class indices.

    Returns:
        ``{name: value}`` for every name in :data:`METRIC_NAMES`; undefined ratios count as 0.
    """
    y_true = np.asarray(y_true).reshape(-1)
    y_pred = np.asarray(y_pred).reshape(-1)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true has {y_true.size} labels but y_pred has {y_pred.size}")
    precision, recall, f1, _ = precision_recall_fscore_support(y_true, y_pred, average="macro", zero_division=0)
    with warnings.catch_warnings():  # a test fold may miss a class that the model predicts
        warnings.simplefilter("ignore", UserWarning)
        balanced = balanced_accuracy_score(y_true, y_pred)
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "balanced_accuracy": float(balanced),
        "precision_macro": float(precision),
        "recall_macro": float(recall),
        "f1_macro": float(f1),
    }
