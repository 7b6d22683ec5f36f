"""Stage `states`: the teacher's hidden states at block boundaries over the distillation texts, and the
importance permutation of hidden dimensions (the warm start's basis, see supernet/init.py)."""

from __future__ import annotations

from typing import Any

import torch

from slimformer.data import distillation_texts
from slimformer.supernet.init import hidden_permutation
from slimformer.supernet.states import compute_teacher_states, load_teacher_states
from slimformer.supernet.teacher import teacher_hidden_states
from slimformer.workers.context import RunContext, save_tensors


def stage_states(ctx: RunContext) -> dict[str, Any]:
    texts = distillation_texts(ctx.task, ctx.spec.corpus, limit=ctx.plan.distill_texts, seed=ctx.spec.seed)
    teacher = ctx.teacher

    def progress(done: int, total: int) -> None:
        ctx.reporter.progress("states", 0.9 * done / total, f"{done}/{total} texts")
        ctx.reporter.check_cancelled()

    out = compute_teacher_states(
        lambda batch: teacher_hidden_states(teacher.model, batch), teacher.tokenizer, texts, ctx.space,
        ctx.path("states"), max_length=ctx.plan.states_max_length, progress=progress,
    )
    states = load_teacher_states(out)
    stacked = torch.cat([b for b in states.boundaries])
    masks = states.attention_mask.repeat(len(states.boundaries), 1)
    save_tensors(ctx.path("basis.safetensors"), {"basis": hidden_permutation(stacked, masks)})
    return {"texts": len(texts), "max_length": ctx.plan.states_max_length, "val_rows": states.num_val}
