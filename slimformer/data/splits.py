"""Deduplicate labelled examples and split them three ways, deterministically from a seed."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from slimformer.data.types import Example
from slimformer.errors import DataError


def normalise_text(text: str) -> str:
    """The key two texts are compared by: stripped, every whitespace run collapsed to one space.

    Args:
        text: any text.

    Returns:
        The normalised text; "" for a text of only whitespace.
    """
    return " ".join(text.split())


@dataclass(frozen=True)
class Deduplicated:
    """Examples left after deduplication, with what was dropped and why.

    Attributes:
        examples: the kept examples, in first-occurrence order, texts as they were given.
        duplicates: repeats of an earlier text with the same label (the first copy is kept).
        conflicting: copies of texts that occur with more than one label (all are dropped).
    """

    examples: list[Example]
    duplicates: int
    conflicting: int


def dedupe_examples(examples: Iterable[Example]) -> Deduplicated:
    """Keep the first example of each normalised text; drop every copy of a text seen with two labels.

    A text labelled both ways is noise we cannot resolve, and keeping either copy would let the same
    input teach (or test) both answers, so every copy goes.

    Args:
        examples: labelled examples, in file order.

    Returns:
        A `Deduplicated` with the kept examples and the drop counts.
    """
    first: dict[str, Example] = {}
    labels: dict[str, set[int]] = {}
    copies: Counter[str] = Counter()
    for ex in examples:
        key = normalise_text(ex.text)
        first.setdefault(key, ex)
        labels.setdefault(key, set()).add(ex.label)
        copies[key] += 1
    kept = [ex for key, ex in first.items() if len(labels[key]) == 1]
    conflicting = sum(copies[key] for key, found in labels.items() if len(found) > 1)
    duplicates = sum(copies.values()) - len(kept) - conflicting
    return Deduplicated(kept, duplicates, conflicting)


def split_sizes(n: int, dev_fraction: float, test_fraction: float) -> tuple[int, int, int]:
    """How many of `n` examples go to train, dev and test.

    Rounded to the nearest example, but a non-zero fraction of at least three examples always gets
    one example, so a small uploaded file never yields an empty dev or test split.

    Args:
        n: number of examples.
        dev_fraction: share for dev, in [0, 1).
        test_fraction: share for test, in [0, 1); dev_fraction + test_fraction < 1.

    Returns:
        (train, dev, test) sizes summing to n.

    Raises:
        DataError: if a fraction is out of range.
    """
    _check_fractions(dev_fraction, test_fraction)
    n_dev = round(n * dev_fraction)
    n_test = round(n * test_fraction)
    if n >= 3:
        n_dev = max(n_dev, 1) if dev_fraction > 0 else 0
        n_test = max(n_test, 1) if test_fraction > 0 else 0
    # Rounding both up can leave train empty on tiny sets; train needs at least one example.
    while n_dev + n_test > max(n - 1, 0) and (n_dev or n_test):
        if n_dev >= n_test:
            n_dev -= 1
        else:
            n_test -= 1
    return n - n_dev - n_test, n_dev, n_test


def split_examples(
    examples: Sequence[Example],
    seed: int,
    dev_fraction: float = 0.1,
    test_fraction: float = 0.1,
    stratify: bool = True,
) -> tuple[list[Example], list[Example], list[Example]]:
    """Deduplicate, shuffle from `seed` and split into (train, dev, test).

    No normalised text lands in two splits (duplicates are removed first). With `stratify`, each
    label's share is kept in every split (up to rounding): the overall dev and test sizes are fixed
    first, then shared out over labels by largest remainder, so the sizes do not depend on it.

    Args:
        examples: labelled examples; duplicates and conflicting texts are dropped (see `dedupe_examples`).
        seed: the same seed and examples always give the same three lists.
        dev_fraction: share of the unique examples for dev.
        test_fraction: share of the unique examples for test.
        stratify: keep label proportions in each split.

    Returns:
        (train, dev, test), each in seeded shuffled order.

    Raises:
        DataError: if a fraction is out of range.
    """
    unique = dedupe_examples(examples).examples
    n_train, n_dev, n_test = split_sizes(len(unique), dev_fraction, test_fraction)
    rng = random.Random(seed)
    if not stratify:
        order = list(unique)
        rng.shuffle(order)
        return order[:n_train], order[n_train : n_train + n_dev], order[n_train + n_dev :]

    by_label: dict[int, list[Example]] = {}
    for ex in unique:
        by_label.setdefault(ex.label, []).append(ex)
    groups = [by_label[label] for label in sorted(by_label)]
    for group in groups:
        rng.shuffle(group)
    dev_counts = _share_out(n_dev, [len(g) for g in groups])
    test_counts = _share_out(n_test, [len(g) - d for g, d in zip(groups, dev_counts, strict=True)])
    train: list[Example] = []
    dev: list[Example] = []
    test: list[Example] = []
    for group, d, t in zip(groups, dev_counts, test_counts, strict=True):
        dev.extend(group[:d])
        test.extend(group[d : d + t])
        train.extend(group[d + t :])
    # Interleave the labels again: downstream takes prefixes (TaskData.subset) and batches in order.
    for split in (train, dev, test):
        rng.shuffle(split)
    return train, dev, test


def _share_out(total: int, sizes: list[int]) -> list[int]:
    """Split `total` over groups in proportion to `sizes` (largest remainder, ties to the lower index)."""
    n = sum(sizes)
    if n == 0 or total == 0:
        return [0] * len(sizes)
    exact = [total * s / n for s in sizes]
    counts = [min(int(e), s) for e, s in zip(exact, sizes, strict=True)]
    by_remainder = sorted(range(len(sizes)), key=lambda i: (-(exact[i] - int(exact[i])), i))
    left = total - sum(counts)
    while left > 0:
        moved = False
        for i in by_remainder:
            if left and counts[i] < sizes[i]:
                counts[i] += 1
                left -= 1
                moved = True
        if not moved:  # cannot happen while total <= n; guards an endless loop all the same
            break
    return counts


def _check_fractions(dev_fraction: float, test_fraction: float) -> None:
    for name, value in (("dev_fraction", dev_fraction), ("test_fraction", test_fraction)):
        if not 0 <= value < 1:
            raise DataError(f"{name} must be in [0, 1), got {value}")
    if dev_fraction + test_fraction >= 1:
        raise DataError(f"dev_fraction + test_fraction must be below 1, got {dev_fraction + test_fraction}")
