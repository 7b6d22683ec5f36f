"""The pieces of bench/quality.py: baselines from the teacher's own layers, joint latency measurement,
rank statistics, the comparator figures, the targets and the plot."""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path
from typing import Any

# --- statistics -----------------------------------------------------------------------------------


def kendall(xs, ys) -> float:
    from scipy.stats import kendalltau

    return float(kendalltau(xs, ys).statistic)


def bootstrap_tau(xs, ys, samples: int = 2000, seed: int = 0) -> list[float]:
    """95% percentile interval of Kendall tau over archs resampled with replacement."""
    rng = random.Random(seed)
    n, taus = len(xs), []
    for _ in range(samples):
        idx = [rng.randrange(n) for _ in range(n)]
        tau = kendall([xs[i] for i in idx], [ys[i] for i in idx])
        if tau == tau:  # a resample of all-equal values has no tau
            taus.append(tau)
    taus.sort()
    return [taus[int(0.025 * len(taus))], taus[int(0.975 * len(taus)) - 1]] if taus else [None, None]


def spread_by_latency(archs, ctx, n: int):
    """n distinct archs at evenly spaced ranks of predicted latency."""
    unique = sorted({a.hash: a for a in archs}.values(), key=ctx.predicted_latency)
    if len(unique) <= n:
        return unique
    return [unique[round(i * (len(unique) - 1) / (n - 1))] for i in range(n)]


# --- the teacher's own layers, fine-tuned like a finalist -----------------------------------------


def warm_supernet(ctx):
    """The supernet before any training: every teacher-layer path is exactly the teacher's layers."""
    from safetensors.torch import load_file

    from slimformer.supernet.assemble import assemble_supernet, warm_start_state

    basis = load_file(str(ctx.path("basis.safetensors")))["basis"]
    encoder = ctx.teacher.model.encoder
    states = [warm_start_state(ctx.space, i, encoder, basis) for i in range(ctx.space.num_blocks)]
    return assemble_supernet(ctx.space, states, ctx.teacher.model.classifier)


def _train_layers(spec_doc: dict, run_dir: str, cache_dir: str, name: str, layers: list[int]) -> dict:
    """Ray task: the teacher keeping `layers`, fine-tuned with the finalists' recipe. Idempotent."""
    import json

    from slimformer.contracts.spec import JobSpec
    from slimformer.search_space import count_params
    from slimformer.supernet.export import save_subnet
    from slimformer.supernet.extract import extract
    from slimformer.supernet.finetune import finetune_subnet, subnet_bridges
    from slimformer.supernet.timing import torch_threads
    from slimformer.workers.context import RunContext

    ctx = RunContext(JobSpec.model_validate(spec_doc), Path(run_dir), use_ray=False, cache_dir=Path(cache_dir))
    folder = ctx.path("baselines", name)
    done = folder / "trained.json"
    if done.exists():
        return json.loads(done.read_text())
    arch = ctx.space.layers_arch(layers)
    warm = warm_supernet(ctx)
    student = extract(warm, arch, ctx.task.labels)
    teacher = ctx.teacher
    settings = ctx.finetune_settings(arch)  # the finalists' recipe for an arch of this cost
    with torch_threads(settings.threads):
        # The warm bridges map the student's permuted basis back to the teacher's, as a finalist's do.
        fit = finetune_subnet(student, teacher.model, teacher.tokenizer, ctx.task.train, ctx.task.dev, ctx.task.test,
                              settings, bridges=subnet_bridges(warm, arch.hidden), **ctx.distillation_targets())
    save_subnet(student, teacher.tokenizer, folder / "trained")
    record = {"layers": layers, "hash": arch.hash, "params": count_params(arch, ctx.space),
              "dev_accuracy": fit.dev_accuracy, "test_accuracy": fit.test_accuracy, "best_step": fit.best_step,
              "steps": fit.steps, "seconds": round(fit.seconds, 1), "finetune_epochs": settings.epochs,
              "finetune_rows": settings.max_train_examples or len(ctx.task.train)}
    folder.mkdir(parents=True, exist_ok=True)
    done.write_text(json.dumps(record, indent=2))
    return record


def layer_baselines(ctx, layer_sets: dict[str, list[int]]) -> dict[str, dict[str, Any]]:
    import ray

    remote = ray.remote(num_cpus=ctx.plan.finetune.threads, max_retries=1)(_train_layers)
    args = (ctx.spec.model_dump(), str(ctx.run_dir), str(ctx.cache_dir))
    # Largest first, so the two cores stay busy to the end.
    order = sorted(layer_sets, key=lambda name: -len(layer_sets[name]))
    refs = {name: remote.remote(*args, name, layer_sets[name]) for name in order}
    return {name: ray.get(refs[name]) for name in layer_sets}


# --- latency of everything in the same rounds -------------------------------------------------------


def measure_together(ctx, found: list[str], random_found: list[str], layer_names: list[str]) -> dict[str, Any]:
    from slimformer.supernet.extract import extract
    from slimformer.supernet.load import load_subnet
    from slimformer.supernet.model_timing import measure_models_latency

    setting = replace(ctx.latency_setting, runtime="torch")
    models, keys = [], []
    for h in found:
        models.append(load_subnet(ctx.path("candidates", h, "trained"))[0])
        keys.append(("found", h))
    for h in random_found:
        models.append(load_subnet(ctx.path("candidates", h, "trained"))[0])
        keys.append(("random", h))
    for name in layer_names:
        models.append(load_subnet(ctx.path("baselines", name, "trained"))[0])
        keys.append(("layers", name))
    models.append(extract(warm_supernet(ctx), ctx.space.teacher_arch()))  # the teacher, as a SubNet
    keys.append(("teacher", None))
    latencies = measure_models_latency(models, setting, repeats=40)
    out: dict[str, Any] = {"found": {}, "random": {}, "layers": {}}
    for (group, key), ms in zip(keys, latencies, strict=True):
        if group == "teacher":
            out["teacher"] = ms
        else:
            out[group][key] = ms
    return out


# --- comparator --------------------------------------------------------------------------------------


def hv_curve(records, objectives, reference) -> list[float]:
    """Hypervolume of the feasible front after each evaluation, in trial order."""
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


def comparator_figures(ctx, main_search: dict, objectives, reference) -> dict[str, Any]:
    """Comparator trained on 70% of the main search's task-aware scores; CTNAS vs NSGA-II hypervolume."""
    from slimformer.search.budgets import Budgets
    from slimformer.search.comparator import Comparator, pairwise_accuracy
    from slimformer.search.strategies import run_search
    from slimformer.search.study import TrialRecord
    from slimformer.workers.stages.search import make_task_evaluator

    space = ctx.space
    scored = [TrialRecord(**r) for r in main_search["trials"]]
    scored = [r for r in scored if r.proxy is not None and r.feasible]
    by_hash = list({r.hash: r for r in scored}.values())
    random.Random(0).shuffle(by_hash)
    cut = int(len(by_hash) * 0.7)
    train_items = [(space.parse(r.arch), r.proxy) for r in by_hash[:cut]]
    held_out = [(space.parse(r.arch), r.proxy) for r in by_hash[cut:]]
    comparator = Comparator.for_space(space, seed=0)
    comparator.fit(train_items)
    nsga_curve = hv_curve(scored, objectives, reference)
    with make_task_evaluator(ctx) as evaluator:
        res = run_search(space, evaluator, Budgets.of(ctx.spec.budgets), ctx.latency_table(), ctx.latency_setting,
                         strategy="ctnas", trials=len(nsga_curve), seed=ctx.spec.seed,
                         storage_url=ctx.optuna_storage_url, study_name="bench-ctnas", objectives=objectives,
                         reference=reference,
                         seed_archs=space.seed_archs())
    ctnas_curve = hv_curve(res.trials, objectives, reference)
    target = nsga_curve[-1] if nsga_curve else 0.0
    reached = next((i + 1 for i, hv in enumerate(ctnas_curve) if hv >= target - 1e-12), None)
    return {
        "scores": "task-aware (KL to the teacher on held-out dev rows, shared weights)",
        "pairwise_accuracy": pairwise_accuracy(comparator, held_out),
        "train_candidates": len(train_items), "held_out_candidates": len(held_out),
        "nsga2_evaluations": len(nsga_curve), "nsga2_hypervolume": target,
        "ctnas_evaluations_to_reach": reached,
        "evaluations_saved": (len(nsga_curve) - reached) if reached is not None else None,
        "ctnas_final_hypervolume": ctnas_curve[-1] if ctnas_curve else 0.0,
    }


# --- ranking: shared-weight scores against fine-tuned dev accuracy ----------------------------------


def ranking_figures(ctx, main_search: dict, n_archs: int, n_seeds: int) -> dict[str, Any]:
    """Kendall tau of the task-aware score, the block-wise proxy and the parameter count against the
    dev accuracy of `n_archs` scored archs spread over the latency range, each fine-tuned with the
    finalists' recipe under `n_seeds` seeds (averaged), with 95% bootstrap intervals."""
    from slimformer.search_space import count_params
    from slimformer.workers.stages.finalize import train_chosen
    from slimformer.workers.stages.search import make_blockwise_evaluator, make_task_evaluator

    space, spec = ctx.space, ctx.spec
    scored = {r["hash"]: r for r in main_search["trials"] if r.get("proxy") is not None}
    ranking_archs = spread_by_latency([space.parse(r["arch"]) for r in scored.values()], ctx, n_archs)
    seeds = [None] + [spec.seed + s for s in range(1, n_seeds)]
    # The finalists' recipe, as finalize runs it: a factorised arch is distilled from its full-rank self.
    dev_by_seed = [[r["dev_accuracy"] for r in train_chosen(ctx, ranking_archs, seed)] for seed in seeds]
    dev = [sum(col) / len(col) for col in zip(*dev_by_seed, strict=True)]
    with make_task_evaluator(ctx) as task_eval, make_blockwise_evaluator(ctx, "fewshot") as block_eval:
        task_scores = [task_eval.task_score(a) for a in ranking_archs]
        block_scores = [block_eval.score(a) for a in ranking_archs]
    params = [count_params(a, space) for a in ranking_archs]
    fit = short_fit_figures(ctx, ranking_archs, dev)
    rows = [{"hash": a.hash, "arch": a.short(), "params": p, "predicted_latency_ms": ctx.predicted_latency(a),
             "shared_kl": s.kl, "short_fit_kl": fit["short_fit_kl"][i], "shared_dev_accuracy": s.accuracy,
             "blockwise_proxy": b, "dev_accuracy_per_seed": [col[i] for col in dev_by_seed], "dev_accuracy": d}
            for i, (a, p, s, b, d) in enumerate(zip(ranking_archs, params, task_scores, block_scores, dev,
                                                     strict=True))]
    return {"n": len(rows), "seeds": len(seeds), "short_fit_steps": fit["short_fit_steps"], **ranking_taus(rows),
            "archs": rows}


def ranking_taus(rows: list[dict]) -> dict[str, Any]:
    """Kendall tau (and its 95% bootstrap interval) of each score a ranking stores per arch against the
    archs' mean fine-tuned dev accuracy, and the mean gap between the first two seeds (None for one).
    Higher is better for every score: the KLs and the block-wise proxy are negated, the error too."""
    dev = [row["dev_accuracy"] for row in rows]
    scores = {"task_aware": [-row["shared_kl"] for row in rows],
              "task_aware_error": [-(1 - row["shared_dev_accuracy"]) for row in rows],
              "blockwise": [-row["blockwise_proxy"] for row in rows],
              "params": [row["params"] for row in rows],
              "short_fit": [-row["short_fit_kl"] for row in rows]}
    out: dict[str, Any] = {}
    for name, values in scores.items():
        out[f"{name}_tau"], out[f"{name}_tau_ci95"] = kendall(values, dev), bootstrap_tau(values, dev)
    per_seed = [row["dev_accuracy_per_seed"] for row in rows]
    out["seed_gap_mean"] = (sum(abs(s[0] - s[1]) for s in per_seed) / len(per_seed)
                            if all(len(s) > 1 for s in per_seed) else None)
    return out


def short_fit_figures(ctx, archs, dev: list[float]) -> dict[str, Any]:
    """Kendall tau of the short-fit score (what ranks the finalist pool, `plan.short_fit_steps` steps of the
    finalists' recipe) against the same dev accuracies, and each arch's short-fit KL in `archs` order."""
    from slimformer.workers.short_fit_scores import short_fit_scores

    steps = ctx.plan.short_fit_steps or 20  # a plan without short fits (quick) is measured at 20, as in stop 22
    fitted = short_fit_scores(ctx, archs, steps)
    values = [-fitted[a.hash].kl for a in archs]
    return {"short_fit_steps": steps, "short_fit_tau": kendall(values, dev),
            "short_fit_tau_ci95": bootstrap_tau(values, dev), "short_fit_kl": [-v for v in values]}


def carried_ranking(results_file: Path) -> dict[str, Any]:
    """An earlier run's `ranking`, marked with where it came from (it was not measured in this run)."""
    import json

    earlier = json.loads(Path(results_file).read_text())
    ranking = dict(earlier["ranking"])
    ranking.pop("carried_from", None)
    source = earlier["ranking"].get("carried_from") or {"command": earlier.get("command"),
                                                         "job_seconds_total": earlier["job_seconds"]["total"]}
    return {**ranking, "carried_from": source}


# --- targets and plot ----------------------------------------------------------------------------------


def targets(doc: dict) -> dict[str, Any]:
    """The issue's targets, each with the figures that decide it."""
    teacher, found = doc["teacher"], doc["found"]
    per_k = []
    for base in doc["baselines"]["truncated"]:
        near = [f for f in found if f["latency_ms"] <= 1.02 * base["latency_ms"]]
        best = max((f["test_accuracy"] for f in near), default=None)
        # The job's own plain cuts are on its front by construction (origin "layer_dropped"); what the
        # search itself adds is the margin of its own picks alone.
        own = max((f["test_accuracy"] for f in near if f.get("origin") != "layer_dropped"), default=None)
        per_k.append({"layers": base["layers"], "latency_ms": base["latency_ms"],
                      "test_accuracy": base["test_accuracy"], "best_found_within_2pct_latency": best,
                      "margin_points": None if best is None else round(100 * (best - base["test_accuracy"]), 2),
                      "best_search_pick_within_2pct_latency": own,
                      "search_pick_margin_points": None if own is None else round(
                          100 * (own - base["test_accuracy"]), 2)})
    fast = [f for f in found if f["speedup"] >= 3]
    best_fast = max((f["test_accuracy"] for f in fast), default=None)
    # The task-aware score that picks finalists: the short-fit score where the job fitted its pool
    # (plan.short_fit_steps) and the ranking measured it, else the shared-weight KL.
    ranking = doc["ranking"]
    by_fit = bool(doc.get("search", {}).get("short_fit_steps")) and "short_fit_tau" in ranking
    tau = ranking["short_fit_tau"] if by_fit else ranking["task_aware_tau"]
    return {
        "teacher_test_at_least_0.82": {"value": teacher["test_accuracy"], "met": teacher["test_accuracy"] >= 0.82},
        "never_worse_than_truncation": {
            "per_k": per_k,
            "met": all(k["margin_points"] is not None and k["margin_points"] >= -0.5 for k in per_k),
            "k_at_least_1_point_better": sum(1 for k in per_k if (k["margin_points"] or -99) >= 1.0),
            "met_3_k_better": sum(1 for k in per_k if (k["margin_points"] or -99) >= 1.0) >= 3,
        },
        "keeps_97pct_at_3x": {"best_test_at_3x": best_fast,
                              "share_of_teacher": None if best_fast is None else best_fast / teacher["test_accuracy"],
                              "met": best_fast is not None and best_fast >= 0.97 * teacher["test_accuracy"]},
        "task_aware_tau_at_least_0.6": {"value": tau, "shared_kl_tau": ranking["task_aware_tau"],
                                        "score": "short_fit" if by_fit else "shared_kl",
                                        "met": tau is not None and tau >= 0.6},
        "job_at_most_20_min": {"value": doc["job_seconds"]["total"], "met": doc["job_seconds"]["total"] <= 1200},
        "teacher_training_at_most_15_min": {"value": teacher["train_seconds"],
                                            "met": (teacher["train_seconds"] or 1e9) <= 900},
    }


def plot(doc: dict) -> bytes:
    """quality.png: found models (front marked) against the teacher, truncated, every-other, random, TF-IDF."""
    from slimformer.plots import PlotPoint, ReferencePoint, render_pareto
    from slimformer.search.pareto import pareto_front

    found = doc["found"]
    front = set(pareto_front([(-f["test_accuracy"], f["latency_ms"]) for f in found]))
    points = [PlotPoint(f["hash"], f["latency_ms"], f["test_accuracy"], i in front) for i, f in enumerate(found)]
    t, b = doc["teacher"], doc["baselines"]
    refs = [ReferencePoint("teacher", t["latency_ms"], t["test_accuracy"], "*")]
    refs += [ReferencePoint("truncated teacher", r["latency_ms"], r["test_accuracy"], "s") for r in b["truncated"]]
    refs += [ReferencePoint("every other layer", r["latency_ms"], r["test_accuracy"], "D") for r in b["every_other"]]
    refs += [ReferencePoint("random search", r["latency_ms"], r["test_accuracy"], "^") for r in b["random"]]
    refs += [ReferencePoint("TF-IDF + LR", b["tfidf_lr"]["latency_ms"], b["tfidf_lr"]["test_accuracy"], "x")]
    title = f"slimformer vs alternatives: {doc['teacher_name']}, {doc['dataset']} (test)"
    return render_pareto(points, "png", title, "test accuracy", refs)
