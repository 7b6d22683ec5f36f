"""Fixtures the supernet tests share: the tiny teacher's tokenizer, a space shaped like that teacher, and
that teacher fine-tuned on the tiny task (max_length 32) for fine-tuning tests to distil from."""

from __future__ import annotations

from pathlib import Path

import pytest

from slimformer.search_space import TeacherFacts
from slimformer.search_space.space import space_for_teacher
from slimformer.supernet.teacher import TeacherSettings, fine_tune_teacher


@pytest.fixture(scope="module")
def tokenizer(tiny_teacher_dir: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tiny_teacher_dir), local_files_only=True)


@pytest.fixture(scope="module")
def space(tokenizer):
    facts = TeacherFacts(hidden_size=64, num_layers=6, num_heads=4, intermediate_size=128,
                         vocab_size=len(tokenizer), max_position=128)
    return space_for_teacher(facts)


@pytest.fixture(scope="module")
def teacher(tiny_teacher_dir, tiny_task, tmp_path_factory):
    """The tiny teacher fine-tuned for one epoch at max_length 32 (a module's own fixture of that name wins)."""
    settings = TeacherSettings(epochs=1, patience=0, lr=5e-4, batch_size=16, max_length=32, seed=0)
    return fine_tune_teacher(tiny_teacher_dir, tiny_task, settings, tmp_path_factory.mktemp("teachers"))
