"""A model's task metrics on labelled examples: accuracy, macro-F1 and per-class precision/recall.

Works for any model `predict_logits` can run (a student, the task teacher); the figures come from
`slimformer.metrics.split_metrics`, so a finalist, the teacher and the baseline are scored alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn

from slimformer.data.types import Example
from slimformer.metrics import split_metrics
from slimformer.supernet.task_score import predict_logits


def model_metrics(model: nn.Module, tokenizer: Any, splits: dict[str, Sequence[Example]], labels: Sequence[str],
                  max_length: int, batch_size: int = 64) -> dict[str, Any]:
    """`<split>_accuracy`, `<split>_macro_f1` and `<split>_per_class` for each non-empty split.

    Args:
        model: the classifier (eval mode during the call, its mode after).
        tokenizer: its tokenizer.
        splits: {"dev": examples, "test": examples}.
        labels: the task's label names, in index order.
        max_length: truncation length in tokens.
    """
    out: dict[str, Any] = {}
    for split, examples in splits.items():
        if examples:
            logits = predict_logits(model, tokenizer, [e.text for e in examples], max_length, batch_size)
            out.update(split_metrics(split, logits.argmax(-1).tolist(), [e.label for e in examples], labels))
    return out
