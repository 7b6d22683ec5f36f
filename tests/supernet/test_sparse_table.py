"""A student's word table trained row by row (supernet/sparse_table.py, `FinetuneSettings.sparse_word_table`).

The joint gradient clip matches torch's own on the same gradients made dense. Fine-tuning the tiny
teacher as its own student moves only the table rows of words its training text has; the dense
recipe moves the others too (AdamW's weight decay), so the check can tell the two apart.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from slimformer.supernet.finetune import FinetuneSettings, finetune_subnet
from slimformer.supernet.sparse_table import clip_grad_norm, sparse_word_table

MAX_LENGTH = 32


@pytest.mark.parametrize("scale", [0.01, 100.0])  # under the limit (no clip) and over it
def test_the_joint_clip_is_torchs_clip_of_the_dense_gradients(scale):
    torch.manual_seed(0)
    table, head = nn.Embedding(50, 8, sparse=True), nn.Linear(8, 3)
    ids = torch.tensor([[1, 4, 4, 9], [2, 9, 7, 1]])
    (head(table(ids)).pow(2).sum() * scale).backward()
    dense_table = table.weight.grad.to_dense()
    dense_head = [p.grad.clone() for p in head.parameters()]
    norm = clip_grad_norm(list(head.parameters()), [table.weight], 1.0)

    reference = [nn.Parameter(torch.zeros_like(dense_table)), *(nn.Parameter(torch.zeros_like(g)) for g in dense_head)]
    for p, g in zip(reference, [dense_table, *dense_head], strict=True):
        p.grad = g.clone()
    expected = nn.utils.clip_grad_norm_(reference, 1.0)
    assert norm == pytest.approx(float(expected), rel=1e-5)
    assert torch.allclose(table.weight.grad.to_dense(), reference[0].grad, atol=1e-6)
    for p, ref in zip(head.parameters(), reference[1:], strict=True):
        assert torch.allclose(p.grad, ref.grad, atol=1e-6)


@pytest.mark.parametrize("sparse", [True, False])
def test_only_the_rows_of_training_words_move_in_a_sparse_fit(teacher, tiny_task, sparse):
    student = copy.deepcopy(teacher.model)
    table = sparse_word_table(student)
    assert table is not None and not table.sparse
    before = {name: p.detach().clone() for name, p in student.named_parameters()}
    start = table.weight.detach().clone()
    settings = FinetuneSettings(epochs=1, lr=3e-3, batch_size=16, max_length=MAX_LENGTH, patience=0,
                                sparse_word_table=sparse)
    finetune_subnet(student, teacher.model, teacher.tokenizer, tiny_task.train, [], [], settings)

    encoded = teacher.tokenizer([e.text for e in tiny_task.train], truncation=True, max_length=MAX_LENGTH)
    seen = sorted({i for ids in encoded["input_ids"] for i in ids})
    unseen = sorted(set(range(table.num_embeddings)) - set(seen))
    moved_rows = (table.weight.detach() != start).any(dim=1)
    assert moved_rows[seen].any()
    assert bool(moved_rows[unseen].any()) is not sparse  # dense AdamW decays every row
    # Everything else trains either way, and the table leaves with a dense gradient again.
    moved = {n for n, p in student.named_parameters() if not torch.equal(p.detach(), before[n])}
    assert any(".attention." in n for n in moved) and any("classifier" in n for n in moved)
    assert not table.sparse
