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


def batch_order(n: int, batch_size: int, shuffle: bool = False, seed: int = 0) -> list[list[int]]:
    """Example indices of each batch: in order, or shuffled by `seed` (same seed, same batches)."""
    import random

    order = list(range(n))
    if shuffle:
        random.Random(seed).shuffle(order)
    return [order[start : start + batch_size] for start in range(0, n, batch_size)]


def encode_batch(
    tokenizer: Any, texts: Sequence[str], labels: Sequence[int] | None = None, max_length: int = 128
) -> dict[str, Any]:
    """One tokenised torch batch, padded to its longest text (at most `max_length`)."""
    import torch

    enc = tokenizer(list(texts), padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    batch = {
        "input_ids": enc["input_ids"],
        "attention_mask": enc["attention_mask"],
        "token_type_ids": enc.get("token_type_ids", torch.zeros_like(enc["input_ids"])),
    }
    if labels is not None:
        batch["labels"] = torch.tensor(list(labels), dtype=torch.long)
    return batch


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
    for idx in batch_order(len(texts), batch_size, shuffle, seed):
        yield encode_batch(
            tokenizer, [texts[i] for i in idx], None if labels is None else [labels[i] for i in idx], max_length
        )
