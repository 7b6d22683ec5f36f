"""Can a narrower teacher shape beat what the job hands over at one cut's latency? Measured, not argued.

At the teacher's first k layers' latency the job's front holds a plain cut: on MiniLM-L6 + Rotten
Tomatoes at k=3 it is every other layer, and `quality.json`'s k=3 margin is that cut against the
first 3 layers. CoFi and DynaBERT keep more layers, or more of them, at narrower widths instead
(fewer heads and FFN neurons, importance-ordered as every path of the supernet is), and the space
holds such models, but uniform sampling rarely draws them and the search's width seeds are full
depth (`SearchSpace.wide_variants`). This benchmark fits such variants (`VARIANTS`, per k) whose
predicted latency is in the tier between the first k-1 and k layers, with the finalists' recipe,
from the job's task-tuned supernet, as a finalist is fitted. Beside them: the tier's plain-cut
finalist, the search's own picks in the tier as the job fitted them, the first-k truncation as
`quality.py` fits it (the teacher's own layers), and re-runs with another seed of the cut finalist
and of the best variant by dev, which say how far one fit's figure moves. Writes
`bench/results/tier_alternatives_k<k>.json`.

Run over the run folder of a finished default job (`bench/quality.py --run-dir`, or the job alone):

    python bench/tier_alternatives.py --run-dir runs/bench-quality --k 3
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from quality_margins import checked, saved_subnet_correct  # noqa: E402

# Per probed k, (kept teacher layers, heads, FFN inner size, hidden size) of each variant, each about as
# slow as MiniLM-L6's first k layers by the job's latency table (stop 33's machine). At k=3: two of 4
# layers spread from the first to the last, one of 5 so spread, one of all 6. At k=2: every other layer
# at half and two-thirds width, 4 spread layers at a third, and every other layer at H256 with the
# teacher's head size (8 heads of 32), beside the job's own H192 anchor (12 heads of 16).
VARIANTS = {
    3: (((0, 2, 3, 5), 12, 768, 384), ((0, 2, 3, 5), 8, 1024, 384), ((0, 1, 2, 4, 5), 6, 768, 384),
        ((0, 1, 2, 3, 4, 5), 6, 512, 384)),
    2: (((0, 2, 4), 6, 768, 384), ((0, 2, 4), 6, 1024, 384), ((0, 2, 3, 5), 4, 512, 384), ((0, 2, 4), 8, 1024, 256)),
}
RERUN_SEED = 1


def _row(ctx, name: str, arch, record: dict[str, Any], folder: Path, cut: list[bool], seed: int | None) -> dict:
    from slimformer.metrics import paired_difference_interval
    from slimformer.search_space import count_params

    correct = checked(saved_subnet_correct(ctx, folder), record["test_accuracy"], name)
    lo, hi = paired_difference_interval(correct, cut)
    return {"name": name, "arch": arch.short(), "hash": arch.hash, "seed": seed,
            "predicted_latency_ms": round(ctx.predicted_latency(arch), 2), "params": count_params(arch, ctx.space),
            "dev_accuracy": record["dev_accuracy"], "test_accuracy": record["test_accuracy"],
            "steps": record.get("finetune_steps", record.get("steps")), "best_step": record["best_step"],
            "margin_over_first_k_points": round(100 * (record["test_accuracy"] - sum(cut) / len(cut)), 2),
            "margin_interval_points": [round(100 * lo, 2), round(100 * hi, 2)]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", required=True, help="a finished default job's run folder")
    parser.add_argument("--k", type=int, default=3, help="the cut whose tier is probed")
    parser.add_argument("--out", help="default: bench/results/tier_alternatives_k<k>.json")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    from environment import environment
    from quality_parts import layer_baselines

    from slimformer.contracts.spec import JobSpec
    from slimformer.search_space import Arch
    from slimformer.workers.context import RunContext, read_json
    from slimformer.workers.ray_runtime import init_ray, shutdown_ray
    from slimformer.workers.stages.finalize import train_finalists

    run_dir = Path(args.run_dir)
    ctx = RunContext(JobSpec.model_validate(read_json(run_dir / "spec.json")), run_dir, use_ray=True)
    space, k = ctx.space, args.k
    low, high = (ctx.predicted_latency(space.truncated_arch(n)) for n in (k - 1, k))
    if k not in VARIANTS:
        raise SystemExit(f"--k {k}: variants are set for k in {sorted(VARIANTS)}")
    variants = {f"H{hidden}, layers {','.join(map(str, layers))}, {heads} heads, FFN {inner}":
                space.layers_arch(layers, hidden=hidden, heads=heads, inner=inner)
                for layers, heads, inner, hidden in VARIANTS[k]}
    outside = [n for n, a in variants.items() if not low < ctx.predicted_latency(a) <= 1.02 * high]
    finalists = {c["hash"]: c for c in read_json(run_dir / "chosen.json")}
    tier_cut = next((c for c in finalists.values() if c.get("source") == "layer_dropped"
                     and len(space.teacher_layers_of(Arch.from_dict(c["arch"])) or ()) == k), None)
    if tier_cut is None:
        raise SystemExit(f"the job has no {k}-layer plain cut among its finalists")
    cut_arch = Arch.from_dict(tier_cut["arch"])
    # The search's own picks in the tier, as the job fine-tuned them (the H192 anchor at k=2).
    picks = [Arch.from_dict(c["arch"]) for c in finalists.values()
             if c.get("source") != "layer_dropped" and low < c["predicted_latency_ms"] <= high]
    init_ray(num_cpus=os.cpu_count())
    try:
        fitted = dict(zip(variants, train_finalists(ctx, list(variants.values())), strict=True))
        first_k = layer_baselines(ctx, {f"first{k}": list(range(k))})[f"first{k}"]
        cut_record = train_finalists(ctx, [cut_arch])[0]
        best = max(fitted, key=lambda n: fitted[n]["dev_accuracy"])  # chosen by dev, as a user could
        reruns = train_finalists(ctx, [cut_arch, variants[best]], seed=RERUN_SEED)
    finally:
        shutdown_ray()
    cut = checked(saved_subnet_correct(ctx, ctx.path("baselines", f"first{k}", "trained")),
                  first_k["test_accuracy"], f"first{k}")

    def folder(arch, seed=None) -> Path:  # where train_finalist saved the fit
        return ctx.path("candidates", arch.hash if seed is None else f"{arch.hash}-seed{seed}", "trained")

    rows = [_row(ctx, tier_cut["reference"], cut_arch, cut_record, folder(cut_arch), cut, None)]
    rows += [_row(ctx, f"job's pick {a.short()}", a, read_json(ctx.path("candidates", a.hash, "trained.json")),
                  folder(a), cut, None) for a in picks]
    rows += [_row(ctx, n, variants[n], fitted[n], folder(variants[n]), cut, None) for n in variants]
    rows += [_row(ctx, tier_cut["reference"], cut_arch, reruns[0], folder(cut_arch, RERUN_SEED), cut, RERUN_SEED),
             _row(ctx, best, variants[best], reruns[1], folder(variants[best], RERUN_SEED), cut, RERUN_SEED)]
    doc = {"run_dir": str(run_dir), "k": k, "tier_ms": [round(low, 2), round(high, 2)],
           "variants_outside_tier": outside,
           "first_k": {"layers": k, "dev_accuracy": first_k["dev_accuracy"], "test_accuracy": first_k["test_accuracy"],
                       "note": "the teacher's own first k layers, fitted as quality.py fits baselines.truncated"},
           "models": rows,
           "summary": {"cut_finalist_margin_points_by_seed": [r["margin_over_first_k_points"] for r in rows
                                                              if r["hash"] == cut_arch.hash],
                       "best_variant_by_dev": best,
                       "best_variant_margin_points_by_seed": [r["margin_over_first_k_points"] for r in rows
                                                              if r["name"] == best],
                       "variant_margins_points": {r["name"]: r["margin_over_first_k_points"] for r in rows
                                                  if r["name"] in variants and r["seed"] is None}},
           "command": "python bench/tier_alternatives.py " + " ".join(sys.argv[1:]), "environment": environment()}
    out = Path(args.out or HERE / "results" / f"tier_alternatives_k{k}.json")
    out.write_text(json.dumps(doc, indent=2) + "\n")
    print(json.dumps(doc, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
