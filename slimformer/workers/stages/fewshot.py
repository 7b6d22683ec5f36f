"""Stage `fewshot`: the one-shot block supernets split along H into K sub-supernets, each warm-started
from the one-shot weights and trained further on its region only (few-shot NAS)."""

from __future__ import annotations

from typing import Any

from safetensors.torch import load_file

from slimformer.supernet.assemble import fewshot_regions
from slimformer.workers.blocks import BlockJob, block_summary, train_blocks
from slimformer.workers.context import RunContext, save_tensors, write_json


def stage_fewshot(ctx: RunContext) -> dict[str, Any]:
    if not ctx.spec.search.fewshot_splits:
        return {"regions": [], "skipped": True}
    space = ctx.space
    regions = fewshot_regions(space)
    oneshot = [load_file(str(ctx.block_file("all", i))) for i in range(space.num_blocks)]
    jobs = [BlockJob(i, region, oneshot[i], ctx.plan.fewshot_steps) for region in regions
            for i in range(space.num_blocks)]
    done: list[Any] = []

    def on_done(result) -> None:
        save_tensors(ctx.block_file(result.region, result.block), result.state)
        done.append(result)
        ctx.reporter.progress("fewshot", len(done) / len(jobs), f"{result.region} block {result.block}")
        ctx.reporter.check_cancelled()

    results = train_blocks(space, jobs, ctx.path("states"), ctx.plan.blocks, ctx.path("checkpoints"), ctx.use_ray,
                           on_done)
    summary = {"regions": [r.key() for r in regions], "blocks": [block_summary(r) for r in results]}
    write_json(ctx.path("fewshot.json"), summary)
    return summary
