"""Pooled-state distillation: the student's mean-pooled last state imitates the teacher's.

A classifier head reads one vector per example, the masked mean of the last hidden state. Logit
distillation constrains only that vector's projection onto the head's C-1 useful directions (one on
a binary task); matching the whole pooled vector passes on the other D-1 directions of the teacher's
representation too (feature distillation on the penultimate layer, as FitNets' hint and SRRL do).

It is cheap: the teacher's pooled states are computed once per training example, in the same pass
as its logits, so the teacher never runs during fine-tuning (layer-wise hidden-state distillation
would run it every step). A student narrower than the teacher is mapped to the teacher's width by a
learned projection started from the supernet's last output bridge, which at warm start is exactly
the inverse of the student's hidden-basis permutation; the projection is dropped after training.

    loss = pooled_weight * mean_i ||P(s_i) - t_i||^2 / ||t_i||^2
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from slimformer.supernet.functional import mean_pool
from slimformer.supernet.task_score import logits_of, predict_rows


def last_state(output: Any) -> torch.Tensor:
    """[B, T, H] last hidden state of a model output (SubNet dict or the teacher's output object)."""
    states = output["hidden_states"] if isinstance(output, dict) else output.hidden_states
    return states[-1]


def teacher_outputs(model: nn.Module, tokenizer: Any, texts: Sequence[str], max_length: int,
                    batch_size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """([N, C] logits, [N, D] mean-pooled last states) of `model` for `texts`, in order, on the CPU."""
    logits, pooled = predict_rows(
        model, tokenizer, texts, max_length,
        [lambda out, _: logits_of(out), lambda out, batch: mean_pool(last_state(out), batch["attention_mask"])],
        batch_size, output_hidden_states=True,
    )
    return logits, pooled


def pooled_projection(hidden: int, teacher_width: int,
                      bridge: tuple[torch.Tensor, torch.Tensor] | None) -> nn.Linear:
    """H -> D map for the student's pooled state: the last block's output bridge when given
    (weight [D, H], bias [D]), else the identity where H == D, else a fresh layer."""
    proj = nn.Linear(hidden, teacher_width)
    with torch.no_grad():
        if bridge is not None:
            proj.weight.copy_(bridge[0])
            proj.bias.copy_(bridge[1])
        elif hidden == teacher_width:
            proj.weight.copy_(torch.eye(hidden))
            proj.bias.zero_()
    return proj


def pooled_loss(student_output: Any, mask: torch.Tensor, projection: nn.Module, target: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of ||P(pooled student) - target||^2 / ||target||^2 (1.0: 'predicts zeros')."""
    pooled = projection(mean_pool(last_state(student_output), mask))
    err = ((pooled - target) ** 2).sum(-1)
    return (err / (target**2).sum(-1).clamp(min=1e-12)).mean()
