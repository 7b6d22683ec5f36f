"""Short-fit scores for a carried ranking's archs, keeping their fine-tuned dev accuracies.

A ranking's dev accuracies (12 archs fine-tuned under 2 seeds with the finalists' recipe: half an hour
or more on 2 cores) depend on the archs, the seeds and the task-tuned shared weights the fine-tunes
start from, not on how the archs are scored. When only the scoring changes, they need not be
trained again: this scores the same archs on a run whose task stage produced the same weights, with
a short fit (`workers/short_fit_scores.py`, cached in the run folder), and writes the short-fit tau
into the results file's ranking (`quality.json`), its targets recomputed.

That the weights are the same is checked, not assumed: each arch's raw shared-weight KL is measured
again and must match the figure stored with its dev accuracy (training is deterministic for a seed,
so a run of the same code on the same task reproduces it), and each parsed arch must hash to the
stored hash. Either mismatch stops the script without writing anything.

    .venv/bin/python bench/rescore_ranking.py --run-dir runs/bench-quality [--results bench/results/quality.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from quality_parts import short_fit_figures, targets  # noqa: E402  (bench/ is this script's folder)

KL_TOLERANCE = 1e-3  # nats; the same weights and rows give the same KL up to float summation order
# (another thread count moved one of the stop-21 archs by 1.3e-4); other weights move it by 1e-2 or more


def parse_short(text: str) -> dict:
    """The arch document of `Arch.short()`'s one-line form ("H192 r128 | ffn:768 - conv:5 | ...")."""
    head, *blocks = [part.strip() for part in text.split("|")]
    words = head.split()
    doc = {"hidden": int(words[0].removeprefix("H")),
           "blocks": [["id" if op == "-" else op for op in block.split()] for block in blocks]}
    if len(words) > 1:
        doc["embedding_rank"] = int(words[1].removeprefix("r"))
    return doc


def open_ranking(results: Path) -> tuple[dict, Any]:
    """A results file's document and the spec of the quality job its ranking was measured on."""
    from slimformer.contracts.spec import JobSpec

    doc = json.loads(results.read_text())
    return doc, JobSpec(name="bench-quality", preset=doc["preset"], teacher=doc["teacher_name"],
                        dataset=doc["dataset"])


def checked_archs(ctx, rows: list[dict]) -> list:
    """The ranking's archs parsed in `ctx`'s space, each checked to hash to its stored hash and to have the
    stored raw shared-weight KL on this run's weights (else SystemExit: nothing may be written)."""
    from slimformer.workers.stages.search import make_task_evaluator

    archs = [ctx.space.parse(parse_short(row["arch"])) for row in rows]
    for arch, row in zip(archs, rows, strict=True):
        if arch.hash != row["hash"]:
            raise SystemExit(f"{row['arch']}: parses to hash {arch.hash}, stored as {row['hash']}")
    with make_task_evaluator(ctx) as evaluator:
        for arch, row in zip(archs, rows, strict=True):
            kl = evaluator.task_score(arch).kl
            if abs(kl - row["shared_kl"]) > KL_TOLERANCE:
                raise SystemExit(f"{row['arch']}: shared KL {kl:.6f} here, {row['shared_kl']:.6f} stored: "
                                 "not the weights its dev accuracy was fine-tuned from")
    return archs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", required=True, help="a finished quality run of the same code and task")
    parser.add_argument("--results", default=str(HERE / "results" / "quality.json"))
    args = parser.parse_args()

    from slimformer.workers.context import RunContext
    from slimformer.workers.ray_runtime import init_ray, shutdown_ray

    results = Path(args.results)
    doc, spec = open_ranking(results)
    ranking = doc["ranking"]
    rows = ranking["archs"]
    init_ray(num_cpus=os.cpu_count())  # one fit per core, as the search stage runs them
    try:
        ctx = RunContext(spec, Path(args.run_dir), use_ray=True)
        archs = checked_archs(ctx, rows)
        figures = short_fit_figures(ctx, archs, [row["dev_accuracy"] for row in rows])
    finally:
        shutdown_ray()
    for row, kl in zip(rows, figures.pop("short_fit_kl"), strict=True):
        row["short_fit_kl"] = kl
    ranking.update({**figures, "short_fit_scored": {
        "command": "python bench/rescore_ranking.py --run-dir " + args.run_dir,
        "what": "short-fit scores of the same archs on a run whose raw shared KLs match the stored ones"}})
    doc["targets"] = targets(doc)
    results.write_text(json.dumps(doc, indent=2))
    print(json.dumps({k: ranking[k] for k in ("short_fit_steps", "short_fit_tau", "short_fit_tau_ci95",
                                              "task_aware_tau")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
