"""The search stage: budgets checked, candidates scored by the supernet proxy, finalists chosen.

Strategies come from `slimformer.search` (Optuna NSGA-II / TPE / random, or CTNAS). Every trial
is reported as a candidate in state "scored" as soon as it exists. The finalists are k
architectures spread along the predicted Pareto front (proxy vs predicted latency), so the user
gets a choice across the latency range rather than k near-copies of one point.
"""

from __future__ import annotations

import hashlib
from typing import Any

from safetensors.torch import load_file

from slimformer.search.budgets import Budgets, check_budgets
from slimformer.search.proxy import ProxyEvaluator
from slimformer.search.strategies import run_search
from slimformer.search.study import TrialRecord
from slimformer.supernet.distill import BlockTrainSettings
from slimformer.supernet.states import load_teacher_states
from slimformer.workers.context import RunContext, write_json


def spread_along_front(front: list[TrialRecord], k: int) -> list[TrialRecord]:
    """k records of the front at evenly spaced ranks by predicted latency (all if k >= len)."""
    ordered = sorted(front, key=lambda r: (r.latency_ms, r.proxy))
    if len(ordered) <= k:
        return ordered
    picks = sorted({round(i * (len(ordered) - 1) / (k - 1)) for i in range(k)}) if k > 1 else [0]
    return [ordered[i] for i in picks]


def make_evaluator(ctx: RunContext, routing: str) -> ProxyEvaluator:
    """The proxy over this run's trained blocks; losses persist in the run folder across restarts."""
    space = ctx.space
    blocks_digest = hashlib.sha256()
    for i in range(space.num_blocks):  # the tag names the weights, so stale cached losses are never read
        blocks_digest.update(str(ctx.block_file("all", i).stat().st_mtime_ns).encode())
    settings = BlockTrainSettings(batch_size=ctx.plan.blocks.batch_size, val_batches=ctx.plan.proxy_batches)
    return ProxyEvaluator(
        space, load_teacher_states(ctx.path("states")), lambda region, i: load_file(str(ctx.block_file(region, i))),
        settings, routing=routing, cache_path=ctx.path("proxy_cache.sqlite"), cache_tag=blocks_digest.hexdigest()[:16],
    )


def stage_search(ctx: RunContext) -> dict[str, Any]:
    """Search the space under the job's budgets and choose the finalists."""
    from slimformer.workers.stages import latency_table, stage_sample

    search = ctx.spec.search
    if search.strategy == "sample":
        return stage_sample(ctx)
    space, setting, table = ctx.space, ctx.latency_setting, latency_table(ctx)
    budgets = Budgets.of(ctx.spec.budgets)
    smallest = check_budgets(space, budgets, table, setting)  # InfeasibleBudgetError: fails the job at once
    routing = "fewshot" if search.fewshot_splits else "oneshot"
    trials = ctx.plan.trials

    def on_trial(record: TrialRecord) -> None:
        if record.proxy is not None:
            ctx.reporter.candidate({
                "hash": record.hash, "arch": record.arch, "proxy": record.proxy,
                "predicted_latency_ms": record.latency_ms, "memory_mb": record.memory_mb, "params": record.params,
                "state": "scored",
            })
        ctx.reporter.progress("search", (record.number + 1) / trials, f"trial {record.number + 1}/{trials}")
        ctx.reporter.check_cancelled()

    with make_evaluator(ctx, routing) as evaluator:
        result = run_search(
            space, evaluator, budgets, table, setting, strategy=search.strategy, trials=trials, seed=ctx.spec.seed,
            storage_url=ctx.optuna_storage_url, study_name=ctx.study_name, objectives=tuple(search.objectives),
            on_trial=on_trial, seed_archs=space.anchors() if search.anchors else (),
        )
        block_evaluations = evaluator.evaluations
    chosen = spread_along_front(result.pareto, ctx.plan.finalists)
    write_json(ctx.path("search.json"), {**result.to_dict(), "smallest_achievable": smallest,
                                         "block_evaluations": block_evaluations})
    write_json(ctx.path("chosen.json"), [{"arch": r.arch, "hash": r.hash, "source": search.strategy,
                                          "proxy": r.proxy, "predicted_latency_ms": r.latency_ms} for r in chosen])
    return {"strategy": search.strategy, "trials": len(result.trials), "feasible": len(result.feasible),
            "pareto": len(result.pareto), "hypervolume": result.hypervolume, "evaluations": result.evaluations,
            "chosen": [r.hash for r in chosen]}
