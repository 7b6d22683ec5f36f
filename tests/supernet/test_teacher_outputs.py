"""The teacher's outputs on its training split are kept in its cache entry and read by later jobs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from slimformer.supernet.teacher import TeacherSettings, fine_tune_teacher
from slimformer.supernet.teacher_outputs import OUTPUTS_FILE, compute_train_outputs, train_outputs

FAST = TeacherSettings(epochs=2, patience=0, lr=2e-3, batch_size=16, max_length=32, seed=0)


@pytest.fixture(scope="module")
def trained(tiny_teacher_dir: Path, tiny_task, tmp_path_factory: pytest.TempPathFactory):
    cache = tmp_path_factory.mktemp("teacher-cache")
    fine_tune_teacher(tiny_teacher_dir, tiny_task, FAST, cache)
    # What a later job gets: the entry loaded from the cache, not the model that was just trained.
    return fine_tune_teacher(tiny_teacher_dir, tiny_task, FAST, cache)


def test_a_trained_teachers_entry_holds_its_outputs_on_the_whole_training_split(trained, tiny_task) -> None:
    assert trained.from_cache and (trained.cache_path / OUTPUTS_FILE).is_file()
    texts = [e.text for e in tiny_task.train]
    kept, cached = train_outputs(trained, texts)
    assert cached
    fresh = compute_train_outputs(trained.model, trained.tokenizer, texts, trained.max_length)
    assert kept["logits"].shape == (len(texts), tiny_task.num_labels)
    torch.testing.assert_close(kept["logits"], fresh["logits"], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(kept["pooled"], fresh["pooled"], atol=1e-5, rtol=1e-5)


def test_an_entry_cached_without_them_gains_them_on_first_use(trained, tiny_task) -> None:
    texts = [e.text for e in tiny_task.train]
    path = trained.cache_path / OUTPUTS_FILE
    kept = path.read_bytes()
    path.unlink()
    try:
        computed, cached = train_outputs(trained, texts)
        assert not cached and path.is_file()
        again, cached = train_outputs(trained, texts)
        assert cached
        torch.testing.assert_close(again["logits"], computed["logits"])
        assert not list(trained.cache_path.glob("*.tmp"))  # written through a temporary name
    finally:
        path.write_bytes(kept)


def test_outputs_for_other_rows_are_computed_not_served(trained, tiny_task) -> None:
    texts = [e.text for e in tiny_task.train][:7]
    outputs, cached = train_outputs(trained, texts)
    assert not cached and outputs["logits"].shape[0] == 7


def test_a_damaged_file_is_computed_again(trained, tiny_task) -> None:
    texts = [e.text for e in tiny_task.train]
    path = trained.cache_path / OUTPUTS_FILE
    kept = path.read_bytes()
    path.write_bytes(b"not safetensors")
    try:
        outputs, cached = train_outputs(trained, texts)
        assert not cached and outputs["logits"].shape[0] == len(texts)
        assert train_outputs(trained, texts)[1]  # and rewritten whole
    finally:
        path.write_bytes(kept)
