"""Classification metrics on predictions, and which metric a job optimises.

Accuracy hides a minority class: on a set with 10% positives, a model that never says "positive"
scores 0.90. Macro-F1 (the unweighted mean of each class's F1) does not, so a job's default
metric is macro-F1 when the smallest class is under `IMBALANCE_SHARE` of the training data, and
accuracy otherwise; the spec's `metric` can name either. Torch-free (the API and the CLI import
it): predictions come in as label indices.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

METRICS = ("accuracy", "macro_f1")
# Below this share of the training rows, the smallest class makes macro-F1 the default metric.
IMBALANCE_SHARE = 0.2
LABELS = {"accuracy": "accuracy", "macro_f1": "macro-F1"}


def classification_metrics(predicted: Sequence[int], gold: Sequence[int], num_labels: int) -> dict[str, Any]:
    """Accuracy, macro-F1, and per-class precision, recall, F1 and support.

    A class never predicted has precision 0, one absent from `gold` has recall 0 (scikit-learn's
    `zero_division=0`), and both count in the macro mean: a class the model ignores pulls it down.

    Args:
        predicted: predicted label indices.
        gold: true label indices, as many.
        num_labels: the task's number of classes (classes absent from both still count).

    Returns:
        {"accuracy", "macro_f1", "precision": [per class], "recall": [...], "f1": [...], "support": [...]}.
    """
    if len(predicted) != len(gold):
        raise ValueError(f"{len(predicted)} predictions for {len(gold)} labels")
    if not gold:
        raise ValueError("no examples to score")
    tp = [0] * num_labels
    predicted_count = [0] * num_labels
    support = [0] * num_labels
    for p, g in zip(predicted, gold, strict=True):
        predicted_count[int(p)] += 1
        support[int(g)] += 1
        tp[int(g)] += int(p) == int(g)
    precision = [tp[c] / predicted_count[c] if predicted_count[c] else 0.0 for c in range(num_labels)]
    recall = [tp[c] / support[c] if support[c] else 0.0 for c in range(num_labels)]
    f1 = [2 * p * r / (p + r) if p + r else 0.0 for p, r in zip(precision, recall, strict=True)]
    return {"accuracy": sum(tp) / len(gold), "macro_f1": sum(f1) / num_labels, "precision": precision,
            "recall": recall, "f1": f1, "support": support}


def split_metrics(split: str, predicted: Sequence[int], gold: Sequence[int], labels: Sequence[str]) -> dict[str, Any]:
    """`classification_metrics` as flat record fields of one split: `<split>_accuracy`,
    `<split>_macro_f1` and `<split>_per_class` ({label name: precision, recall, f1, support})."""
    m = classification_metrics(predicted, gold, len(labels))
    per_class = {name: {"precision": m["precision"][c], "recall": m["recall"][c], "f1": m["f1"][c],
                        "support": m["support"][c]} for c, name in enumerate(labels)}
    return {f"{split}_accuracy": m["accuracy"], f"{split}_macro_f1": m["macro_f1"], f"{split}_per_class": per_class}


def smallest_class_share(train_labels: Sequence[int], num_labels: int) -> float:
    """The share of the training rows in the rarest class (0 when a class has none)."""
    counts = [0] * num_labels
    for label in train_labels:
        counts[int(label)] += 1
    return min(counts) / max(1, len(train_labels))


def resolve_metric(requested: str | None, train_labels: Sequence[int], num_labels: int) -> str:
    """The metric a job optimises: the spec's, or for None/"auto" macro-F1 when the smallest class
    is under `IMBALANCE_SHARE` of the training rows, else accuracy."""
    if requested in METRICS:
        return requested
    if requested not in (None, "auto"):
        raise ValueError(f"metric: {requested!r} is not one of {[*METRICS, 'auto']}")
    return "macro_f1" if smallest_class_share(train_labels, num_labels) < IMBALANCE_SHARE else "accuracy"


def metric_key(metric: str | None, split: str = "dev") -> str:
    """The record field of `metric` on `split` ("dev_accuracy", "test_macro_f1")."""
    return f"{split}_{metric or 'accuracy'}"


def metric_value(record: dict[str, Any], metric: str | None, split: str = "dev") -> float | None:
    """A record's figure for `metric` on `split`, its accuracy when it has no such figure."""
    value = record.get(metric_key(metric, split))
    return record.get(metric_key("accuracy", split)) if value is None else value


def paired_difference_interval(a_correct: Sequence[bool], b_correct: Sequence[bool], samples: int = 4000,
                               seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of accuracy(a) - accuracy(b) with both judged on the same examples.

    Examples are resampled with replacement and both models keep their own answer to each, so what
    the two get right or wrong together cancels: the interval is much tighter than two separate
    accuracy intervals would allow, and only it says whether a one-point margin is more than the
    luck of which examples the split holds.
    """
    import numpy as np

    a, b = np.asarray(a_correct, dtype=float), np.asarray(b_correct, dtype=float)
    if a.shape != b.shape or a.ndim != 1 or not len(a):
        raise ValueError(f"need two equal, non-empty per-example vectors, got {a.shape} and {b.shape}")
    diff = a - b
    rows = np.random.default_rng(seed).integers(0, len(diff), size=(samples, len(diff)))
    means = diff[rows].mean(axis=1)
    tail = (1 - level) / 2
    return float(np.quantile(means, tail)), float(np.quantile(means, 1 - tail))
