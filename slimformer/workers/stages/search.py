"""Stage `search`: budgets checked, candidates scored, finalists chosen.

Candidates are scored with shared weights on held-out task data by the task-aware supernet
(`TaskAwareEvaluator`, the default), or by the block-wise proxy (`ProxyEvaluator`, NAS-BERT) when the
task stage did not run. Strategies come from `slimformer.search` (Optuna NSGA-II / TPE / random, or
CTNAS). The search starts from the teacher-shaped anchors and the teacher's layer-dropped variants
(truncations, every other layer) and full-width variants (`SearchSpace.seed_archs`). Every trial is
reported as a candidate in state "scored" as soon as it exists. The finalists are the
teacher's layer-dropped models within budget (`SearchSpace.reference_finalists`) that compress it by
at least MIN_CUT_SPEEDUP, one per layer count (the better-scored where two keep as many layers), so
the measured front holds a plain cut of the teacher at every depth a user would compress to, and
the search's own picks: the
best by score and size together (`slimformer.search.finalists`) in each latency tier just below a
cut, so each cut is set against a model at most as slow; without cuts, picks spread evenly over
the predicted latency range. With `plan.short_fit_steps`, the records those picks are made from are
ranked by short-fit scores first (each fitted for a few steps of the finalists' recipe,
`short_fit_pool`): what shared weights say before any fine-tune ranks mixed architectures worse.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import replace
from typing import Any

from safetensors.torch import load_file

from slimformer.search.budgets import Budgets, check_budgets
from slimformer.search.finalists import (
    candidate_pool,
    choose_finalists,
    one_cut_per_depth,
    reference_records,
    tier_picks,
)
from slimformer.search.proxy import ProxyEvaluator
from slimformer.search.strategies import run_search
from slimformer.search.study import TrialRecord
from slimformer.search.task_evaluator import TaskAwareEvaluator
from slimformer.search_space import Arch, count_params
from slimformer.supernet.distill import BlockTrainSettings
from slimformer.supernet.states import load_teacher_states
from slimformer.workers.context import RunContext, write_json
from slimformer.workers.short_fit_scores import short_fit_scores


def _files_tag(files) -> str:
    digest = hashlib.sha256()
    for file in files:  # the tag names the weights, so stale cached scores are never read
        digest.update(f"{file}:{file.stat().st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


def make_blockwise_evaluator(ctx: RunContext, routing: str) -> ProxyEvaluator:
    """The block-wise proxy over this run's trained blocks; losses persist in the run folder."""
    space = ctx.space
    settings = BlockTrainSettings(batch_size=ctx.plan.blocks.batch_size, val_batches=ctx.plan.proxy_batches)
    return ProxyEvaluator(
        space, load_teacher_states(ctx.path("states")), lambda region, i: load_file(str(ctx.block_file(region, i))),
        settings, routing=routing, cache_path=ctx.path("proxy_cache.sqlite"),
        cache_tag=_files_tag([ctx.block_file("all", i) for i in range(space.num_blocks)]),
    )


def make_task_evaluator(ctx: RunContext) -> TaskAwareEvaluator:
    """Shared-weight scores on the first dev rows, routed to the task-tuned region supernets."""
    scorer = ctx.held_out_scorer()
    files = sorted(ctx.path("supernet", "task").glob("*.safetensors"))
    return TaskAwareEvaluator(ctx.space, ctx.routed_supernet, scorer, metric=score_metric(ctx),
                              cache_path=ctx.path("task_scores.sqlite"), cache_tag=_files_tag(files))


def score_metric(ctx: RunContext) -> str:
    """The plan's shared-weight score, with the error rate read as 1 - macro-F1 on a macro-F1 job."""
    metric = ctx.plan.score_metric
    return "f1_error" if metric == "error" and ctx.metric == "macro_f1" else metric


def uses_task_scores(ctx: RunContext) -> bool:
    return ctx.path("supernet", "task").is_dir() and any(ctx.path("supernet", "task").glob("*.safetensors"))


def stage_sample(ctx: RunContext) -> dict[str, Any]:
    """Pick `finalists` architectures of clearly different sizes (the engine's stand-in for search)."""
    space, rng = ctx.space, random.Random(ctx.spec.seed)
    pool = sorted((space.sample(rng) for _ in range(200)), key=lambda a: count_params(a, space))
    k = ctx.plan.finalists
    picks = [pool[round(i * (len(pool) - 1) / max(1, k - 1))] for i in range(k)] if k > 1 else [pool[len(pool) // 2]]
    chosen = [{"arch": a.to_dict(), "hash": a.hash, "source": "sample"} for a in picks]
    write_json(ctx.path("chosen.json"), chosen)
    return {"chosen": [c["hash"] for c in chosen]}


def pick_finalists(ctx: RunContext, trials: list[TrialRecord], exclude: set[str]) -> list[TrialRecord]:
    """The search's own finalists beside the plain cuts: one below each cut first, then evenly spread.

    Below each cut means at most as slow as the teacher's first k layers and slower than its first
    k-1 (`tier_picks`); a tier whose best is a layer swap of its cut gives none, since the cut is a
    finalist already. Tiers the budgets leave empty are made up by picks spread evenly over the
    rest of the latency range, so a tight budget still gets `plan.finalists` choices.
    """
    k, space = ctx.plan.finalists, ctx.space
    cuts = [ctx.predicted_latency(space.truncated_arch(n)) for n in range(1, space.teacher.num_layers)]
    # The teacher keeping other layers than a cut's, at the cut's count: the cut stands for it.
    stand_ins = {r.hash for r in trials if space.teacher_layers_of(Arch.from_dict(r.arch)) is not None}
    anchors = {a.hash for a in space.anchors() + space.width_scaled_anchors()}  # a wide tier's pick
    picks, answered = tier_picks(trials, cuts, k, exclude=exclude, stand_ins=stand_ins, anchors=anchors)
    if len(picks) + answered < k:
        picks += choose_finalists(trials, k - len(picks) - answered, exclude=exclude | {r.hash for r in picks})
    return picks


def short_fit_pool(ctx: RunContext, trials: list[TrialRecord], exclude: set[str],
                   cut_hashes: list[str]) -> tuple[list[TrialRecord], dict[str, dict]]:
    """The records finalists are picked from, their proxies replaced by short-fit scores.

    The pool is what the pickers could choose: every feasible scored record not dominated in
    (score, latency, -params) (`candidate_pool`), and the teacher's scored cuts. Each is fitted for
    `plan.short_fit_steps` steps of the finalists' recipe and scored again (supernet/short_fit.py).
    Records outside the pool are left out of the choice: one scale must rank every record it
    compares, and shared-weight and short-fit KLs are not on one.
    """
    pool = {r.hash: r for r in candidate_pool(trials, exclude) + reference_records(trials, cut_hashes)}
    records = list(pool.values())
    ctx.reporter.progress("search", 1.0, f"fitting {len(records)} candidates for {ctx.plan.short_fit_steps} steps")
    scores = short_fit_scores(ctx, [Arch.from_dict(r.arch) for r in records])
    metric = score_metric(ctx)
    return ([replace(r, proxy=scores[r.hash].value(metric)) for r in records],
            {h: s.__dict__ for h, s in scores.items()})


# A plain cut predicted to run at less than this many times the teacher's speed is not a finalist. Every
# finalist costs one fine-tune, each about a tenth of the quick job's time on 2 cores, and the teacher's
# last cut barely compresses (MiniLM-L6's first 5 layers: 1.2x). In the stop-32 rerun of the quality job
# its fine-tune, the costliest of the 8 (200 core-seconds with its export), gave dev 0.839 / test 0.815,
# while the faster first 4 layers (1.5x) gave 0.831 / 0.824 and every other layer (2x) 0.820 / 0.826.
MIN_CUT_SPEEDUP = 1.25


def compressing_cuts(ctx: RunContext) -> dict[str, Arch]:
    """The teacher's plain cuts (`SearchSpace.reference_finalists`) that run at least MIN_CUT_SPEEDUP
    times as fast as the teacher, by the job's latency table."""
    space = ctx.space
    teacher_ms = ctx.predicted_latency(space.teacher_arch())
    return {name: arch for name, arch in space.reference_finalists().items()
            if ctx.predicted_latency(arch) * MIN_CUT_SPEEDUP <= teacher_ms}


def teacher_depth(space, record: TrialRecord) -> int | None:
    """How many teacher layers a record's arch keeps, when it is the teacher keeping some (else None)."""
    layers = space.teacher_layers_of(Arch.from_dict(record.arch))
    return len(layers) if layers else None


def stage_search(ctx: RunContext) -> dict[str, Any]:
    search = ctx.spec.search
    if search.strategy == "sample":
        return stage_sample(ctx)
    space, setting, table = ctx.space, ctx.latency_setting, ctx.latency_table()
    budgets = Budgets.of(ctx.spec.budgets)
    smallest = check_budgets(space, budgets, table, setting)  # InfeasibleBudgetError: fails the job at once
    routing = "fewshot" if search.fewshot_splits else "oneshot"
    trials = ctx.plan.trials
    task_aware = uses_task_scores(ctx)
    evaluator = make_task_evaluator(ctx) if task_aware else make_blockwise_evaluator(ctx, routing)

    def on_trial(record: TrialRecord) -> None:
        if record.proxy is not None:
            candidate = {"hash": record.hash, "arch": record.arch, "proxy": record.proxy,
                         "predicted_latency_ms": record.latency_ms, "memory_mb": record.memory_mb,
                         "params": record.params, "state": "scored"}
            score = evaluator.scores.get(record.hash) if task_aware else None  # from its cache on a resume
            if score is not None:
                candidate.update(shared_dev_accuracy=score.accuracy, shared_kl=score.kl,
                                 shared_dev_macro_f1=score.macro_f1)
            ctx.reporter.candidate(candidate)
        ctx.reporter.progress("search", (record.number + 1) / trials, f"trial {record.number + 1}/{trials}")
        ctx.reporter.check_cancelled()

    seeds = space.seed_archs() if search.anchors else []
    with evaluator:
        result = run_search(
            space, evaluator, budgets, table, setting, strategy=search.strategy, trials=trials, seed=ctx.spec.seed,
            storage_url=ctx.optuna_storage_url, study_name=ctx.study_name, objectives=tuple(search.objectives),
            on_trial=on_trial, seed_archs=seeds,
        )
        evaluations = evaluator.evaluations
        shared = {h: s.__dict__ for h, s in evaluator.scores.items()} if task_aware else {}
    # The teacher's own shape is the reference every result is shown against, not a compressed model;
    # nor is a cut too slow to be a finalist (MIN_CUT_SPEEDUP): the teacher kept nearly whole.
    named = {arch.hash: name for name, arch in compressing_cuts(ctx).items()}
    uncompressed: set[str] = set()
    if space.layer_dropped_archs():
        uncompressed = {space.teacher_arch().hash, *(a.hash for a in space.reference_finalists().values())} - set(named)
    choice, fitted = result.trials, {}
    if task_aware and ctx.plan.short_fit_steps:
        choice, fitted = short_fit_pool(ctx, result.trials, uncompressed, list(named))
    scored_cuts = reference_records(choice, list(named))
    # Both cuts of one depth (first 3, every other layer) cost the same: the better-scored one is fine-tuned.
    references = one_cut_per_depth(scored_cuts, lambda r: teacher_depth(space, r))
    exclude = uncompressed | {r.hash for r in scored_cuts}
    picks = pick_finalists(ctx, choice, exclude) if references else []
    picks = picks or choose_finalists(choice, ctx.plan.finalists)
    chosen = sorted(picks + references, key=lambda r: (r.latency_ms, r.proxy))
    sources = {r.hash: {"source": "layer_dropped", "reference": named[r.hash]} for r in references}
    write_json(ctx.path("search.json"), {**result.to_dict(), "smallest_achievable": smallest,
                                         "scorer": "task" if task_aware else "blockwise",
                                         "evaluations": evaluations, "shared_scores": shared,
                                         "short_fit_steps": ctx.plan.short_fit_steps if fitted else 0,
                                         "short_fit_scores": fitted})
    own = {"source": search.strategy}
    write_json(ctx.path("chosen.json"), [{"arch": r.arch, "hash": r.hash, **sources.get(r.hash, own),
                                          "proxy": r.proxy, "predicted_latency_ms": r.latency_ms,
                                          **({"shared": shared[r.hash]} if r.hash in shared else {}),
                                          **({"short_fit": fitted[r.hash]} if r.hash in fitted else {})}
                                         for r in chosen])
    return {"strategy": search.strategy, "scorer": "task" if task_aware else "blockwise", "trials": len(result.trials),
            "feasible": len(result.feasible), "pareto": len(result.pareto), "hypervolume": result.hypervolume,
            "evaluations": result.evaluations, "chosen": [r.hash for r in chosen]}
