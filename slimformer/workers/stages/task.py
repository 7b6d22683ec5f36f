"""Stage `task`: the task-aware supernet. The teacher's logits are computed once, then each few-shot
region's assembled supernet is fine-tuned on the task with the sandwich rule (supernet/task_tune.py),
one Ray task per region, largest regions first."""

from __future__ import annotations

import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from slimformer.supernet.assemble import fewshot_regions
from slimformer.supernet.device import ray_gpus_per_task
from slimformer.supernet.task_score import predict_logits
from slimformer.supernet.task_tune import train_task_supernet
from slimformer.supernet.teacher_outputs import train_outputs
from slimformer.supernet.timing import torch_threads
from slimformer.workers.context import RunContext, read_json, save_tensors, write_json
from slimformer.workers.fanout import run_tasks


def compute_teacher_logits(ctx: RunContext) -> dict[str, Any]:
    """teacher_logits.safetensors: the teacher's logits on train and on the dev rows the search scores on
    (and teacher_pooled.safetensors, its pooled last states on train, where the finalists distil them)."""
    file = ctx.path("teacher_logits.safetensors")
    teacher, task = ctx.teacher, ctx.task
    rows = ctx.score_examples()
    if not file.exists():
        started = time.perf_counter()
        with torch_threads(ctx.plan.driver_threads):
            # On train: from the teacher's cache entry where it was trained here (supernet/teacher_outputs.py).
            train, cached = train_outputs(teacher, [e.text for e in task.train])
            if ctx.plan.finetune.pooled_weight > 0:  # the finalists' recipe distils pooled states too
                save_tensors(ctx.path("teacher_pooled.safetensors"), {"train": train["pooled"]})
            logits = {
                "train": train["logits"],
                "dev": predict_logits(teacher.model, teacher.tokenizer, [e.text for e in rows], teacher.max_length),
            }
        save_tensors(file, logits)
        how = "kept with the teacher" if cached else "computed"
        ctx.reporter.event(f"teacher logits on {len(task.train)} train ({how}) and {len(rows)} dev examples in "
                           f"{time.perf_counter() - started:.0f} s")
    return {"train": len(task.train), "dev_rows": len(rows)}


def tune_region(ctx: RunContext, region_key: str, hidden: int | None, threads: int | None = None) -> dict[str, Any]:
    """Task-tune one region's supernet and save it. Idempotent: a finished region is not trained again.
    `threads` (default: the plan's): the task's share of the cores (workers/fanout.py)."""
    done = ctx.path("supernet", "task", f"{region_key}.json")
    if done.exists():
        return read_json(done)
    settings = replace(ctx.plan.task, max_length=ctx.teacher.max_length, threads=threads or ctx.plan.task.threads)
    supernet = ctx.supernet(region_key)
    result = train_task_supernet(
        supernet, ctx.teacher.tokenizer, ctx.task.train, ctx.teacher_logits()["train"], settings, hidden=hidden,
        checkpoint=ctx.path("checkpoints", f"task-{region_key}.pt"),
    )
    save_tensors(ctx.task_supernet_file(region_key), supernet.state_dict())
    summary = {"region": region_key, **asdict(result), "seconds": round(result.seconds, 1)}
    write_json(done, summary)
    ctx.path("checkpoints", f"task-{region_key}.pt").unlink(missing_ok=True)
    return summary


def _tune_task(spec_doc: dict, run_dir: str, dataset_path: str | None, cache_dir: str, region_key: str,
               hidden: int | None, threads: int | None = None) -> dict:
    """Ray task body: a fresh context over the same run folder."""
    from slimformer.contracts.spec import JobSpec

    ctx = RunContext(JobSpec.model_validate(spec_doc), Path(run_dir), use_ray=False, dataset_path=dataset_path,
                     cache_dir=Path(cache_dir))
    return tune_region(ctx, region_key, hidden, threads)


def stage_task(ctx: RunContext) -> dict[str, Any]:
    if ctx.plan.task.steps <= 0:
        return {"skipped": True, "regions": []}
    compute_teacher_logits(ctx)
    if ctx.spec.search.fewshot_splits:
        regions = [(r.key(), r.hidden) for r in sorted(fewshot_regions(ctx.space), key=lambda r: -(r.hidden or 0))]
    else:
        regions = [("all", None)]
    if not ctx.use_ray:
        results = []
        for i, (key, hidden) in enumerate(regions):
            ctx.reporter.progress("task", i / len(regions), f"tuning {key}")
            results.append(tune_region(ctx, key, hidden))
            ctx.reporter.check_cancelled()
    else:
        import ray

        remote = ray.remote(num_cpus=ctx.plan.task.threads, num_gpus=ray_gpus_per_task(), max_retries=2,
                            retry_exceptions=True)(_tune_task)
        args = (ctx.spec.model_dump(), str(ctx.run_dir), ctx.dataset_path, str(ctx.cache_dir))
        # Largest regions first: the longest start first (a leftover given every core runs before them).
        finished: list[int] = []

        def submit(i: int, threads: int):
            key, hidden = regions[i]
            return remote.options(num_cpus=threads).remote(*args, key, hidden, threads)

        def on_done(i: int, _result: dict) -> None:
            finished.append(i)
            ctx.reporter.progress("task", len(finished) / len(regions), f"{len(finished)}/{len(regions)} regions tuned")

        results = run_tasks(submit, len(regions), ctx.plan.task.threads, on_done, ctx.reporter.check_cancelled)
    summary = {"regions": sorted(results, key=lambda r: r["region"])}
    write_json(ctx.path("task.json"), summary)
    return summary
