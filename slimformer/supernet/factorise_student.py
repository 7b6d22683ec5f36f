"""Distilled low-rank embeddings: a fine-tuned plain student's word table factorised, then distilled from it.

A plain student (V x H word table) that is already fine-tuned on the task is the closest teacher
its factorised twin can have: the same blocks, the same head, the same tokenizer. So the twin starts
from the student's own weights with the table replaced by its truncated SVD at rank r (over the
rows and occurrence weights the job's other factorised archs use, see factorised_embedding), and is
trained with the finalists' recipe to reproduce the student's logits. What it then loses is only
what rank r cannot hold.

The other way to a factorised finalist, fine-tuning rank r from the task-tuned shared weights with
the task teacher's logits, lost 0.9 points of test accuracy at r = 128 on the teacher's every-other-
layer cut (stop 21, bench/results/compact.json: 0.817 against 0.826 full rank).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import torch

from slimformer.data.types import Example
from slimformer.supernet.factorised_embedding import SvdBasis
from slimformer.supernet.finetune import FinetuneResult, FinetuneSettings, finetune_subnet
from slimformer.supernet.subnet import SubNet
from slimformer.supernet.task_score import predict_logits

WORD_TABLE = "embeddings.word_embeddings.weight"


def factorised_copy(student: SubNet, rank: int, rows: torch.Tensor | None = None,
                    weights: torch.Tensor | None = None) -> SubNet:
    """A new SubNet: `student` with its V x H word table replaced by rank-`rank` factors, the rest copied.

    Raises:
        ValueError: if the student's table is factorised already, or `rank` is not below its H.
    """
    arch = student.arch
    if arch.embedding_rank is not None:
        raise ValueError(f"student {arch.short()}: its word table is factorised already (rank {arch.embedding_rank})")
    if not 0 < rank < arch.hidden:
        raise ValueError(f"rank {rank}: must be positive and below the student's hidden size {arch.hidden}")
    state = {k: v.detach().clone() for k, v in student.state_dict().items()}
    table = state.pop(WORD_TABLE)
    a, b = SvdBasis().factors(table, arch.hidden, rank, rows, weights)
    state["embeddings.word_embeddings.lookup.weight"] = a.contiguous()
    state["embeddings.word_embeddings.projection"] = b.contiguous()
    twin = SubNet(replace(student.config, arch=replace(arch, embedding_rank=rank).to_dict()))
    twin.load_state_dict(state, strict=True)
    return twin.eval()


def distil_factorised(student: SubNet, rank: int, tokenizer: Any, train: Sequence[Example], dev: Sequence[Example],
                      test: Sequence[Example], settings: FinetuneSettings, rows: torch.Tensor | None = None,
                      weights: torch.Tensor | None = None) -> tuple[SubNet, FinetuneResult]:
    """`factorised_copy` of `student`, trained with `settings` to reproduce `student`'s logits on `train`.

    The student is left unchanged (it is the frozen teacher here). Its logits on every training row
    are computed once, so it never runs during training.
    """
    twin = factorised_copy(student, rank, rows, weights)
    with torch.no_grad():
        logits = predict_logits(student, tokenizer, [ex.text for ex in train], settings.max_length)
    result = finetune_subnet(twin, student, tokenizer, train, dev, test, settings, teacher_logits=logits)
    return twin, result
