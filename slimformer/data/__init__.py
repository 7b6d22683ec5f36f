"""Task data sets and unlabelled corpora: built-in ones by name, user files by path."""

from __future__ import annotations

from slimformer.data.files import DEFAULT_MAX_BYTES, LabelledFile, read_labelled_file
from slimformer.data.registry import (
    BUILTIN_CORPORA,
    BUILTIN_TASKS,
    distillation_texts,
    load_corpus,
    load_task,
)
from slimformer.data.splits import dedupe_examples, normalise_text, split_examples
from slimformer.data.types import Example, TaskData, iter_batches

__all__ = [
    "BUILTIN_CORPORA",
    "BUILTIN_TASKS",
    "DEFAULT_MAX_BYTES",
    "Example",
    "LabelledFile",
    "TaskData",
    "dedupe_examples",
    "distillation_texts",
    "iter_batches",
    "load_corpus",
    "load_task",
    "normalise_text",
    "read_labelled_file",
    "split_examples",
]
