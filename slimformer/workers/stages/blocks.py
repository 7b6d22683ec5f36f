"""Stage `blocks`: block-wise distillation of the one-shot supernet (NAS-BERT), one Ray task per block."""

from __future__ import annotations

from typing import Any

from safetensors.torch import load_file

from slimformer.supernet.assemble import warm_start_state
from slimformer.supernet.distill import Region
from slimformer.workers.blocks import BlockJob, block_summary, train_blocks
from slimformer.workers.context import RunContext, save_tensors, write_json


def stage_blocks(ctx: RunContext) -> dict[str, Any]:
    space = ctx.space
    basis = load_file(str(ctx.path("basis.safetensors")))["basis"]
    encoder = ctx.teacher.model.encoder
    plan = ctx.plan
    jobs = [BlockJob(i, Region(), warm_start_state(space, i, encoder, basis, plan.blocks.seed),
                    plan.blocks.steps)
            for i in range(space.num_blocks)]
    done: list[Any] = []

    def on_done(result) -> None:
        save_tensors(ctx.block_file("all", result.block), result.state)
        done.append(result)
        ctx.reporter.progress("blocks", len(done) / len(jobs), f"block {result.block} loss {result.loss_end:.3f}")
        ctx.reporter.check_cancelled()

    results = train_blocks(space, jobs, ctx.path("states"), plan.blocks, ctx.path("checkpoints"), ctx.use_ray,
                           on_done)
    summary = {"blocks": [block_summary(r) for r in results]}
    write_json(ctx.path("blocks.json"), summary)
    return summary
