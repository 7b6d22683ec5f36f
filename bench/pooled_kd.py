"""Does pooled-state distillation (supernet/pooled_kd.py) make the finalists' recipe better?

The teacher's cuts (its first k layers, from its own weights) are fine-tuned with the finalists' recipe
as `bench/quality.py` fine-tunes its truncated baselines, once per pooled-state weight (0 is the recipe
without it), on the whole dev and test splits. Every fit is deterministic (one thread, fixed seeds),
so a weight-0 fit reproduces quality.json's truncated baseline exactly and the differences are the
loss's, not the seed's; one test example is 0.08 point of accuracy on Rotten Tomatoes.

Needs a run folder of `bench/quality.py` that got past its `states` stage (the cached teacher, the
hidden basis); the teacher's targets are the run's own, as its finalists read them (its task stage
writes the logits; before that stage each fit computes them). Fits two at a time, each in a fresh
process, and keeps each fit's figures in RUN/pooled_kd/, so an interrupted run resumes:

    python bench/pooled_kd.py --run-dir /work/runs/bench-quality --weights 0 1 4 --cuts 1 2 3 \\
        --out bench/results/pooled_kd.json
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))


def _context(run_dir: Path):
    from slimformer.contracts.spec import JobSpec
    from slimformer.workers.context import RunContext

    # The spec bench/quality.py runs, so the teacher comes from the same cache entry.
    return RunContext(JobSpec(name="bench-quality", preset="quick"), run_dir, use_ray=False)


def _targets(run_dir: Path) -> dict:
    """`finetune_subnet`'s teacher targets on the training split, as the job's finalists get them.

    The run's own files (RunContext.distillation_targets); the quick preset distils pooled states,
    so they are there for every weight, and a weight-0 fit simply does not read them.
    """
    from slimformer.supernet.timing import torch_threads

    with torch_threads(2):
        return _context(run_dir).distillation_targets()


def fit(run_dir: Path, cut: int, weight: float) -> dict:
    """The first `cut` teacher layers fine-tuned with the finalists' recipe at pooled-state `weight`."""
    from quality_parts import warm_supernet

    from slimformer.supernet.extract import extract
    from slimformer.supernet.finetune import finetune_subnet, subnet_bridges
    from slimformer.supernet.timing import torch_threads

    out = run_dir / "pooled_kd" / f"first{cut}_w{weight:g}.json"
    if out.exists():
        return json.loads(out.read_text())
    ctx = _context(run_dir)
    targets = _targets(run_dir)
    arch = ctx.space.layers_arch(list(range(cut)))
    warm = warm_supernet(ctx)
    student = extract(warm, arch, ctx.task.labels)
    settings = replace(ctx.finetune_settings(arch), pooled_weight=weight)
    with torch_threads(settings.threads):
        result = finetune_subnet(student, ctx.teacher.model, ctx.teacher.tokenizer, ctx.task.train, ctx.task.dev,
                                 ctx.task.test, settings, bridges=subnet_bridges(warm, arch.hidden),
                                 **targets)
    doc = {"layers": cut, "pooled_weight": weight, "dev_accuracy": result.dev_accuracy,
           "test_accuracy": result.test_accuracy, "steps": result.steps, "best_step": result.best_step,
           "epochs": settings.epochs, "seconds": round(result.seconds, 1), "dev_history": result.dev_history}
    out.write_text(json.dumps(doc, indent=1))
    return doc


def _fit_in_process(args: tuple) -> dict:
    return fit(*args)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", required=True, type=Path)
    parser.add_argument("--weights", type=float, nargs="+", default=[0.0, 1.0, 4.0])
    parser.add_argument("--cuts", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--out", type=Path, default=Path("bench/results/pooled_kd.json"))
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    started = time.perf_counter()
    _targets(args.run_dir)
    jobs = [(args.run_dir, cut, w) for cut in args.cuts for w in args.weights]
    # Fresh (spawned) processes: torch's thread pool does not survive a fork.
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        fits = pool.map(_fit_in_process, jobs, chunksize=1)
    by = {(f["layers"], f["pooled_weight"]): f for f in fits}
    gains = {}
    for cut in args.cuts:
        base = by.get((cut, 0.0))
        if base is None:
            continue
        gains[f"first{cut}"] = {
            f"w{w:g}": {"dev_points": round(100 * (by[(cut, w)]["dev_accuracy"] - base["dev_accuracy"]), 2),
                        "test_points": round(100 * (by[(cut, w)]["test_accuracy"] - base["test_accuracy"]), 2)}
            for w in args.weights if w != 0.0}
    ctx = _context(args.run_dir)
    doc = {"task": {"name": ctx.task.name, "train": len(ctx.task.train), "dev": len(ctx.task.dev),
                    "test": len(ctx.task.test)},
           "teacher": {"test_accuracy": ctx.teacher.test_accuracy, "max_length": ctx.teacher.max_length},
           "command": "python bench/pooled_kd.py --run-dir RUN --weights " + " ".join(f"{w:g}" for w in args.weights)
                      + " --cuts " + " ".join(map(str, args.cuts)),
           "fits": fits, "gain_over_weight_0": gains, "seconds": round(time.perf_counter() - started, 1)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1) + "\n")
    print(json.dumps(gains, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
