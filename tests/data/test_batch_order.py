"""Batches grouped by length: every example once, reproducible, and less padding than random batches."""

from __future__ import annotations

import random

import pytest

from slimformer.data.types import batch_order


def _lengths(n: int, seed: int = 0) -> list[int]:
    rng = random.Random(seed)
    return [rng.randint(4, 64) for _ in range(n)]


def _padded(batches: list[list[int]], lengths: list[int]) -> int:
    """Tokens a per-batch-padded run computes: each batch pads to its longest text."""
    return sum(max(lengths[i] for i in b) * len(b) for b in batches)


@pytest.mark.parametrize("shuffle", [False, True])
def test_grouped_batches_hold_every_example_exactly_once(shuffle):
    lengths = _lengths(1000)
    batches = batch_order(1000, 32, shuffle=shuffle, seed=3, lengths=lengths)
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(1000))
    assert all(len(b) <= 32 for b in batches) and sum(len(b) < 32 for b in batches) <= (1000 // (32 * 50)) + 1


def test_grouped_batches_pad_far_less_than_random_ones():
    lengths = _lengths(4000)
    plain = batch_order(4000, 32, shuffle=True, seed=1)
    grouped = batch_order(4000, 32, shuffle=True, seed=1, lengths=lengths)
    real = sum(lengths)
    assert _padded(grouped, lengths) < 1.1 * real < _padded(plain, lengths) / 1.3


def test_grouped_shuffled_batches_depend_on_the_seed_only():
    lengths = _lengths(3000)
    first = batch_order(3000, 16, shuffle=True, seed=5, lengths=lengths)
    assert first == batch_order(3000, 16, shuffle=True, seed=5, lengths=lengths)
    other = batch_order(3000, 16, shuffle=True, seed=6, lengths=lengths)
    assert first != other
    # Still random across windows: the first batch is not always the longest texts of the set.
    assert max(lengths[i] for i in first[0]) < 64 or max(lengths[i] for i in other[0]) < 64


def test_unshuffled_grouped_batches_run_longest_first():
    lengths = _lengths(500)
    batches = batch_order(500, 50, lengths=lengths)
    firsts = [lengths[b[0]] for b in batches]
    assert firsts == sorted(firsts, reverse=True)


def test_lengths_must_match_the_examples():
    with pytest.raises(ValueError, match="lengths: 3 values for 4 examples"):
        batch_order(4, 2, lengths=[1, 2, 3])
