"""Do a small training split's finalists need the step floor? The teacher's cuts, fine-tuned both ways.

On the news-topics task (bench/unseen_tasks.py: 1,010 training documents, 256 tokens) one pass of the
quick finalists' recipe is 32 optimizer steps, and the FLOPs scaling caps the cheapest at 3 passes.
The default teacher on the same split was still improving after 96 steps. This fine-tunes the
teacher's first 1 and 2 layers (its own weights, as the job's plain cuts start before any supernet
training) with the finalists' recipe without the floor and with it (`plan.finalist_min_examples`, before
its compute bound `plan.finalist_floor_share`), and scores each on the whole dev and test splits by the
job's metric, beside the teacher and TF-IDF + logistic regression on the same split.

    .venv/bin/python bench/small_split_floor.py --run-dir /work/runs/floor --out bench/results/small_split_floor.json

The run folder keeps the task CSV, the teacher's figures and each fit (`fits/<name>.json`), so a
second call re-fits nothing; the teacher is cached under SLIMFORMER_HOME like a job's.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

LAYER_SETS = {"1 layer": [0], "2 layers": [0, 1]}


def spec_doc(csv_path: Path, preset: str) -> dict:
    """The job a user would submit for this CSV: no distillation corpus, latency at 256 tokens."""
    return {"dataset": str(csv_path), "corpus": None, "preset": preset, "latency": {"seq_len": 256}}


def context(spec: dict, run_dir: Path):
    from slimformer.contracts.spec import JobSpec
    from slimformer.workers.context import RunContext

    return RunContext(JobSpec.model_validate(spec), run_dir, use_ray=False)


def with_plan(spec: dict, run_dir: Path, **changes):
    """A context whose plan has `changes`, to get the finalists' recipe under another floor setting."""
    ctx = context(spec, run_dir)
    # `plan` is a cached_property: setting it in the instance's dict overrides it for this context only.
    ctx.__dict__["plan"] = replace(ctx.plan, **changes)
    return ctx


def fit(spec: dict, run_dir: str, name: str, layers: list[int], settings_doc: dict) -> dict:
    """Ray task: the teacher's `layers`, fine-tuned with `settings_doc`, scored on all of dev and test."""
    from quality_parts import warm_supernet

    from slimformer.supernet.extract import extract
    from slimformer.supernet.finetune import FinetuneSettings, finetune_subnet
    from slimformer.supernet.task_metrics import model_metrics
    from slimformer.supernet.timing import torch_threads

    done = Path(run_dir, "fits", f"{name}.json")
    if done.exists():
        return json.loads(done.read_text())
    ctx = context(spec, Path(run_dir))
    settings = FinetuneSettings(**settings_doc)
    student = extract(warm_supernet(ctx), ctx.space.layers_arch(layers), ctx.task.labels)
    teacher = ctx.teacher
    with torch_threads(settings.threads):
        result = finetune_subnet(student, teacher.model, teacher.tokenizer, ctx.task.train, ctx.task.dev,
                                 ctx.task.test, settings, teacher_logits=ctx.teacher_logits()["train"])
        scores = model_metrics(student, teacher.tokenizer, {"dev": ctx.task.dev, "test": ctx.task.test},
                               ctx.task.labels, settings.max_length)
    record = {"layers": layers, "epochs": round(settings.epochs, 2), "evals_per_epoch": settings.evals_per_epoch,
              "patience": settings.patience, "steps": result.steps, "best_step": result.best_step,
              "seconds": round(result.seconds, 1), "dev_history": [[s, round(v, 4)] for s, v in result.dev_history],
              **{k: round(v, 4) for k, v in scores.items() if not k.endswith("per_class")}}
    done.parent.mkdir(parents=True, exist_ok=True)
    done.write_text(json.dumps(record, indent=2))
    return record


def references(ctx) -> dict:
    """The teacher and TF-IDF + LR on the same split and metric."""
    from slimformer.baselines import fit_tfidf_logistic_regression
    from slimformer.metrics import split_metrics
    from slimformer.supernet.task_metrics import model_metrics
    from slimformer.supernet.timing import torch_threads

    task, teacher = ctx.task, ctx.teacher
    with torch_threads(2):
        scores = model_metrics(teacher.model, teacher.tokenizer, {"dev": task.dev, "test": task.test}, task.labels,
                               teacher.max_length)
    base = fit_tfidf_logistic_regression(task.train, task.dev, task.test, seed=ctx.spec.seed, metric=ctx.metric)
    tfidf = {**split_metrics("dev", base.dev_predictions, [e.label for e in task.dev], task.labels),
             **split_metrics("test", base.test_predictions, [e.label for e in task.test], task.labels)}

    def rounded(d: dict) -> dict:
        return {k: round(v, 4) for k, v in d.items() if not k.endswith("per_class")}

    return {"teacher": rounded(scores) | {"epochs_run": teacher.meta.get("epochs_run"),
                                           "train_seconds": teacher.meta.get("seconds")},
            "tfidf_lr": rounded(tfidf) | {"c": base.c, "class_weight": base.class_weight}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "small_split_floor.json")
    parser.add_argument("--csv", type=Path, help="another task's CSV (default: the news-topics task, written here)")
    parser.add_argument("--preset", default="quick")
    args = parser.parse_args()

    import ray
    from unseen_tasks import news_topic_rows, write_csv

    from slimformer.workers.ray_runtime import init_ray, shutdown_ray
    from slimformer.workers.stages.prepare import stage_prepare
    from slimformer.workers.stages.states import stage_states
    from slimformer.workers.stages.task import compute_teacher_logits

    started = time.perf_counter()
    csv_path = args.csv or args.run_dir / "news-topics.csv"
    if not csv_path.exists():
        write_csv(news_topic_rows(), csv_path)
    spec = spec_doc(csv_path.resolve(), args.preset)
    ctx = context(spec, args.run_dir)
    if not ctx.path("basis.safetensors").exists():
        stage_prepare(ctx)  # the teacher (cached per task), the space
        stage_states(ctx)  # the hidden-dimension order the warm start uses
    compute_teacher_logits(ctx)
    refs = references(ctx)
    print(json.dumps(refs, indent=2), flush=True)

    # One context per recipe, so the cached teacher is loaded once for each. "floor" is the floor as this
    # benchmark measured it, without the compute bound quick has had since (`plan.finalist_floor_share`,
    # which would give the 2-layer cut 6 passes, not 10; bench/unseen.py measures it in a whole job).
    # The recipe it measured: logits only, as before pooled-state distillation (stop 27), so a re-run
    # reproduces the committed fits (the baselines here pass no bridges for that loss either).
    logits_only = replace(with_plan(spec, args.run_dir).plan.finetune, pooled_weight=0.0)
    recipes = {"floor": with_plan(spec, args.run_dir, finalist_floor_share=None, finetune=logits_only),
               "no floor": with_plan(spec, args.run_dir, finalist_min_examples=0, finetune=logits_only)}
    jobs = {f"{name}, {kind}": (layers, owner.finetune_settings(owner.space.layers_arch(layers)))
            for name, layers in LAYER_SETS.items() for kind, owner in recipes.items()}
    init_ray(num_cpus=2)
    try:
        remote = ray.remote(num_cpus=1, max_retries=1)(fit)
        # Longest first, so both cores stay busy to the end.
        order = sorted(jobs, key=lambda n: -jobs[n][1].epochs * len(jobs[n][0]))
        refs_out = {n: remote.remote(spec, str(args.run_dir), n, jobs[n][0], asdict(jobs[n][1])) for n in order}
        fits = {n: ray.get(refs_out[n]) for n in jobs}
    finally:
        shutdown_ray()
    metric = f"test_{ctx.metric}"
    doc = {
        "task": {"name": str(args.csv) if args.csv else "news-topics (bench/unseen_tasks.py)",
                 "train": len(ctx.task.train), "dev": len(ctx.task.dev), "test": len(ctx.task.test),
                 "metric": ctx.metric, "max_length": ctx.teacher.max_length},
        "command": "python bench/small_split_floor.py --run-dir RUN --out bench/results/small_split_floor.json",
        "note": ("The teacher's cuts from its own weights (no supernet training), the finalists' recipe for "
                 "each, on the whole dev and test splits. One test document is 0.8 points of accuracy."),
        **refs, "fits": fits,
        "floor_gain": {name: round(fits[f"{name}, floor"][metric] - fits[f"{name}, no floor"][metric], 4)
                       for name in LAYER_SETS},
        "beats_tfidf": {n: fits[n][metric] > refs["tfidf_lr"][metric] for n in fits},
        "seconds": round(time.perf_counter() - started, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    print(json.dumps({k: doc[k] for k in ("floor_gain", "beats_tfidf")}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
