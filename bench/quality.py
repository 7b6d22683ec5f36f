"""Quality benchmark: is the model slimformer hands over better than what a user gets without it?

One run of the default preset on MiniLM-L6 + Rotten Tomatoes, on this machine. Writes
bench/results/quality.json and bench/results/quality.png:

  teacher          dev/test accuracy, latency, params, its own training time, a frozen-embedding LR beside it
  found[]          the job's finalists: measured latency, dev/test accuracy (whole splits), speed-up, origin
                   (the search's own pick, or "layer_dropped": a plain cut of the teacher the job always keeps)
  baselines        tfidf_lr; truncated[] (first k layers, k = 1..L-1) and every_other[], fine-tuned with
                   the finalists' recipe from the teacher's own weights; random[]: plain random search
                   with the same number of trials and scorer, finalists fine-tuned the same way
  ranking          >= 12 archs spread over the latency range, each fine-tuned with the finalist recipe
                   and 2 seeds, judged on the whole dev split: Kendall tau of the task-aware score, the
                   block-wise proxy and the parameter count, with 95% bootstrap intervals
  comparator       CTNAS comparator trained on the task-aware scores: held-out pairwise accuracy, and
                   the evaluations CTNAS saves to reach NSGA-II's hypervolume
  job_seconds      the job in total and per stage (teacher cached), targets and whether each is met;
                   each per-k margin over a cut with its paired 95% interval (bench/quality_margins.py)

Latencies of the found models, the baselines and the teacher (as a SubNet, the same code path) are
measured together in interleaved rounds at the end, so machine drift moves them all alike.

    .venv/bin/python bench/quality.py [--ranking-archs 12] [--ranking-seeds 2] [--run-dir runs/bench-quality]
                                      [--carry-ranking bench/results/quality.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from environment import environment  # noqa: E402
from quality_margins import attach, margin_intervals  # noqa: E402
from quality_parts import (  # noqa: E402
    carried_ranking,
    comparator_figures,
    layer_baselines,
    measure_together,
    plot,
    ranking_figures,
    targets,
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", default="runs/bench-quality")
    parser.add_argument("--ranking-archs", type=int, default=12)
    parser.add_argument("--ranking-seeds", type=int, default=2)
    parser.add_argument("--carry-ranking", metavar="QUALITY_JSON",
                        help="copy `ranking` from an earlier results file instead of measuring it again "
                             "(marked `carried_from`); for a run that changes nothing the ranking measures")
    parser.add_argument("--out", default=str(HERE / "results" / "quality.json"))
    parser.add_argument("--teacher", default="minilm-l6")
    parser.add_argument("--dataset", default="rotten-tomatoes")
    parser.add_argument("--preset", default="quick", help="the default preset unless told otherwise")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    from slimformer.baselines import frozen_embedding_logistic_regression, tfidf_logistic_regression
    from slimformer.contracts.spec import JobSpec
    from slimformer.search.budgets import Budgets
    from slimformer.search.finalists import choose_finalists
    from slimformer.search.strategies import run_search
    from slimformer.supernet.teacher import load_teacher
    from slimformer.workers.context import RunContext, read_json
    from slimformer.workers.pipeline import run_job
    from slimformer.workers.progress import ConsoleReporter
    from slimformer.workers.ray_runtime import init_ray, shutdown_ray
    from slimformer.workers.stages.finalize import export_and_measure, train_chosen
    from slimformer.workers.stages.search import make_task_evaluator, short_fit_pool

    walls: dict[str, float] = {}
    t0 = time.perf_counter()
    run_dir = Path(args.run_dir)
    spec = JobSpec(name="bench-quality", preset=args.preset, teacher=args.teacher, dataset=args.dataset)
    init_ray(num_cpus=os.cpu_count())
    import ray

    import slimformer

    # Ray workers import slimformer from disk: say which copy, so a run from a worktree is checkable.
    print("driver imports", slimformer.__file__, "workers import",
          ray.get(ray.remote(lambda: __import__("slimformer").__file__).remote()), flush=True)
    try:
        # --- the job, as a user runs it (teacher from the cache when it was trained before) -----
        ctx = RunContext(spec, run_dir, ConsoleReporter(), use_ray=True)
        teacher = ctx.teacher  # trains and caches the teacher the first time
        walls["teacher_load"] = round(time.perf_counter() - t0, 1)
        results = run_job(spec, run_dir, ConsoleReporter(), use_ray=True)
        ctx = RunContext(spec, run_dir, ConsoleReporter(), use_ray=True)
        space, task = ctx.space, ctx.task
        main_search = read_json(run_dir / "search.json")
        objectives, reference = tuple(main_search["objectives"]), tuple(main_search["reference"])

        # --- classical and frozen baselines ---------------------------------------------------
        t = time.perf_counter()
        tfidf = tfidf_logistic_regression(task.train, task.dev, task.test, seed=spec.seed)
        encoder, tokenizer, _ = load_teacher(spec.teacher)
        frozen = frozen_embedding_logistic_regression(encoder, tokenizer, task.train, task.dev, task.test,
                                                      teacher.max_length, seed=spec.seed)
        walls["baseline_classical"] = round(time.perf_counter() - t, 1)

        # --- truncated and every-other-layer teachers, the finalists' recipe --------------------
        t = time.perf_counter()
        n_layers = teacher.facts.num_layers
        layer_sets = {f"first{k}": list(range(k)) for k in range(1, n_layers)}
        layer_sets.update({"every_other_0": list(range(0, n_layers, 2)), "every_other_1": list(range(1, n_layers, 2))})
        layered = layer_baselines(ctx, layer_sets)
        walls["baseline_layers"] = round(time.perf_counter() - t, 1)

        # --- random search: same trials, same scorer, finalists fine-tuned the same way --------
        t = time.perf_counter()
        with make_task_evaluator(ctx) as evaluator:
            random_res = run_search(space, evaluator, Budgets.of(spec.budgets), ctx.latency_table(),
                                    ctx.latency_setting, strategy="random", trials=ctx.plan.trials, seed=spec.seed,
                                    storage_url=ctx.optuna_storage_url, study_name="bench-random",
                                    objectives=objectives, reference=reference, seed_archs=())
        # Random search's pool is re-ranked by short fits too, as the job's is: the same choice, other trials.
        random_pool = (short_fit_pool(ctx, random_res.trials, set(), [])[0] if ctx.plan.short_fit_steps
                       else random_res.trials)
        random_archs = [space.parse(r.arch) for r in choose_finalists(random_pool, ctx.plan.finalists)]
        random_records = export_and_measure(ctx, random_archs, train_chosen(ctx, random_archs))
        walls["baseline_random"] = round(time.perf_counter() - t, 1)

        # --- comparator on the task-aware scores -------------------------------------------------
        t = time.perf_counter()
        comparator_doc = comparator_figures(ctx, main_search, objectives, reference)
        walls["comparator"] = round(time.perf_counter() - t, 1)

        # --- ranking: task-aware score vs fine-tuned dev accuracy, 2 seeds ------------------------
        t = time.perf_counter()
        if args.carry_ranking:
            ranking = carried_ranking(Path(args.carry_ranking))
        else:
            ranking = ranking_figures(ctx, main_search, args.ranking_archs, args.ranking_seeds)
        walls["ranking"] = round(time.perf_counter() - t, 1)

        # --- every latency measured together ------------------------------------------------------
        t = time.perf_counter()
        found_records = results["finalists"]
        measured = measure_together(ctx, [r["hash"] for r in found_records], [r["hash"] for r in random_records],
                                    list(layered))
        walls["latency"] = round(time.perf_counter() - t, 1)
    finally:
        shutdown_ray()

    t_doc = results["teacher"]
    teacher_ms = measured["teacher"]

    def figures(latency_ms, rec):
        return {"latency_ms": latency_ms, "dev_accuracy": rec["dev_accuracy"], "test_accuracy": rec["test_accuracy"],
                "speedup": teacher_ms / latency_ms}

    doc = {
        "preset": args.preset,
        "teacher_name": Path(args.teacher).name,
        "dataset": Path(args.dataset).name,
        "latency_setting": spec.latency.model_dump(),
        "teacher": {"dev_accuracy": t_doc["dev_accuracy"], "test_accuracy": t_doc["test_accuracy"],
                    "latency_ms": teacher_ms, "latency_hf_ms": t_doc["latency_ms"], "params": t_doc["params"],
                    "train_seconds": teacher.meta.get("seconds"), "epochs_run": teacher.meta.get("epochs_run"),
                    "dev_history": teacher.meta.get("dev_history"), "max_length": teacher.max_length,
                    "frozen_lr_dev_accuracy": frozen.dev_accuracy, "frozen_lr_test_accuracy": frozen.test_accuracy,
                    "frozen_lr_latency_ms": frozen.latency_ms,
                    "eval_examples": {"dev": len(task.dev), "test": len(task.test)}},
        "found": [{"hash": r["hash"], "arch": r["short"], "params": r["params"], "origin": r.get("origin"),
                   "reference": r.get("reference"), "latency_job_ms": r["latency_ms"],
                   **figures(measured["found"][r["hash"]], r)}
                  for r in found_records],
        "baselines": {
            "tfidf_lr": {"dev_accuracy": tfidf.dev_accuracy, "test_accuracy": tfidf.test_accuracy,
                         "latency_ms": tfidf.latency_ms, "fit_seconds": tfidf.fit_seconds},
            "truncated": [{"layers": len(v["layers"]), "params": v["params"],
                           **figures(measured["layers"][name], v)}
                          for name, v in layered.items() if name.startswith("first")],
            "every_other": [{"layers": v["layers"], "params": v["params"], **figures(measured["layers"][name], v)}
                            for name, v in layered.items() if name.startswith("every_other")],
            "random": [{"hash": r["hash"], "arch": r["short"], "params": r["params"],
                        **figures(measured["random"][r["hash"]], r)} for r in random_records],
        },
        "ranking": ranking,
        "comparator": comparator_doc,
        "search": {k: main_search.get(k) for k in ("strategy", "scorer", "evaluations", "hypervolume", "seconds",
                                                    "short_fit_steps")},
        "job_seconds": {"total": round(sum(v for v in results["stage_seconds"].values() if v), 1),
                        **results["stage_seconds"]},
        "bench_seconds": {**walls, "total": round(time.perf_counter() - t0, 1)},
        "command": "python bench/quality.py " + " ".join(sys.argv[1:]),
        "environment": environment(),
    }
    doc["targets"] = targets(doc)
    attach(doc, margin_intervals(ctx, doc))  # paired 95% intervals beside the per-k margins
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2))
    (out.parent / "quality.png").write_bytes(plot(doc))
    print(json.dumps({k: doc[k] for k in ("teacher", "targets", "job_seconds")}, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
