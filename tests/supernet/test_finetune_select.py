"""Fine-tuning keeps the state with the best dev figure of the job's metric (accuracy or macro-F1).

The tiny teacher (fine-tuned for one epoch) is fine-tuned again as its own student at a high learning
rate, so the dev figures move between evaluations; dev is imbalanced (3 positives in 23), where
accuracy and macro-F1 disagree.
"""

from __future__ import annotations

import copy

import pytest

from slimformer.supernet.finetune import FinetuneSettings, dev_score, finetune_subnet

MAX_LENGTH = 32


@pytest.mark.parametrize("select", ["accuracy", "macro_f1"])
def test_the_best_state_is_the_one_with_the_best_dev_metric(teacher, tiny_task, select):
    held_out = tiny_task.dev + tiny_task.test
    dev = [e for e in held_out if e.label == 0] + [e for e in held_out if e.label == 1][:3]
    student = copy.deepcopy(teacher.model)
    settings = FinetuneSettings(epochs=2, lr=3e-3, batch_size=16, max_length=MAX_LENGTH, patience=0,
                                evals_per_epoch=5, kd_weight=0.0, select=select)
    result = finetune_subnet(student, teacher.model, teacher.tokenizer, tiny_task.train, dev, dev[:2], settings)
    assert len(result.dev_history) >= 5
    best = max(score for _, score in result.dev_history)
    assert dev_score(student, teacher.tokenizer, dev, select, MAX_LENGTH) == pytest.approx(best)


def test_an_unknown_selection_metric_is_refused(teacher, tiny_task):
    with pytest.raises(ValueError, match="select"):
        dev_score(teacher.model, teacher.tokenizer, tiny_task.dev, "recall", MAX_LENGTH)
