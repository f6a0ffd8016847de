"""classification_metrics against values worked out by hand; when top-5 accuracy is reported."""

import numpy as np
import pytest

from crossd.metrics import METRIC_NAMES, classification_metrics, reports_top5
from crossd.train.engine import Predictions


def test_metrics_by_hand():
    # class 0: precision 1, recall 1; class 1: precision 1, recall 1/2; class 2: precision 1/2, recall 1
    m = classification_metrics([0, 1, 1, 2], [0, 1, 2, 2])
    assert set(m) == set(METRIC_NAMES)
    assert m["accuracy"] == pytest.approx(3 / 4)
    assert m["precision_macro"] == pytest.approx((1 + 1 + 0.5) / 3)
    assert m["recall_macro"] == pytest.approx((1 + 0.5 + 1) / 3)
    assert m["balanced_accuracy"] == pytest.approx((1 + 0.5 + 1) / 3)
    assert m["f1_macro"] == pytest.approx((1 + 2 / 3 + 2 / 3) / 3)


def test_undefined_ratios_are_zero_without_warnings(recwarn):
    m = classification_metrics([0, 0], [1, 1])
    assert m == {name: 0.0 for name in METRIC_NAMES}
    assert not recwarn.list


def test_length_mismatch_is_an_error():
    with pytest.raises(ValueError, match="3 labels but y_pred has 2"):
        classification_metrics([0, 1, 0], [0, 1])


def test_top5_is_reported_only_above_five_classes():
    assert [reports_top5(c) for c in (2, 4, 5, 6, 1000)] == [False, False, False, True, True]
    targets, topk = np.array([0, 1, 2]), np.array([[5, 4, 3, 2, 0], [1, 0, 2, 3, 4], [0, 1, 3, 4, 5]])
    assert Predictions(targets, topk, np.zeros(3), num_classes=6).acc5 == pytest.approx(200 / 3)
    assert Predictions(targets, topk[:, :4], np.zeros(3), num_classes=4).acc5 is None
