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


# Length grouping (HF's group_by_length): in a shuffled order, each window of this many batches is
# sorted by length before it is cut into batches, so a batch pads to texts of similar length, while
# batches stay random across windows. On Rotten Tomatoes per-batch padding then computes 1.02x the
# real tokens instead of 1.76x, and a teacher training step is 38% faster.
GROUP_WINDOW_BATCHES = 50


def token_lengths(tokenizer: Any, texts: Sequence[str], max_length: int) -> list[int]:
    """Each text's token count, capped at `max_length`: what its batch pads to, for grouping batches.

    One tokenisation pass (about 1 s per 10,000 short texts) buys back its cost many times over in
    the first training epoch.
    """
    return [len(ids) for ids in tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]]


def batch_order(
    n: int, batch_size: int, shuffle: bool = False, seed: int = 0, lengths: Sequence[int] | None = None
) -> list[list[int]]:
    """Example indices of each batch: in order, or shuffled by `seed` (same seed, same batches).

    With `lengths`, batches group texts of similar length: unshuffled, the whole set is sorted
    longest first (for inference, where order is restored by index); shuffled, each window of
    GROUP_WINDOW_BATCHES batches is sorted and the batches are then shuffled again.
    """
    import random

    rng = random.Random(seed)
    order = list(range(n))
    if shuffle:
        rng.shuffle(order)
    if lengths is not None:
        if len(lengths) != n:
            raise ValueError(f"lengths: {len(lengths)} values for {n} examples")
        window = batch_size * GROUP_WINDOW_BATCHES if shuffle else max(1, n)
        order = [i for start in range(0, n, window)
                 for i in sorted(order[start : start + window], key=lambda i: -lengths[i])]
    batches = [order[start : start + batch_size] for start in range(0, n, batch_size)]
    if shuffle and lengths is not None:
        rng.shuffle(batches)
    return batches


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
    group_by_length: bool = False,
) -> Iterator[dict[str, Any]]:
    """Tokenised torch batches: input_ids, attention_mask, token_type_ids and labels when given.

    Padding is per batch (to the longest text, at most `max_length`), which keeps CPU training fast;
    `group_by_length` makes batches of similar lengths (see `batch_order`), so less is padding.
    Grouped batches come out of order: use it where only the batches' sum matters.
    """
    lengths = token_lengths(tokenizer, texts, max_length) if group_by_length else None
    for idx in batch_order(len(texts), batch_size, shuffle, seed, lengths):
        yield encode_batch(
            tokenizer, [texts[i] for i in idx], None if labels is None else [labels[i] for i in idx], max_length
        )
