"""Macro-F1, per-class precision/recall and the job's default metric, against figures worked out by hand."""

from __future__ import annotations

import pytest

from slimformer.contracts.spec import JobSpec
from slimformer.metrics import (
    classification_metrics,
    metric_value,
    paired_difference_interval,
    resolve_metric,
    smallest_class_share,
    split_metrics,
)


def test_two_classes_by_hand():
    # gold:      0 0 0 0 1 1 1 1 1 1
    # predicted: 0 0 1 1 1 1 1 1 1 0
    # class 0: tp 2, predicted 3 -> precision 2/3, support 4 -> recall 1/2, F1 = 2*(2/3)(1/2)/(7/6) = 4/7
    # class 1: tp 5, predicted 7 -> precision 5/7, support 6 -> recall 5/6, F1 = 2*(5/7)(5/6)/(65/42) = 10/13
    gold = [0, 0, 0, 0, 1, 1, 1, 1, 1, 1]
    predicted = [0, 0, 1, 1, 1, 1, 1, 1, 1, 0]
    m = classification_metrics(predicted, gold, 2)
    assert m["accuracy"] == pytest.approx(0.7)
    assert m["precision"] == pytest.approx([2 / 3, 5 / 7])
    assert m["recall"] == pytest.approx([1 / 2, 5 / 6])
    assert m["f1"] == pytest.approx([4 / 7, 10 / 13])
    assert m["macro_f1"] == pytest.approx((4 / 7 + 10 / 13) / 2)
    assert m["support"] == [4, 6]


def test_a_class_never_predicted_pulls_macro_f1_down_where_accuracy_looks_fine():
    # 9 negatives and 1 positive, always "negative": accuracy 0.9, but the positive class scores 0.
    m = classification_metrics([0] * 10, [0] * 9 + [1], 2)
    assert m["accuracy"] == pytest.approx(0.9)
    assert m["precision"] == [pytest.approx(0.9), 0.0] and m["recall"] == [1.0, 0.0]
    assert m["macro_f1"] == pytest.approx((2 * 0.9 / 1.9) / 2)  # F1 of class 0 = 18/19, of class 1 = 0


def test_three_classes_and_a_class_absent_from_both():
    # class 0: tp 1, predicted 2, support 1 -> P 1/2, R 1, F1 2/3; class 1: tp 1, predicted 1, support 2
    # -> P 1, R 1/2, F1 2/3; class 2: never seen nor predicted -> 0; macro over 3 classes = 4/9.
    m = classification_metrics([0, 0, 1], [0, 1, 1], 3)
    assert m["f1"] == pytest.approx([2 / 3, 2 / 3, 0.0]) and m["macro_f1"] == pytest.approx(4 / 9)


def test_split_metrics_name_the_fields_and_the_classes():
    doc = split_metrics("dev", [0, 1, 1], [0, 1, 0], ["neg", "pos"])
    assert doc["dev_accuracy"] == pytest.approx(2 / 3)
    assert doc["dev_per_class"]["neg"] == pytest.approx({"precision": 1.0, "recall": 0.5, "f1": 2 / 3, "support": 2})
    assert doc["dev_per_class"]["pos"]["precision"] == pytest.approx(0.5)
    assert metric_value(doc, "macro_f1") == doc["dev_macro_f1"] and metric_value(doc, "accuracy") == doc["dev_accuracy"]


def test_mismatched_or_empty_inputs_are_refused():
    with pytest.raises(ValueError):
        classification_metrics([0, 1], [0], 2)
    with pytest.raises(ValueError):
        classification_metrics([], [], 2)


def test_auto_picks_macro_f1_when_the_smallest_class_is_under_a_fifth():
    imbalanced = [1] * 13 + [0] * 87  # 13% positives
    balanced = [0, 1] * 50
    assert smallest_class_share(imbalanced, 2) == pytest.approx(0.13)
    assert resolve_metric(None, imbalanced, 2) == "macro_f1" == resolve_metric("auto", imbalanced, 2)
    assert resolve_metric(None, balanced, 2) == "accuracy"
    assert resolve_metric(None, [0] * 20 + [1] * 80, 2) == "accuracy"  # exactly 20%: not under it
    assert resolve_metric(None, [0, 1] * 10, 3) == "macro_f1"  # a class with no training rows at all
    # The spec's choice wins either way.
    assert resolve_metric("accuracy", imbalanced, 2) == "accuracy"
    assert resolve_metric("macro_f1", balanced, 2) == "macro_f1"
    with pytest.raises(ValueError):
        resolve_metric("f2", balanced, 2)


def test_the_spec_takes_a_metric_and_refuses_others():
    assert JobSpec().metric is None
    assert JobSpec(metric="macro_f1").metric == "macro_f1"
    with pytest.raises(ValueError):
        JobSpec(metric="recall")


def test_paired_interval_holds_the_difference_and_narrows_where_the_models_agree():
    # 1,000 examples; a is right on 800, b on the same 800 but 20: a is 2 points better.
    a = [True] * 800 + [False] * 200
    b = [True] * 780 + [False] * 20 + [False] * 200
    lo, hi = paired_difference_interval(a, b)
    assert lo < 0.02 < hi
    assert lo > 0  # 20 disagreements, all a's: clearly better
    # Same accuracies, but the two disagree on 300 examples: the 2-point margin is within luck.
    c = [True] * 650 + [False] * 150 + [True] * 150 + [False] * 50
    d = [True] * 650 + [True] * 130 + [False] * 20 + [False] * 150 + [False] * 50
    assert sum(c) - sum(d) == 20
    lo2, hi2 = paired_difference_interval(c, d)
    assert lo2 < 0 < hi2
    assert hi2 - lo2 > 3 * (hi - lo)


def test_paired_interval_refuses_vectors_of_other_lengths():
    with pytest.raises(ValueError, match="equal"):
        paired_difference_interval([True, False], [True])
