"""Search benchmark on the real teacher and Rotten Tomatoes: does the search find better models than
simple baselines, and are its parts (proxy, few-shot split, comparator) worth their cost?

One run, one machine. Writes bench/results/search.json and bench/results/pareto.png:
  teacher      dev/test accuracy, latency, params of the task teacher
  ranking      Kendall tau between the proxy and fine-tuned dev accuracy over >= 10 archs,
               for one-shot and few-shot routing
  comparator   pairwise accuracy of the CTNAS comparator on held-out pairs of scored candidates,
               and the proxy evaluations it saves to reach the same hypervolume as NSGA-II
  found[]      the finalists of the main search (NSGA-II, few-shot), fine-tuned and measured
  baselines    truncated[]: the teacher cut to its first k layers (k = 1..5), fine-tuned with the
               same distillation and epochs; random[]: plain random search (uniform samples, no
               anchors) with the same number of proxy evaluations, finalists fine-tuned the same way
  wall_seconds per stage

    .venv/bin/python bench/search.py [--preset quick] [--run-dir runs/bench-search]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import random
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def kendall(xs, ys) -> float:
    from scipy.stats import kendalltau

    return float(kendalltau(xs, ys).statistic)


def hv_curve(records, objectives, reference) -> list[float]:
    """Hypervolume of the feasible front after each proxy evaluation, in trial order."""
    from slimformer.search.pareto import hypervolume, pareto_front

    seen, points, curve = set(), [], []
    for r in sorted(records, key=lambda r: r.number):
        if r.proxy is None or not r.feasible or r.hash in seen:
            continue
        seen.add(r.hash)
        points.append(r.objective_values(objectives))
        front = [points[i] for i in pareto_front(points)]
        curve.append(hypervolume(front, reference))
    return curve


def truncated_teacher(teacher_model, layers: int):
    """The task teacher cut to its first `layers` encoder layers (classifier kept)."""
    model = copy.deepcopy(teacher_model)
    model.bert.encoder.layer = model.bert.encoder.layer[:layers]
    model.bert.config.num_hidden_layers = layers
    return model


def plot(doc: dict) -> bytes:
    """pareto.png of a search.json document: found models (front among those within budget) and baselines.

    `python -c "import json, sys; sys.path.insert(0, 'bench'); import search; ..."` can redraw it
    from a committed search.json without running anything.
    """
    from slimformer.plots import PlotPoint, ReferencePoint, render_pareto
    from slimformer.search.pareto import pareto_front

    found = doc["found"]
    offered = [i for i, f in enumerate(found) if f.get("within_budget", True)]
    front = {offered[j] for j in pareto_front([(-found[i]["test_accuracy"], found[i]["latency_ms"]) for i in offered])}
    points = [PlotPoint(f["hash"], f["latency_ms"], f["test_accuracy"], i in front) for i, f in enumerate(found)]
    t = doc["teacher"]
    refs = [ReferencePoint("teacher", t["latency_ms"], t["test_accuracy"], "*")]
    refs += [ReferencePoint("truncated teacher", b["latency_ms"], b["test_accuracy"], "s")
             for b in doc["baselines"]["truncated"]]
    refs += [ReferencePoint("random search", r["latency_ms"], r["test_accuracy"], "^")
             for r in doc["baselines"]["random"]]
    return render_pareto(points, "png", "slimformer search vs baselines (grey: off the front or over budget)",
                         "test accuracy", refs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="quick", choices=["tiny", "quick", "standard"])
    parser.add_argument("--run-dir", default="runs/bench-search")
    parser.add_argument("--ranking-archs", type=int, default=10)
    parser.add_argument("--finalists", type=int, default=6)
    parser.add_argument("--latency-budget", type=float, default=30.0,
                        help="ms at the job's shape (0: none); the truncated baselines span ~7-35 ms")
    parser.add_argument("--out", default=str(HERE / "results" / "search.json"))
    parser.add_argument("--teacher", default="minilm-l6", help="(smoke runs) another teacher folder")
    parser.add_argument("--dataset", default="rotten-tomatoes", help="(smoke runs) another data set")
    parser.add_argument("--corpus", default="news", help="distillation corpus; 'none' for task text only")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    import torch

    from slimformer.search.budgets import Budgets
    from slimformer.search.comparator import Comparator, pairwise_accuracy
    from slimformer.search.strategies import run_search
    from slimformer.search_space import count_params
    from slimformer.supernet.finetune import finetune_subnet
    from slimformer.supernet.profile import measure_module, torch_threads
    from slimformer.workers.context import RunContext, read_json
    from slimformer.workers.finalize import export_and_measure, train_finalists
    from slimformer.workers.pipeline import run_job
    from slimformer.workers.progress import ConsoleReporter
    from slimformer.workers.ray_runtime import init_ray, shutdown_ray
    from slimformer.workers.search_stage import make_evaluator, spread_along_front
    from slimformer.workers.spec import JobSpec
    from slimformer.workers.stages import latency_table

    walls: dict[str, float] = {}
    t0 = time.perf_counter()
    run_dir = Path(args.run_dir)
    spec = JobSpec(name="bench-search", preset=args.preset, teacher=args.teacher, dataset=args.dataset,
                   corpus=None if args.corpus == "none" else args.corpus,
                   search={"strategy": "nsga2", "finalists": args.finalists},
                   budgets={"latency_ms": args.latency_budget} if args.latency_budget else {})
    init_ray(num_cpus=os.cpu_count())
    try:
        results = run_job(spec, run_dir, ConsoleReporter(), use_ray=True)
        walls["job"] = round(time.perf_counter() - t0, 1)
        walls.update({f"job.{k}": v for k, v in results["stage_seconds"].items()})
        ctx = RunContext(spec, run_dir, ConsoleReporter(), use_ray=True)
        space, setting, table = ctx.space, ctx.latency_setting, latency_table(ctx)
        main_search = read_json(run_dir / "search.json")
        objectives = tuple(main_search["objectives"])
        reference = tuple(main_search["reference"])

        # --- ranking: proxy vs fine-tuned accuracy, one-shot and few-shot routing ----------------
        t = time.perf_counter()
        rng = random.Random(1)
        pool = sorted({a.hash: a for a in (space.sample(rng) for _ in range(400))}.values(),
                      key=lambda a: count_params(a, space))
        n = args.ranking_archs
        ranking_archs = [pool[round(i * (len(pool) - 1) / (n - 1))] for i in range(n)]
        # Second set: what the search actually has to rank - its own scored candidates, spread
        # evenly over their few-shot proxy (uniform samples of a 9^12 space are nearly all far
        # from the teacher and land in a narrow band of accuracy).
        searched = sorted({r["hash"]: r for r in main_search["trials"] if r["proxy"] is not None}.values(),
                          key=lambda r: r["proxy"])
        searched_archs = [space.parse(searched[round(i * (len(searched) - 1) / (n - 1))]["arch"]) for i in range(n)]
        searched_archs = list({a.hash: a for a in searched_archs}.values())

        def rank(archs):
            with make_evaluator(ctx, "oneshot") as one, make_evaluator(ctx, "fewshot") as few:
                one_shot = [one.score(a, "oneshot") for a in archs]
                few_shot = [few.score(a, "fewshot") for a in archs]
            dev = [r["dev_accuracy"] for r in train_finalists(ctx, archs)]
            return {
                "n": len(archs),
                "one_shot_tau": kendall([-p for p in one_shot], dev),
                "few_shot_tau": kendall([-p for p in few_shot], dev),
                "params_tau": kendall([count_params(a, space) for a in archs], dev),
                "archs": [{"hash": a.hash, "arch": a.short(), "params": count_params(a, space), "one_shot_proxy": o,
                           "few_shot_proxy": f, "dev_accuracy": d}
                          for a, o, f, d in zip(archs, one_shot, few_shot, dev, strict=True)],
            }

        ranking = {**rank(ranking_archs), "sampling": "uniform samples of the space, spread by parameters"}
        ranking["searched"] = {**rank(searched_archs),
                               "sampling": "the main search's scored candidates, spread by few-shot proxy"}
        walls["ranking"] = round(time.perf_counter() - t, 1)

        # --- comparator: held-out pairwise accuracy; evaluations saved for equal hypervolume ------
        t = time.perf_counter()
        from slimformer.search.study import TrialRecord

        scored = [TrialRecord(**r) for r in main_search["trials"]]
        scored = [r for r in scored if r.proxy is not None and r.feasible]
        by_hash = list({r.hash: r for r in scored}.values())
        random.Random(0).shuffle(by_hash)
        cut = int(len(by_hash) * 0.7)
        train_items = [(space.parse(r.arch), r.proxy) for r in by_hash[:cut]]
        held_out = [(space.parse(r.arch), r.proxy) for r in by_hash[cut:]]
        comparator = Comparator.for_space(space, seed=0)
        comparator.fit(train_items)
        budget = main_search["evaluations"]
        curves = {}
        with make_evaluator(ctx, "fewshot") as evaluator:
            for strategy in ("ctnas", "random"):
                res = run_search(space, evaluator, Budgets.of(spec.budgets), table, setting, strategy=strategy,
                                 trials=budget, seed=spec.seed, storage_url=ctx.optuna_storage_url,
                                 study_name=f"bench-{strategy}", objectives=objectives, reference=reference,
                                 # random: the plain baseline, uniform samples only
                                 seed_archs=space.anchors() if strategy == "ctnas" else ())
                curves[strategy] = (res, hv_curve(res.trials, objectives, reference))
        nsga_curve = hv_curve([TrialRecord(**r) for r in main_search["trials"]], objectives, reference)
        target = nsga_curve[-1] if nsga_curve else 0.0
        ctnas_curve = curves["ctnas"][1]
        reached = next((i + 1 for i, hv in enumerate(ctnas_curve) if hv >= target - 1e-12), None)
        comparator_doc = {
            "pairwise_accuracy": pairwise_accuracy(comparator, held_out),
            "train_candidates": len(train_items), "held_out_candidates": len(held_out),
            "nsga2_evaluations": len(nsga_curve), "nsga2_hypervolume": target,
            "ctnas_evaluations_to_reach": reached,
            "evaluations_saved": (len(nsga_curve) - reached) if reached is not None else None,
            "ctnas_final_hypervolume": ctnas_curve[-1] if ctnas_curve else 0.0,
            "random_final_hypervolume": curves["random"][1][-1] if curves["random"][1] else 0.0,
            "reference": list(reference),
        }
        walls["comparator"] = round(time.perf_counter() - t, 1)

        # --- baselines: random search finalists, truncated teachers -----------------------------
        t = time.perf_counter()
        random_res = curves["random"][0]
        random_archs = [space.parse(r.arch) for r in spread_along_front(random_res.pareto, ctx.plan.finalists)]
        random_records = export_and_measure(ctx, random_archs, train_finalists(ctx, random_archs))
        walls["baseline_random"] = round(time.perf_counter() - t, 1)

        t = time.perf_counter()
        teacher, plan, task = ctx.teacher, ctx.plan, ctx.eval_task
        truncated = []
        ids = torch.randint(0, teacher.facts.vocab_size, (setting.batch, setting.seq_len))
        for k in range(1, teacher.facts.num_layers):
            student = truncated_teacher(teacher.model, k)
            with torch_threads(2):
                fit = finetune_subnet(student, teacher.model, teacher.tokenizer, task.train, task.dev, task.test,
                                      plan.finetune, teacher_facts=None)
            student.eval()
            with torch.inference_mode():
                ms = measure_module(lambda s=student: s(ids, torch.ones_like(ids)), repeats=20, warmup=3,
                                    threads=setting.threads)
            truncated.append({"layers": k, "params": sum(p.numel() for p in student.parameters()),
                              "latency_ms": ms, "dev_accuracy": fit.dev_accuracy, "test_accuracy": fit.test_accuracy})
        walls["baseline_truncated"] = round(time.perf_counter() - t, 1)
    finally:
        shutdown_ray()

    t_doc = results["teacher"]
    found = [{"hash": f["hash"], "arch": f["arch"], "params": f["params"], "latency_ms": f["latency_ms"],
              "latency_onnx_ms": f["latency_onnx_ms"], "predicted_latency_ms": f["predicted_latency_ms"],
              "dev_accuracy": f["dev_accuracy"], "test_accuracy": f["test_accuracy"],
              "within_budget": f.get("within_budget", True),
              "speedup": t_doc["latency_ms"] / f["latency_ms"]} for f in results["finalists"]]
    doc = {
        "preset": args.preset,
        "budgets": spec.budgets.model_dump(exclude_none=True),
        "latency_setting": spec.latency.model_dump(),
        "teacher": {k: t_doc[k] for k in ("dev_accuracy", "test_accuracy", "latency_ms", "params")},
        "ranking": ranking,
        "comparator": comparator_doc,
        "found": found,
        "baselines": {
            "truncated": truncated,
            "random": [{"hash": r["hash"], "params": r["params"], "latency_ms": r["latency_ms"],
                        "dev_accuracy": r["dev_accuracy"], "test_accuracy": r["test_accuracy"]}
                       for r in random_records],
        },
        "search": {k: main_search[k] for k in ("strategy", "evaluations", "hypervolume", "seconds")},
        "wall_seconds": {**walls, "total": round(time.perf_counter() - t0, 1)},
        "command": "python bench/search.py " + " ".join(sys.argv[1:]),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2))
    (out.parent / "pareto.png").write_bytes(plot(doc))
    print(json.dumps({k: doc[k] for k in ("teacher", "found", "comparator")}, indent=2)[:3000])
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
