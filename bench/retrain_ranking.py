"""A carried ranking's factorised archs fine-tuned again with the finalists' recipe as finalize now runs it.

Since stop 23 a factorised arch is not fine-tuned from the shared weights: its full-rank self is, and
then its word factors are distilled from that model (`workers/stages/finalize.train_chosen`). A
ranking measured before (`quality.json` `ranking`: 12 archs, 2 seeds) holds the old recipe's dev
accuracies for its factorised archs, so the taus it reports are of a recipe finalize no longer runs.
This re-trains only those archs, under the ranking's seeds, on a run whose task stage produced the same
weights (checked as `rescore_ranking.py` checks it: each arch's raw shared KL must match the stored
one), replaces their dev accuracies (the old ones kept as `dev_accuracy_shared_route_per_seed`) and
recomputes every tau of the ranking and the targets. The full-rank archs' accuracies stand: their
recipe did not change.

    .venv/bin/python bench/retrain_ranking.py --run-dir runs/bench-quality [--results bench/results/quality.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from quality_parts import ranking_taus, targets  # noqa: E402  (bench/ is this script's folder)
from rescore_ranking import checked_archs, open_ranking  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", required=True, help="a finished quality run of the same code and task")
    parser.add_argument("--results", default=str(HERE / "results" / "quality.json"))
    args = parser.parse_args()

    from slimformer.workers.context import RunContext
    from slimformer.workers.ray_runtime import init_ray, shutdown_ray
    from slimformer.workers.stages.finalize import train_chosen

    results = Path(args.results)
    doc, spec = open_ranking(results)
    ranking = doc["ranking"]
    rows = ranking["archs"]
    seeds = [None] + [spec.seed + s for s in range(1, ranking["seeds"])]  # as ranking_figures seeds them
    init_ray(num_cpus=os.cpu_count())  # one fine-tune per core, as finalize runs them
    try:
        ctx = RunContext(spec, Path(args.run_dir), use_ray=True)
        archs = checked_archs(ctx, rows)
        factorised = [i for i, arch in enumerate(archs) if arch.embedding_rank is not None]
        dev_by_seed = [[r["dev_accuracy"] for r in train_chosen(ctx, [archs[i] for i in factorised], seed)]
                       for seed in seeds]
    finally:
        shutdown_ray()
    before = {k: ranking[k] for k in ("task_aware_tau", "short_fit_tau", "blockwise_tau", "params_tau")}
    for j, i in enumerate(factorised):
        row = rows[i]
        row.setdefault("dev_accuracy_shared_route_per_seed", row["dev_accuracy_per_seed"])
        row["dev_accuracy_per_seed"] = [col[j] for col in dev_by_seed]
        row["dev_accuracy"] = sum(row["dev_accuracy_per_seed"]) / len(seeds)
    ranking.update(ranking_taus(rows))
    ranking["factorised_retrained"] = {
        "command": "python bench/retrain_ranking.py --run-dir " + args.run_dir,
        "what": "the factorised archs fine-tuned full rank, then their word factors distilled from that model "
                "(finalize.train_chosen), under the ranking's seeds; the full-rank archs' figures carried",
        "archs": [rows[i]["hash"] for i in factorised], "taus_before": before}
    doc["targets"] = targets(doc)
    results.write_text(json.dumps(doc, indent=2))
    print(json.dumps({"before": before, "after": {k: ranking[k] for k in before}}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
