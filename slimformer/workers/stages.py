"""The stages of a job. Each reads what earlier stages wrote to the run folder and writes its own
outputs before it returns; the pipeline marks it done only after that, so re-running a stage is
always safe (idempotent) and a job taken over by another worker resumes at the first stage
that is not done.
"""

from __future__ import annotations

import random
from typing import Any

import torch
from safetensors.torch import load_file

from slimformer.data import distillation_texts
from slimformer.search_space import Arch, TeacherFacts, count_params
from slimformer.search_space.space import space_for_teacher
from slimformer.supernet.assemble import fewshot_regions, region_of, warm_start_state
from slimformer.supernet.distill import Region
from slimformer.supernet.init import hidden_permutation
from slimformer.supernet.profile import measure_module
from slimformer.supernet.states import compute_teacher_states, load_teacher_states
from slimformer.supernet.teacher import teacher_hidden_states
from slimformer.workers.blocks import BlockJob, train_blocks
from slimformer.workers.context import RunContext, read_json, save_tensors, write_json


def teacher_latency_ms(ctx: RunContext) -> float:
    s = ctx.latency_setting
    ids = torch.randint(0, ctx.teacher.facts.vocab_size, (s.batch, s.seq_len))
    mask = torch.ones_like(ids)
    model = ctx.teacher.model.eval()
    with torch.inference_mode():
        return measure_module(lambda: model(ids, mask), repeats=20, warmup=3, threads=s.threads)


def stage_prepare(ctx: RunContext) -> dict[str, Any]:
    """Task data, the task teacher (fine-tuned or cached), its figures, and the search space."""
    task, teacher = ctx.eval_task, ctx.teacher
    ctx.reporter.progress("prepare", 0.8, f"teacher dev acc {teacher.dev_accuracy:.3f}")
    facts: TeacherFacts = teacher.facts
    space = space_for_teacher(facts)
    write_json(ctx.path("space.json"), space.to_dict())
    summary = {
        "task": {"name": task.name, "labels": task.labels, "train": len(task.train), "dev": len(task.dev),
                 "test": len(task.test), "fingerprint": task.fingerprint()},
        "teacher": {
            "name": ctx.spec.teacher, "dev_accuracy": teacher.dev_accuracy, "test_accuracy": teacher.test_accuracy,
            "params": sum(p.numel() for p in teacher.model.parameters()), "latency_ms": teacher_latency_ms(ctx),
            "from_cache": teacher.from_cache, "cache_path": str(teacher.cache_path),
        },
        "space": {"size": space.size(), "hidden_sizes": list(space.hidden_sizes), "blocks": space.num_blocks,
                  "slots_per_block": space.slots_per_block},
    }
    write_json(ctx.path("teacher.json"), summary)
    return summary


def stage_states(ctx: RunContext) -> dict[str, Any]:
    """Teacher hidden states at block boundaries over the distillation texts, and the hidden-dim permutation."""
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


def _block_summary(result) -> dict[str, Any]:
    return {"block": result.block, "region": result.region, "loss_start": result.loss_start,
            "loss_end": result.loss_end, "steps": result.steps, "seconds": round(result.seconds, 2)}


def stage_blocks(ctx: RunContext) -> dict[str, Any]:
    """Block-wise distillation of the one-shot supernet: one Ray task per block."""
    space = ctx.space
    basis = load_file(str(ctx.path("basis.safetensors")))["basis"]
    encoder = ctx.teacher.model.encoder
    plan = ctx.plan
    jobs = [BlockJob(i, Region(), warm_start_state(space, i, encoder, basis), plan.blocks.steps)
            for i in range(space.num_blocks)]
    done: list[Any] = []

    def on_done(result) -> None:
        save_tensors(ctx.block_file("all", result.block), result.state)
        done.append(result)
        ctx.reporter.progress("blocks", len(done) / len(jobs), f"block {result.block} loss {result.loss_end:.3f}")
        ctx.reporter.check_cancelled()

    results = train_blocks(space, jobs, ctx.path("states"), plan.blocks, ctx.path("checkpoints"), ctx.use_ray,
                           on_done)
    summary = {"blocks": [_block_summary(r) for r in results]}
    write_json(ctx.path("blocks.json"), summary)
    return summary


def stage_fewshot(ctx: RunContext) -> dict[str, Any]:
    """Few-shot split along H: K sub-supernets warm-started from the one-shot blocks."""
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
    summary = {"regions": [r.key() for r in regions], "blocks": [_block_summary(r) for r in results]}
    write_json(ctx.path("fewshot.json"), summary)
    return summary


def supernet_for(ctx: RunContext, arch: Arch):
    """Few-shot routing: the sub-supernet whose region holds `arch` (one-shot if there is no split)."""
    if not ctx.spec.search.fewshot_splits:
        return ctx.supernet("all")
    return ctx.supernet(region_of(arch, fewshot_regions(ctx.space)).key())


def stage_sample(ctx: RunContext) -> dict[str, Any]:
    """Pick `finalists` architectures of clearly different sizes (the engine's stand-in for search).

    Samples a pool, sorts it by parameters and takes evenly spaced quantiles, so the table shows
    how accuracy and latency move with size.
    """
    space, rng = ctx.space, random.Random(ctx.spec.seed)
    pool = sorted((space.sample(rng) for _ in range(200)), key=lambda a: count_params(a, space))
    k = ctx.plan.finalists
    picks = [pool[round(i * (len(pool) - 1) / max(1, k - 1))] for i in range(k)] if k > 1 else [pool[len(pool) // 2]]
    chosen = [{"arch": a.to_dict(), "hash": a.hash, "source": "sample"} for a in picks]
    write_json(ctx.path("chosen.json"), chosen)
    return {"chosen": [c["hash"] for c in chosen]}


def latency_table(ctx: RunContext):
    """The per-op latency table for the job's shape on this machine (measured once, then cached)."""
    if "_latency_table" not in ctx.__dict__:
        from slimformer.search_space.latency import table_cache_path
        from slimformer.supernet.profile import build_latency_table

        cache = ctx.cache_dir / "latency"
        table = build_latency_table(ctx.space, ctx.latency_setting, cache_dir=cache)
        key = table_cache_path(cache, table.hardware, ctx.latency_setting, table.torch_version, ctx.space).stem
        ctx.reporter.latency_table(key, table.to_dict(), ctx.space)  # lets the API check latency budgets
        ctx.__dict__["_latency_table"] = table
    return ctx.__dict__["_latency_table"]


def predicted_latency(ctx: RunContext, arch: Arch) -> float:
    from slimformer.search_space.latency import predict_latency

    return predict_latency(arch, latency_table(ctx))


def stage_finalize(ctx: RunContext) -> dict[str, Any]:
    """Fine-tune the chosen candidates in parallel, then export and measure each of them."""
    from slimformer.workers.finalize import export_and_measure, train_finalists

    archs = [ctx.space.parse(item["arch"]) for item in read_json(ctx.path("chosen.json"))]
    trained = train_finalists(ctx, archs)
    records = export_and_measure(ctx, archs, trained)
    limits = ctx.spec.budgets.model_dump(exclude_none=True)
    for record in records:
        record["budget_violations"] = measured_violations(record, limits)
        record["within_budget"] = not record["budget_violations"]
        if not record["within_budget"]:
            violations = record["budget_violations"].items()
            over = ", ".join(f"{axis} {value:.4g} > {limits[axis]:g}" for axis, value in violations)
            ctx.reporter.event(f"finalist {record['hash']} measured over budget ({over}; predicted latency "
                               f"{record['predicted_latency_ms']:.4g} ms): kept, but not offered as a result")
        ctx.reporter.candidate(record)
    write_json(ctx.path("finalists.json"), records)
    return {"finalists": len(records)}


def measured_violations(record: dict[str, Any], limits: dict[str, float]) -> dict[str, float]:
    """The budgets a finalist's *measured* figures exceed, with the measured value.

    The search keeps every candidate within budget by prediction; latency is measured again on
    the finished model and can come out over a tight budget (the machine's speed drifts by a
    few percent between the search and the measurement). Memory and parameters are exact.
    """
    measured = {
        "latency_ms": record["latency_ms"], "memory_mb": record["memory_mb"], "params_m": record["params"] / 1e6
    }
    return {axis: measured[axis] for axis, limit in limits.items() if measured[axis] > limit}


def measured_front(records: list[dict[str, Any]]) -> list[str]:
    """Hashes of finalists no other finalist beats on both dev accuracy and measured latency."""
    from slimformer.search.pareto import pareto_front

    points = [(-r["dev_accuracy"], r["latency_ms"]) for r in records]
    return [records[i]["hash"] for i in pareto_front(points)]


def stage_report(ctx: RunContext) -> dict[str, Any]:
    """The measured Pareto front of the finalists and the recommended model (best dev accuracy).

    Only finalists whose measured figures meet the budgets are offered; if none does, all are,
    and `within_budget` in the summary says so.
    """
    records = read_json(ctx.path("finalists.json"))
    eligible = [r for r in records if r.get("within_budget", True)]
    if not eligible:
        ctx.reporter.event("no finalist met the budgets as measured: the front shows them all")
    front = measured_front(eligible or records)
    for r in records:
        r["pareto"] = r["hash"] in front
    write_json(ctx.path("finalists.json"), records)
    best = max(eligible or records, key=lambda r: (r["dev_accuracy"], -r["latency_ms"]))
    summary = {"best": best["hash"], "folder": best["folder"], "pareto": front, "sizes": best["size_bytes"],
               "within_budget": bool(eligible), "over_budget": [r["hash"] for r in records if r not in eligible]}
    write_json(ctx.path("export.json"), summary)
    write_pareto_plot(ctx, records)
    return summary


def write_pareto_plot(ctx: RunContext, records: list[dict[str, Any]]) -> None:
    """pareto.png: finalists' dev accuracy against measured latency, the teacher marked."""
    from slimformer.plots import PlotPoint, ReferencePoint, render_pareto

    teacher = read_json(ctx.path("teacher.json"))["teacher"]
    points = [PlotPoint(r["hash"], r["latency_ms"], r["dev_accuracy"], r["pareto"]) for r in records]
    refs = [ReferencePoint("teacher", teacher["latency_ms"], teacher["dev_accuracy"], "*")]
    image = render_pareto(points, "png", ctx.spec.name or "slimformer job", "dev accuracy", refs)
    ctx.path("pareto.png").write_bytes(image)
