"""Stage `finalize`: fine-tune and export the chosen candidates in parallel, then time them together.

Finalists are independent, so each is one Ray task that rebuilds what it needs from the run
folder (task data, cached task teacher, the teacher's logits, the routed task-tuned sub-supernet),
fine-tunes, exports, measures the accuracy of its ONNX files (`workers/finalist_export.py`) and
writes its results before returning; a retried or repeated task finds `trained.json`,
`export.json` and `variant_accuracy.json` and does not redo them. Every finalist starts from its shared
weights and is fine-tuned to convergence (early stopping on dev, best state kept) with the same
recipe every baseline gets; a factorised one is distilled from its full-rank self fine-tuned so
(`train_chosen`), as are the embedding twins of full-rank finalists (`workers/embedding_twins.py`).
Latency is measured afterwards in the driver, one model at a time in interleaved rounds, because
timing a model while other tasks train on the same cores would measure the contention.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from slimformer.search_space import Arch, count_params, estimate_memory
from slimformer.supernet.device import ray_gpus_per_task
from slimformer.supernet.extract import extract
from slimformer.supernet.finetune import finetune_subnet, subnet_bridges
from slimformer.supernet.model_timing import measure_models_latency, measure_onnx_models_latency
from slimformer.supernet.timing import torch_threads
from slimformer.workers.context import RunContext, read_json, write_json
from slimformer.workers.embedding_twins import train_twin, twin_arch, twin_base, twin_pairs
from slimformer.workers.fanout import run_tasks
from slimformer.workers.finalist_export import export_finalist, fit_metrics, shipped_model
from slimformer.workers.references import write_card_comparison
from slimformer.workers.variants import measure_variants, offered_variants, update_folder_metrics, variant_summary

# Beside accuracy, per finalist: macro-F1 and per-class precision/recall on the same dev/test rows, of the
# exported fp32 model (workers/variants.py), as its accuracy is.
CLASS_METRICS = ("dev_macro_f1", "test_macro_f1", "dev_per_class", "test_per_class")


def stage_finalize(ctx: RunContext) -> dict[str, Any]:
    """Fine-tune the chosen candidates in parallel, then export and measure each of them."""
    chosen = read_json(ctx.path("chosen.json"))
    archs = [ctx.space.parse(item["arch"]) for item in chosen]
    # Factorised twins of the full-rank finalists, each distilled in its finalist's task once it is trained.
    pairs = twin_pairs(ctx, archs)
    trained = train_chosen(ctx, archs, twins=pairs)
    # Where each finalist came from: the search's own pick, or a plain cut of the teacher kept as a reference.
    origins = [{"origin": item.get("source"), **({"reference": item["reference"]} if item.get("reference") else {})}
               for item in chosen]
    if pairs:
        by_hash = {arch.hash: (arch, origin.get("reference") or arch.short())
                   for arch, origin in zip(archs, origins, strict=True)}
        for original, rank in pairs:
            arch, name = by_hash[original]
            archs.append(twin_arch(ctx, arch, rank))
            origins.append({"origin": "embedding_twin", "twin_of": original,
                            "reference": f"{name}, word table at rank {rank}"})
    records = export_and_measure(ctx, archs, trained, origins)
    limits = ctx.spec.budgets.model_dump(exclude_none=True)
    for record in records:
        apply_budgets(record, limits, ctx.latency_setting.runtime)
        if not record["within_budget"]:
            violations = record["budget_violations"].items()
            over = ", ".join(f"{axis} {value:.4g} > {limits[axis]:g}" for axis, value in violations)
            ctx.reporter.event(f"finalist {record['hash']} measured over budget ({over}; predicted latency "
                               f"{record['predicted_latency_ms']:.4g} ms): kept, but not offered as a result")
        write_card_comparison(ctx.run_dir, record, ctx.latency_setting.threads)  # teacher and baseline beside it
        ctx.reporter.candidate(record)
    write_json(ctx.path("finalists.json"), records)
    return {"finalists": len(records)}


def train_chosen(ctx: RunContext, archs: list[Arch], seed: int | None = None,
                 twins: list[tuple[str, int]] = ()) -> list[dict[str, Any]]:
    """Fine-tune every chosen arch (`train_finalists`); a factorised one as the twin of its full-rank self.

    Fine-tuned from the shared weights, where its word table is the SVD of the supernet's, a factorised
    pick trained badly: the H192 rank-128 pick of the stop-23 quality job scored 0.751 test. The
    same blocks with the full table fine-tuned first, then the table factorised and only its factors
    distilled from that model (`embedding_twins.train_twin`), scored 0.794. The full-rank model is an
    intermediate here, trained beside the other finalists and kept in its candidate folder, not a
    finalist. The pick is distilled in its base's own task, right after the base: as a wave of its own
    after every fine-tune, the stop-29 quality job's one twin ran alone on one core for 50 s. A
    factorised arch already trained from shared weights (a run resumed across this change) keeps its
    model. `seed`: as `train_finalists`' (seed folders, trained only). `twins`: (finalist hash, rank)
    of embedding twins (`embedding_twins.twin_pairs`), distilled the same way in their finalists' tasks.

    Returns:
        one `trained.json` record per arch, in order, then one per twin.
    """
    def trained_before(arch: Arch) -> bool:
        return ctx.path("candidates", arch.hash if seed is None else f"{arch.hash}-seed{seed}",
                        "trained.json").exists()

    twinned = [a for a in archs if a.embedding_rank is not None and not trained_before(a)]
    bases = {a.hash: twin_base(ctx, a) for a in twinned}
    direct = [a for a in archs if a.hash not in bases]
    extra = list({b.hash: b for b in bases.values() if b.hash not in {a.hash for a in direct}}.values())
    twins_of: dict[str, list[int]] = {}
    for original, rank in [(bases[a.hash].hash, a.embedding_rank) for a in twinned] + list(twins):
        twins_of.setdefault(original, []).append(rank)
    # Archs that twins are distilled from first: each is two fits in one task, and a fan-out's last task
    # is the one that may take the idle cores (fanout.py), which should be a slow plain finalist that
    # gains from a second thread, not an H128 chain (1.25x). Last, a chain may also run alone: in the
    # stop-32 rerun of the quality job (8 tasks, one wave each) the H128 base and its twin ended the
    # stage 36 s after the other core had gone idle.
    order = sorted(direct + extra, key=lambda a: a.hash not in twins_of)
    fits = dict(zip([a.hash for a in order], train_finalists(ctx, order, seed, twins_of), strict=True))
    # Distilled by their bases' tasks: here each only reads its record.
    fits.update({a.hash: train_twin(ctx, bases[a.hash].hash, a.embedding_rank, seed) for a in twinned})
    return [fits[a.hash] for a in archs] + [train_twin(ctx, original, rank, seed) for original, rank in twins]


def apply_budgets(record: dict[str, Any], limits: dict[str, float], runtime: str) -> None:
    """Set each variant's and the finalist's `budget_violations` / `within_budget` from measured figures.

    A finalist is within budget when a variant the job's runtime serves is: for onnxruntime the
    int8 variant may meet a latency or memory budget its fp32 model misses. The finalist's own
    `budget_violations` are its fp32 model's.
    """
    for variant in record.get("variants", {}).values():
        variant["budget_violations"] = measured_violations(variant, limits)
        variant["within_budget"] = not variant["budget_violations"]
    record["budget_violations"] = measured_violations(record, limits)
    offered = [record.get("variants", {}).get(v) for v in offered_variants(record, runtime)]
    record["within_budget"] = not record["budget_violations"] or any(v and v["within_budget"] for v in offered)


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


def train_finalist(ctx: RunContext, arch: Arch, seed: int | None = None, threads: int | None = None) -> dict[str, Any]:
    """Extract `arch` from its sub-supernet, fine-tune it with distillation, save it. Idempotent.

    `seed` (default: the plan's) re-runs the same recipe with another seed, in a folder of its own
    (benchmarks use it to see how much of a difference between two archs is seed noise). `threads`
    (default: the plan's) is the task's share of the cores (workers/fanout.py).
    """
    from slimformer.supernet.export import save_subnet

    folder = ctx.path("candidates", arch.hash if seed is None else f"{arch.hash}-seed{seed}")
    done = folder / "trained.json"
    if done.exists():
        return read_json(done)
    teacher, task = ctx.teacher, ctx.eval_task
    # The best state is the one with the best dev figure of the job's metric (macro-F1 on an imbalanced task);
    # cheaper archs see more examples (workers/finetune_budget.py).
    settings = ctx.finetune_settings(arch)
    if seed is not None:
        settings = replace(settings, seed=seed)
    if threads is not None:
        settings = replace(settings, threads=threads)
    supernet = ctx.routed_supernet(arch)
    student = extract(supernet, arch, ctx.task.labels)
    with torch_threads(settings.threads):
        result = finetune_subnet(
            student, teacher.model, teacher.tokenizer, task.train, task.dev, task.test, settings,
            bridges=subnet_bridges(supernet, arch.hidden), teacher_facts=teacher.facts, **ctx.distillation_targets(),
        )
    save_subnet(student, teacher.tokenizer, folder / "trained")
    record = {"hash": arch.hash, "dev_accuracy": result.dev_accuracy, "test_accuracy": result.test_accuracy,
              "finetune_seconds": round(result.seconds, 2), "finetune_steps": result.steps,
              "loss_first": result.loss_history[0] if result.loss_history else None,
              "loss_last": result.loss_history[-1] if result.loss_history else None,
              "best_step": result.best_step, "dev_history": result.dev_history,
              "finetune_rows": settings.max_train_examples or len(task.train), "finetune_epochs": settings.epochs,
              "finetune_threads": settings.threads,
              "fit_metrics": fit_metrics(ctx, result.dev_predictions, result.test_predictions)}
    write_json(done, record)
    return record


def train_and_export(ctx: RunContext, arch: Arch, seed: int | None = None, threads: int | None = None,
                     twin_ranks: tuple[int, ...] = ()) -> dict:
    """`train_finalist`, then (for the job's own seed) `export_finalist`: a finalist's whole share of the work
    that may run beside another's. A re-run seed is only trained: it is compared, never shipped. Then the
    factorised picks distilled from this arch, at `twin_ranks` (`train_chosen`)."""
    record = train_finalist(ctx, arch, seed, threads)
    if seed is None:
        with torch_threads(threads or ctx.plan.finetune.threads):
            export_finalist(ctx, arch, record, threads)
    for rank in twin_ranks:
        train_twin(ctx, arch.hash, rank, seed, threads)
    return record


def _train_task(spec_doc: dict, run_dir: str, dataset_path: str | None, cache_dir: str, arch_doc: dict,
                seed: int | None = None, threads: int | None = None, twin_ranks: tuple[int, ...] = ()) -> dict:
    """Ray task body: a fresh context over the same run folder, on the cores the task was given."""
    from slimformer.contracts.spec import JobSpec

    ctx = RunContext(JobSpec.model_validate(spec_doc), Path(run_dir), use_ray=False, dataset_path=dataset_path,
                     cache_dir=Path(cache_dir))
    return train_and_export(ctx, ctx.space.parse(arch_doc), seed, threads or ctx.plan.finetune.threads, twin_ranks)


def train_finalists(ctx: RunContext, archs: list[Arch], seed: int | None = None,
                    twins_of: dict[str, list[int]] | None = None) -> list[dict[str, Any]]:
    """Fine-tune (and, for the job's own seed, export) every finalist; on Ray one task each (retried up to
    twice on failure); tasks left over from full waves run first, on the cores they would leave idle (fanout.py).
    `twins_of`: arch hash -> ranks of factorised picks its task distils from it once it is trained."""
    twins_of = twins_of or {}
    if not ctx.use_ray:
        out = []
        for i, arch in enumerate(archs):
            ctx.reporter.progress("finalize", 0.8 * i / len(archs), f"fine-tuning {arch.hash}")
            out.append(train_and_export(ctx, arch, seed, twin_ranks=tuple(twins_of.get(arch.hash, ()))))
            ctx.reporter.check_cancelled()
        return out
    import ray

    remote = ray.remote(num_cpus=ctx.plan.finetune.threads, num_gpus=ray_gpus_per_task(), max_retries=2,
                        retry_exceptions=True)(_train_task)
    args = (ctx.spec.model_dump(), str(ctx.run_dir), ctx.dataset_path, str(ctx.cache_dir))
    finished: list[int] = []

    def submit(i: int, threads: int):
        return remote.options(num_cpus=threads).remote(*args, archs[i].to_dict(), seed, threads,
                                                       tuple(twins_of.get(archs[i].hash, ())))

    def on_done(i: int, _record: dict) -> None:
        finished.append(i)
        ctx.reporter.progress("finalize", 0.8 * len(finished) / len(archs), f"{len(finished)}/{len(archs)} fine-tuned")

    return run_tasks(submit, len(archs), ctx.plan.finetune.threads, on_done, ctx.reporter.check_cancelled)


def export_and_measure(ctx: RunContext, archs: list[Arch], trained: list[dict[str, Any]],
                       origins: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Export every finalist (safetensors, ONNX, int8) and measure torch and onnxruntime latency.

    The export and the ONNX files' accuracy were made by each finalist's own task
    (`workers/finalist_export.py`); `export_finalist` reads them, or makes them here for a folder
    trained without. `origins` (one per arch) are merged into the records as they are: `origin`
    and `reference`.
    """
    setting = ctx.latency_setting
    models, exports, accuracies = [], [], []
    for arch, fit in zip(archs, trained, strict=True):
        exported, accuracy = export_finalist(ctx, arch, fit)
        models.append(shipped_model(ctx, ctx.path("candidates", arch.hash, "trained"), with_tokenizer=False)[0])
        exports.append(exported)
        accuracies.append(accuracy)
    ctx.reporter.progress("finalize", 0.85, "measuring latency")
    started = time.perf_counter()
    torch_ms, rechecked = _measure_with_recheck(ctx, models)
    onnx_paths = [Path(e["folder"]) / "model.onnx" for e in exports]
    ort_ms = measure_onnx_models_latency(onnx_paths, setting, vocab_size=models[0].config.vocab_size)
    int8_ms = measure_onnx_models_latency([Path(e["folder"]) / "model.int8.onnx" for e in exports], setting,
                                          vocab_size=models[0].config.vocab_size)
    records = []
    for i, (arch, fit, exported) in enumerate(zip(archs, trained, exports, strict=True)):
        measured = torch_ms[i] if setting.runtime == "torch" else ort_ms[i]
        mem = estimate_memory(arch, ctx.space, setting.batch, setting.seq_len)
        params = count_params(arch, ctx.space)
        assert params == models[i].num_params(), "cost.count_params disagrees with the exported model"
        # This run's own folder (export.json names the folder where it was first exported).
        own_folder = ctx.path("candidates", arch.hash, "model")
        variants = measure_variants(ctx, arch, accuracies[i], measured, int8_ms[i])
        # The figures of what is downloaded: the exported fp32 model with its own tokenizer.
        fit = {**fit, **{k: variants["fp32"].get(k) for k in ("dev_accuracy", "test_accuracy", *CLASS_METRICS)}}
        records.append({
            "hash": arch.hash, "arch": arch.to_dict(), "short": arch.short(), "params": params,
            "memory_mb": round(mem.total_mb, 3), "dev_accuracy": fit["dev_accuracy"],
            "test_accuracy": fit["test_accuracy"], **{k: fit.get(k) for k in CLASS_METRICS},
            "latency_ms": measured, "latency_torch_ms": torch_ms[i],
            "latency_onnx_ms": ort_ms[i], "latency_onnx_int8_ms": int8_ms[i],
            "predicted_latency_ms": ctx.predicted_latency(arch),
            "predicted_latency_rechecked_ms": rechecked.predict(arch) if rechecked is not None else None,
            "size_bytes": exported["sizes"], "folder": exported["folder"],
            "finetune_seconds": fit["finetune_seconds"], "state": "exported",
            **variant_summary(ctx, variants, ort_ms[i], trained[i]), **(origins[i] if origins else {}),
        })
        update_folder_metrics(own_folder, records[-1])
    ctx.reporter.event(f"measured {len(records)} finalists in {time.perf_counter() - started:.1f} s")
    return records


def _measure_with_recheck(ctx: RunContext, models: list[Any]) -> tuple[list[float], Any]:
    """Torch latency of `models`, measured in the same rounds as the latency table's check archs.

    The table was checked against whole models when the search used it (`check_against_models`);
    refitting its scale on the same check archs measured alongside the finalists gives a
    prediction for the machine as it runs *now*. A finalist far from its search-time prediction
    but close to the rechecked one was moved by the machine's speed, not mispredicted.

    Returns:
        (ms per model, the rechecked table or None when the job's runtime is not torch).
    """
    from slimformer.search_space.latency import LatencyTable
    from slimformer.supernet.latency_build import calibration_models
    from slimformer.supernet.model_timing import ModelTimer
    from slimformer.supernet.timing import run_rounds

    setting = _torch_setting(ctx.latency_setting)
    if ctx.latency_setting.runtime != "torch":
        return measure_models_latency(models, setting), None
    table = ctx.latency_table()
    check, check_models = calibration_models(ctx.space)  # what check_against_models timed
    timer = ModelTimer(models + check_models, setting)
    run_rounds([timer], setting.threads, repeats=30)
    measured = timer.latencies()
    rechecked = LatencyTable.from_dict(table.to_dict())
    rechecked.calibrate(zip(check, measured[len(models):], strict=True), fit_offset=False)
    ctx.reporter.event(f"latency table re-checked while measuring the finalists: scale {rechecked.scale:.3f} "
                       f"(when the search stage checked it: {table.scale:.3f})")
    return measured[: len(models)], rechecked


def _torch_setting(setting):
    from dataclasses import replace

    return replace(setting, runtime="torch")
