"""Factorised twins of fine-tuned finalists: each plain finalist's word table at rank r, distilled from it.

A twin lives in the run folder as any finalist does (candidates/<twin hash>/trained, trained.json), so
`export_and_measure` exports and measures it the same way. It is trained from the plain finalist's
`trained` folder (supernet/factorise_student.py), with the finalists' recipe for the twin's arch and
the job's SVD rows and occurrence weights. One Ray task per twin, one core each, as finalists run.
Idempotent: a twin whose `trained.json` exists is read, not trained again.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from slimformer.search_space import Arch
from slimformer.supernet.timing import torch_threads
from slimformer.workers.context import RunContext, read_json, write_json
from slimformer.workers.fanout import run_tasks
from slimformer.workers.finalist_export import export_finalist, fit_metrics


def twin_arch(ctx: RunContext, original: Arch, rank: int) -> Arch:
    """`original` with its word table at `rank`, checked against the job's space."""
    return ctx.space.parse(replace(original, embedding_rank=rank).to_dict())


def twin_base(ctx: RunContext, factorised: Arch) -> Arch:
    """The full-rank arch a factorised one is distilled from: the same blocks with the plain word table."""
    return ctx.space.parse(replace(factorised, embedding_rank=None).to_dict())


def twin_pairs(ctx: RunContext, archs: list[Arch]) -> list[tuple[str, int]]:
    """(finalist hash, rank) for every twin the plan asks for: each full-rank finalist at the space's
    `plan.embedding_twins` largest ranks below its H (a rank must save something: space.ranks_at).
    A twin that is a finalist already (the search picked that factorised arch itself) is not made twice."""
    n = ctx.plan.embedding_twins
    if n <= 0 or not ctx.space.embedding_ranks:
        return []
    finalists, pairs = {arch.hash for arch in archs}, []
    for arch in archs:
        if arch.embedding_rank is None:
            ranks = sorted(r for r in ctx.space.ranks_at(arch.hidden) if r is not None)[-n:]
            pairs += [(arch.hash, r) for r in ranks if twin_arch(ctx, arch, r).hash not in finalists]
    return pairs


def train_twin(ctx: RunContext, original_hash: str, rank: int, seed: int | None = None,
               threads: int | None = None) -> dict[str, Any]:
    """Factorise the fine-tuned finalist `original_hash` at `rank`, distil the twin from it, save and export it.

    `seed` (default: the plan's): the original trained with that seed (`train_finalist`'s
    `<hash>-seed<n>` folder) and the twin distilled with it, in a seed folder too, only trained
    (benchmarks compare seeds; they never ship one)."""
    from slimformer.supernet.export import save_subnet
    from slimformer.supernet.factorise_student import FACTOR_LR, distil_factorised
    from slimformer.supernet.load import load_subnet

    def folder_of(arch_hash: str) -> Path:
        return ctx.path("candidates", arch_hash if seed is None else f"{arch_hash}-seed{seed}")

    student, tokenizer, _ = load_subnet(folder_of(original_hash) / "trained")
    arch = twin_arch(ctx, student.arch, rank)
    folder = folder_of(arch.hash)
    done = folder / "trained.json"
    if done.exists():
        record = read_json(done)
        if record.get("twin_of") != original_hash:  # the same arch, trained another way for something else
            raise RuntimeError(f"{folder}: holds a model of the twin's arch that is not {original_hash}'s twin "
                               f"(twin_of {record.get('twin_of')}); move it away to distil the twin")
        return record
    settings = replace(ctx.finetune_settings(arch), lr=FACTOR_LR)  # the finalists' schedule, the factors' lr
    if threads is not None:  # the task's share of the cores (workers/fanout.py)
        settings = replace(settings, threads=threads)
    if seed is not None:
        settings = replace(settings, seed=seed)
    rows, weights = ctx.svd_rows_and_weights(student.config.vocab_size)
    task = ctx.eval_task
    with torch_threads(settings.threads):
        twin, result = distil_factorised(student, rank, tokenizer, task.train, task.dev, task.test, settings,
                                         rows, weights)
    save_subnet(twin, tokenizer, folder / "trained")
    record = {"hash": arch.hash, "twin_of": original_hash, "embedding_rank": rank, "distilled_from": "finalist",
              "trained": "word factors", "lr": settings.lr,
              "dev_accuracy": result.dev_accuracy, "test_accuracy": result.test_accuracy,
              "finetune_seconds": round(result.seconds, 2), "finetune_steps": result.steps,
              "best_step": result.best_step, "dev_history": result.dev_history,
              "finetune_rows": settings.max_train_examples or len(task.train), "finetune_epochs": settings.epochs,
              "finetune_threads": settings.threads,
              "fit_metrics": fit_metrics(ctx, result.dev_predictions, result.test_predictions)}
    write_json(done, record)
    if seed is None:
        with torch_threads(settings.threads):
            export_finalist(ctx, arch, record, settings.threads)
    return record


def _twin_task(spec_doc: dict, run_dir: str, dataset_path: str | None, cache_dir: str, original_hash: str,
               rank: int, seed: int | None = None, threads: int | None = None) -> dict:
    """Ray task body: a fresh context over the same run folder, on the cores the task was given."""
    from slimformer.contracts.spec import JobSpec

    ctx = RunContext(JobSpec.model_validate(spec_doc), Path(run_dir), use_ray=False, dataset_path=dataset_path,
                     cache_dir=Path(cache_dir))
    return train_twin(ctx, original_hash, rank, seed, threads)


def train_twins(ctx: RunContext, pairs: list[tuple[str, int]], seed: int | None = None) -> list[dict[str, Any]]:
    """`train_twin` for every (finalist hash, rank), one Ray task each when the context uses Ray."""
    if not ctx.use_ray:
        return [train_twin(ctx, original, rank, seed) for original, rank in pairs]
    import ray

    from slimformer.supernet.device import ray_gpus_per_task

    remote = ray.remote(num_cpus=ctx.plan.finetune.threads, num_gpus=ray_gpus_per_task(), max_retries=2,
                        retry_exceptions=True)(_twin_task)
    args = (ctx.spec.model_dump(), str(ctx.run_dir), ctx.dataset_path, str(ctx.cache_dir))

    def submit(i: int, threads: int):  # one twin alone: on every core
        original, rank = pairs[i]
        return remote.options(num_cpus=threads).remote(*args, original, rank, seed, threads)

    return run_tasks(submit, len(pairs), ctx.plan.finetune.threads)
