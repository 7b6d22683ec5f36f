"""A fine-tuned plain student's word table factorised and distilled from the student (supernet/factorise_student.py)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from test_factorised_embedding import LABELS, MIXED, best_rank_r, make_supernet

from slimformer.search_space import count_params
from slimformer.supernet.extract import extract
from slimformer.supernet.factorise_student import FACTORS, WORD_TABLE, distil_factorised, factorised_copy
from slimformer.supernet.finetune import FinetuneSettings
from slimformer.supernet.task_score import predict_logits


def plain_student(space, seed: int = 5):
    return extract(make_supernet(space, seed), space.parse(MIXED), LABELS)


def test_a_factorised_copy_of_a_rank_r_table_computes_the_students_logits(space, tokenizer):
    student = plain_student(space)
    with torch.no_grad():  # a table that rank 8 holds exactly: the copy must lose nothing
        table = student.embeddings.word_embeddings.weight
        table.copy_(best_rank_r(table, 8).float())
    before = {k: v.clone() for k, v in student.state_dict().items()}
    twin = factorised_copy(student, 8)
    assert twin.arch.embedding_rank == 8 and twin.arch.blocks == student.arch.blocks
    assert twin.num_params() == count_params(twin.arch, space) < student.num_params()
    texts = ["the film was good", "what a bad movie", "boring food!"]
    want = predict_logits(student, tokenizer, texts, 32)
    got = predict_logits(twin, tokenizer, texts, 32)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)
    assert all(torch.equal(v, student.state_dict()[k]) for k, v in before.items())  # the student is untouched


def test_a_factorised_copy_refuses_a_factorised_student_and_a_rank_that_saves_nothing(space):
    student = plain_student(space)
    with pytest.raises(ValueError, match="below the student's hidden size 48"):
        factorised_copy(student, 48)
    with pytest.raises(ValueError, match="factorised already"):
        factorised_copy(factorised_copy(student, 8), 8)


def test_distilling_the_twin_brings_its_logits_towards_the_students(space, tokenizer, tiny_task):
    student = plain_student(space, seed=7)
    before = student.state_dict()[WORD_TABLE].clone()
    texts = [ex.text for ex in tiny_task.dev]
    want = predict_logits(student, tokenizer, texts, 32)

    def kl(model) -> float:
        got = predict_logits(model, tokenizer, texts, 32)
        return float(F.kl_div(F.log_softmax(got, -1), F.log_softmax(want, -1), log_target=True, reduction="batchmean"))

    first = factorised_copy(student, 8)
    start = kl(first)
    settings = FinetuneSettings(epochs=4, lr=2e-3, batch_size=16, max_length=32, patience=0, ce_weight=0.0)
    twin, result = distil_factorised(student, 8, tokenizer, tiny_task.train, [], [], settings)
    assert result.steps > 0 and twin.arch.embedding_rank == 8
    assert kl(twin) < 0.5 * start, (start, kl(twin))
    assert torch.equal(student.state_dict()[WORD_TABLE], before)  # the teacher here, never trained
    # Only the word factors moved; the blocks and head are the student's, and trainable again afterwards.
    trained, started = twin.state_dict(), first.state_dict()
    assert all(torch.equal(v, started[k]) != k.startswith(FACTORS) for k, v in trained.items()), \
        [k for k, v in trained.items() if torch.equal(v, started[k]) == k.startswith(FACTORS)]
    assert all(p.requires_grad for p in twin.parameters())
