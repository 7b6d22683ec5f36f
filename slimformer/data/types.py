"""The shapes data takes inside slimformer: labelled examples, a task's three splits, batches."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Example:
    text: str
    label: int


@dataclass
class TaskData:
    """A classification task split three ways. `labels[i]` is the name of label id i."""

    name: str
    labels: list[str]
    train: list[Example]
    dev: list[Example]
    test: list[Example]
    source: dict[str, Any] = field(default_factory=dict)  # where it came from, for records

    @property
    def num_labels(self) -> int:
        return len(self.labels)

    @property
    def label_map(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.labels)}

    def fingerprint(self) -> str:
        """Content hash of labels and all three splits: equal data, equal fingerprint."""
        h = hashlib.sha256(json.dumps(self.labels).encode())
        for split in (self.train, self.dev, self.test):
            h.update(b"\x00split")
            for ex in split:
                h.update(ex.text.encode())
                h.update(b"\x01%d\x02" % ex.label)
        return h.hexdigest()[:16]

    def subset(self, train: int | None = None, dev: int | None = None, test: int | None = None) -> TaskData:
        """The first n examples of each split (splits are already shuffled by seed)."""
        return TaskData(
            self.name,
            list(self.labels),
            self.train[:train],
            self.dev[:dev],
            self.test[:test],
            dict(self.source),
        )


def iter_batches(
    tokenizer: Any,
    texts: Sequence[str],
    labels: Sequence[int] | None = None,
    batch_size: int = 32,
    max_length: int = 128,
    shuffle: bool = False,
    seed: int = 0,
) -> Iterator[dict[str, Any]]:
    """Tokenised torch batches: input_ids, attention_mask, token_type_ids and labels when given.

    Padding is per batch (to the longest text, at most `max_length`), which keeps CPU training fast.
    """
    import random

    import torch

    order = list(range(len(texts)))
    if shuffle:
        random.Random(seed).shuffle(order)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        enc = tokenizer(
            [texts[i] for i in idx], padding=True, truncation=True, max_length=max_length, return_tensors="pt"
        )
        batch = {
            "input_ids": enc["input_ids"],
            "attention_mask": enc["attention_mask"],
            "token_type_ids": enc.get("token_type_ids", torch.zeros_like(enc["input_ids"])),
        }
        if labels is not None:
            batch["labels"] = torch.tensor([labels[i] for i in idx], dtype=torch.long)
        yield batch
