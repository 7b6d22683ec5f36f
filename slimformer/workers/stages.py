"""The stages of a job. Each reads what earlier stages wrote to the run folder and writes its own
outputs before it returns; the pipeline marks it done only after that, so re-running a stage is
always safe (idempotent) and a job taken over by another worker resumes at the first stage
that is not done.
"""

from __future__ import annotations

import random
import time
from typing import Any

import torch
from safetensors.torch import load_file

from slimformer.data import distillation_texts
from slimformer.search_space import Arch, TeacherFacts, count_params, estimate_memory
from slimformer.search_space.space import space_for_teacher
from slimformer.supernet.assemble import fewshot_regions, region_of, warm_start_state
from slimformer.supernet.distill import Region
from slimformer.supernet.extract import extract
from slimformer.supernet.finetune import finetune_subnet, subnet_bridges
from slimformer.supernet.init import pca_basis
from slimformer.supernet.profile import measure_model_latency, measure_module, torch_threads
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
    """Teacher hidden states at block boundaries over the distillation texts, and the PCA basis."""
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
    save_tensors(ctx.path("basis.safetensors"), {"basis": pca_basis(stacked, masks)})
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


def finalize_one(ctx: RunContext, arch: Arch) -> dict[str, Any]:
    """Extract, fine-tune with distillation, measure and save one finalist; returns its record."""
    space, teacher, plan = ctx.space, ctx.teacher, ctx.plan
    folder = ctx.path("candidates", arch.hash)
    record_path = folder / "record.json"
    if record_path.exists():  # done before an interruption: never train it twice
        return read_json(record_path)
    supernet = supernet_for(ctx, arch)
    student = extract(supernet, arch, ctx.task.labels)
    task = ctx.eval_task
    started = time.perf_counter()
    with torch_threads(plan.finetune.threads):
        result = finetune_subnet(
            student, teacher.model, teacher.tokenizer, task.train, task.dev, task.test, plan.finetune,
            bridges=subnet_bridges(supernet, arch.hidden), teacher_facts=teacher.facts,
        )
    latency = measure_model_latency(student, ctx.latency_setting)
    from slimformer.supernet.export import save_subnet

    save_subnet(student, teacher.tokenizer, folder / "model")
    mem = estimate_memory(arch, space, ctx.latency_setting.batch, ctx.latency_setting.seq_len)
    record = {
        "hash": arch.hash, "arch": arch.to_dict(), "short": arch.short(), "params": count_params(arch, space),
        "memory_mb": round(mem.total_mb, 3), "dev_accuracy": result.dev_accuracy,
        "test_accuracy": result.test_accuracy, "latency_ms": latency, "finetune_seconds": time.perf_counter() - started,
        "finetune_steps": result.steps, "state": "fine-tuned",
    }
    write_json(record_path, record)
    return record


def stage_finalize(ctx: RunContext) -> dict[str, Any]:
    chosen = read_json(ctx.path("chosen.json"))
    records = []
    for i, item in enumerate(chosen):
        arch = ctx.space.parse(item["arch"])
        ctx.reporter.progress("finalize", i / len(chosen), f"fine-tuning {arch.hash}")
        record = finalize_one(ctx, arch)
        records.append(record)
        ctx.reporter.candidate(record)
        ctx.reporter.check_cancelled()
    write_json(ctx.path("finalists.json"), records)
    return {"finalists": len(records)}


def stage_export(ctx: RunContext) -> dict[str, Any]:
    """Export the best finalist (highest dev accuracy) with ONNX fp32 and int8."""
    from slimformer.supernet.export import export_folder, load_subnet

    records = read_json(ctx.path("finalists.json"))
    best = max(records, key=lambda r: (r["dev_accuracy"], -r["latency_ms"]))
    model, tokenizer, _ = load_subnet(ctx.path("candidates", best["hash"], "model"))
    metrics = {k: best[k] for k in ("params", "memory_mb", "dev_accuracy", "test_accuracy", "latency_ms")}
    out = export_folder(model, tokenizer, ctx.path("export", best["hash"]), metrics=metrics)
    summary = {"best": best["hash"], "folder": out["folder"], "sizes": out["sizes"],
               "onnx_max_abs_diff": out["onnx_max_abs_diff"]}
    write_json(ctx.path("export.json"), summary)
    return summary
