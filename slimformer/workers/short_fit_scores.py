"""Short-fit scores for a run's finalist pool: one Ray task per core, kept in the run folder.

`supernet/short_fit.py` says what a short-fit score is and why. Here it is computed for the archs the
search stage picks finalists from, in one task per core, each fitting its share of the archs with one
context. A fit takes seconds: stop 22's 28 archs took 187 s on 2 cores as a task each (every one
loading the teacher and supernets anew) and 174 s as two tasks, with the same scores. They are
written to `short_fit.json` per step count once the call's fits are in, so a resumed stage (or the
quality benchmark, asking again for the same archs) never fits an arch twice. The file is not keyed
by the supernet's weights: a run folder's task stage writes them once, and a later stage never
changes them.
"""

from __future__ import annotations

from typing import Any

from slimformer.search_space import Arch
from slimformer.supernet.device import ray_gpus_per_task
from slimformer.supernet.task_score import TaskScore
from slimformer.workers.context import RunContext, read_json, write_json

FILE = "short_fit.json"


def _fit_all(ctx: RunContext, archs: list[Arch], steps: int) -> list[dict[str, Any]]:
    """Short-fit scores of `archs` in order, sharing one scorer and one load of the teacher's logits."""
    from slimformer.supernet.short_fit import short_fit_score

    targets = ctx.distillation_targets()
    scorer = ctx.held_out_scorer()
    return [short_fit_score(ctx.routed_supernet(a), a, ctx.task.labels, ctx.teacher, ctx.eval_task.train, scorer,
                            ctx.finetune_settings(a), steps, targets["teacher_logits"],
                            targets["teacher_pooled"]).__dict__ for a in archs]


def _fit_task(spec_doc: dict, run_dir: str, dataset_path: str | None, cache_dir: str, arch_docs: list[dict],
              steps: int) -> list[dict[str, Any]]:
    """Ray task body: a fresh context over the same run folder (as finalize's `_train_task`), built once
    for a share of the archs: a fit takes seconds, and a context loads the teacher and the supernets."""
    from pathlib import Path

    from slimformer.contracts.spec import JobSpec

    ctx = RunContext(JobSpec.model_validate(spec_doc), Path(run_dir), use_ray=False, dataset_path=dataset_path,
                     cache_dir=Path(cache_dir))
    return _fit_all(ctx, [ctx.space.parse(doc) for doc in arch_docs], steps)


def short_fit_scores(ctx: RunContext, archs: list[Arch], steps: int | None = None) -> dict[str, TaskScore]:
    """arch hash -> its short-fit score, for every arch in `archs` (cached in the run folder).

    `steps` defaults to the plan's `short_fit_steps`; scores of another step count are not reused.
    """
    steps = ctx.plan.short_fit_steps if steps is None else steps
    path = ctx.path(FILE)
    doc = read_json(path) if path.exists() else {}
    done: dict[str, dict] = doc.get(str(steps), {})
    todo = list({a.hash: a for a in archs if a.hash not in done}.values())
    if todo:
        if ctx.use_ray:
            import ray

            threads = ctx.plan.finetune.threads
            remote = ray.remote(num_cpus=threads, num_gpus=ray_gpus_per_task(), max_retries=2,
                                retry_exceptions=True)(_fit_task)
            args = (ctx.spec.model_dump(), str(ctx.run_dir), ctx.dataset_path, str(ctx.cache_dir))
            # One task per slot the cluster has, each fitting every n-th arch.
            n = max(1, min(len(todo), int(ray.cluster_resources().get("CPU", 1)) // threads))
            shares = [todo[i::n] for i in range(n)]
            fitted = ray.get([remote.remote(*args, [a.to_dict() for a in share], steps) for share in shares])
            by_hash = {a.hash: r for share, rs in zip(shares, fitted, strict=True)
                       for a, r in zip(share, rs, strict=True)}
            results = [by_hash[a.hash] for a in todo]
        else:
            results = _fit_all(ctx, todo, steps)
        done.update({a.hash: r for a, r in zip(todo, results, strict=True)})
        write_json(path, {**doc, str(steps): done})
    return {a.hash: TaskScore(**done[a.hash]) for a in archs}
