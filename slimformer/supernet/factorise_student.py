"""Distilled low-rank embeddings: a fine-tuned plain student's word table factorised, then distilled from it.

A plain student (V x H word table) that is already fine-tuned on the task is the closest teacher
its factorised twin can have: the same blocks, the same head, the same tokenizer. So the twin starts
from the student's own weights with the table replaced by its truncated SVD at rank r (over the
rows and occurrence weights the job's other factorised archs use, see factorised_embedding), and
only the two factors are trained, with the finalists' schedule at FACTOR_LR, to reproduce the
student's logits. The blocks and head stay the student's: the factors learn to embed tokens the
way those blocks read them, and what the twin loses is only what rank r cannot hold.

Measured on the stop-23 quality job (MiniLM-L6, Rotten Tomatoes, test accuracy with the trimmed
vocabulary, r 128 / r 64; the plain finalists: the every-other-layer cut 0.825, an H192 pick 0.797):
- fine-tuned at rank r from the task-tuned shared weights with the task teacher's logits, as the
  search's factorised candidates are (stop 21, the same cut): 0.817 / 0.804;
- from the fine-tuned finalist, every weight trained at the finalists' lr 1e-4: the cut 0.821 /
  0.814, the H192 pick 0.796 / 0.782 (its dev fell after the first evaluation: the blocks drift);
  every weight at 3e-5: the pick at r 64 0.771;
- from the fine-tuned finalist, the factors only at 1e-3: the cut 0.825 / 0.803, the pick 0.806 /
  0.808. Higher dev accuracy than every weight trained in all four cases (0.838, 0.828, 0.816, 0.806
  against 0.832, 0.816, 0.802, 0.787), higher test accuracy in three.
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
FACTORS = "embeddings.word_embeddings."  # the lookup and projection of a FactorisedEmbedding
# Ten times the finalists' lr: only r (V + H) weights move, from a start the blocks already read well.
FACTOR_LR = 1e-3


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
    """`factorised_copy` of `student`, its word factors trained with `settings` to reproduce `student`'s
    logits on `train` (every other weight stays the student's; `settings.lr` is the factors' lr).

    The student is left unchanged (it is the frozen teacher here). Its logits on every training row
    are computed once, so it never runs during training.
    """
    # The factors learn the student's logits alone, the recipe bench/results/compact.json measured: the
    # finalists' pooled-state loss (supernet/pooled_kd.py) is not part of it.
    settings = replace(settings, pooled_weight=0.0)
    twin = factorised_copy(student, rank, rows, weights)
    logits = predict_logits(student, tokenizer, [ex.text for ex in train], settings.max_length)
    frozen = [p for name, p in twin.named_parameters() if not name.startswith(FACTORS)]
    for p in frozen:
        p.requires_grad_(False)
    try:
        result = finetune_subnet(twin, student, tokenizer, train, dev, test, settings, teacher_logits=logits)
    finally:
        for p in frozen:
            p.requires_grad_(True)
    return twin, result
