"""Fixtures the supernet tests share: the tiny teacher's tokenizer and a space shaped like that teacher."""

from __future__ import annotations

from pathlib import Path

import pytest

from slimformer.search_space import TeacherFacts
from slimformer.search_space.space import space_for_teacher


@pytest.fixture(scope="module")
def tokenizer(tiny_teacher_dir: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tiny_teacher_dir), local_files_only=True)


@pytest.fixture(scope="module")
def space(tokenizer):
    facts = TeacherFacts(hidden_size=64, num_layers=6, num_heads=4, intermediate_size=128,
                         vocab_size=len(tokenizer), max_position=128)
    return space_for_teacher(facts)
