"""Which of a given classifier's outputs is which of the task's labels.

A teacher folder with a sequence-classification head is used as given: its logits are the
distillation target, so its outputs must be the task's labels. They are matched by name
(id2label in config.json, case-insensitively), and a head whose names are the generic LABEL_0,
LABEL_1, ... that transformers writes when nobody named them is matched by index. Anything else is
refused, naming both label lists. Standard library only: the service checks a submission with it,
the worker again when it loads the teacher.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

__all__ = ["TeacherLabelsMismatch", "head_labels", "is_given_classifier", "label_order"]

_GENERIC = re.compile(r"LABEL_(\d+)")
HEAD_MARKER = "slimformer_head"  # slimformer's own mean-pooling head (a fine-tune cache entry)


class TeacherLabelsMismatch(ValueError):
    """The teacher's classification head does not predict the task's labels."""


def is_given_classifier(config: Any) -> bool:
    """Whether a parsed config.json is a Hugging Face sequence classifier to be used as given.

    slimformer's own fine-tuned entries (marked `slimformer_head`) are not: they load as they were saved.
    """
    if not isinstance(config, dict) or config.get(HEAD_MARKER):
        return False
    architectures = config.get("architectures") or []
    return any(isinstance(a, str) and a.endswith("ForSequenceClassification") for a in architectures)


def head_labels(config: dict[str, Any]) -> list[str]:
    """The head's label names in output order (LABEL_i for outputs config.json does not name)."""
    id2label = config.get("id2label") or {}
    n = config.get("num_labels") or (len(id2label) if id2label else 2)
    names = {int(k): str(v) for k, v in id2label.items()} if isinstance(id2label, dict) else {}
    return [names.get(i, f"LABEL_{i}") for i in range(int(n))]


def label_order(config: dict[str, Any], task_labels: Sequence[str]) -> list[int]:
    """For each task label in order, the index of the teacher output that predicts it.

    Args:
        config: the teacher's parsed config.json.
        task_labels: the task's label names in class-id order.

    Returns:
        `order` with teacher_logits[:, order] in the task's class order.

    Raises:
        TeacherLabelsMismatch: a different number of labels, or names that are neither the task's
            labels nor the generic LABEL_i.
    """
    names, wanted = head_labels(config), [str(t) for t in task_labels]
    what = f"the teacher's classification head predicts {names}, but the task's labels are {wanted}"
    if len(names) != len(wanted):
        raise TeacherLabelsMismatch(f"{what}: {len(names)} labels against {len(wanted)}")
    if all((m := _GENERIC.fullmatch(n)) and int(m.group(1)) == i for i, n in enumerate(names)):
        return list(range(len(names)))
    index = {n.lower(): i for i, n in enumerate(names)}
    if len(index) == len(names) and all(w.lower() in index for w in wanted):
        return [index[w.lower()] for w in wanted]
    raise TeacherLabelsMismatch(
        f"{what}: name the head's labels like the task's (id2label in config.json) or leave them LABEL_0, "
        "LABEL_1, ... to match by index"
    )
