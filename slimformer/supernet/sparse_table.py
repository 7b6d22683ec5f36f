"""Training a student's dense word table row by row: sparse gradients and a lazy Adam step.

A student keeps the teacher's word table (30,522 x H for MiniLM-L6's whole vocabulary), most of a
small student's parameters, while a batch of 32 reviews touches a few hundred of its rows. Trained
densely, every step builds a 30,522-row gradient that is zero almost everywhere, clips it and steps
AdamW over every row: on one thread that was 17% of a step for the teacher's first layer and 9% for
its first three (docs/method.md#job-time, stop 31). Frozen, the table costs the fit about a dev point on Rotten
Tomatoes (first 2 and 3 layers), so it must train, but only where the batch has words.

Here the table's gradient is sparse (nn.Embedding(sparse=True)), only its touched rows step
(torch.optim.SparseAdam: moments and bias correction per touched row, no weight decay), and the
gradient-norm clip counts its values with the dense parameters' gradients, as one norm.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from slimformer.supernet.vocab import WORD_EMBEDDINGS


def sparse_word_table(model: nn.Module) -> nn.Embedding | None:
    """The model's dense word table as an nn.Embedding, or None (a factorised table, or none found)."""
    for name, module in model.named_modules():  # a SubNet's table, or a BERT classifier's (bert.embeddings...)
        if f"{name}.weight".endswith(WORD_EMBEDDINGS) and isinstance(module, nn.Embedding):
            return module
    return None


def clip_grad_norm(dense: Sequence[nn.Parameter], sparse: Sequence[nn.Parameter], max_norm: float) -> float:
    """Scale every gradient so that their joint 2-norm is at most `max_norm`; return the norm before.

    The same rule as nn.utils.clip_grad_norm_ over all of them, which cannot take sparse gradients.
    A sparse gradient is coalesced first (a word twice in a batch is one row of it).
    """
    squares = []
    for p in sparse:
        if p.grad is not None:
            p.grad = p.grad.coalesce()
            squares.append(p.grad._values().pow(2).sum())
    grads = [p.grad for p in dense if p.grad is not None]
    if grads:
        squares.extend(n.pow(2) for n in torch._foreach_norm(grads))
    if not squares:
        return 0.0
    total = math.sqrt(float(torch.stack([s.float() for s in squares]).sum()))
    coef = max_norm / (total + 1e-6)
    if coef < 1.0:
        if grads:
            torch._foreach_mul_(grads, coef)
        for p in sparse:
            if p.grad is not None:
                p.grad = p.grad * coef
    return total
