"""How sure is each margin over the truncated teacher? Paired 95% intervals for quality.json's per-k margins.

`targets.never_worse_than_truncation.per_k` compares the best found model within 2% of each cut's
latency with that cut, on the same test examples. One example is 0.08 point on Rotten Tomatoes, and
two models of near-equal accuracy disagree on a few dozen examples, so a one-point margin may be the
luck of which examples the split holds. A paired bootstrap over the test examples
(`metrics.paired_difference_interval`) says which margins are more than that.

Both sides are judged as the results file judged them: the found model as downloaded (its exported
fp32 ONNX file, through `slimformer.load`), the cut as the benchmark fine-tuned it (its saved SubNet,
at the teacher's max_length). Each recomputed accuracy must equal the file's, so the intervals are of
the very figures the file states. `bench/quality.py` calls `margin_intervals` on every run; for a
results file written before it did:

    python bench/quality_margins.py --run-dir /work/runs/bench-quality --results bench/results/quality.json
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any


def _found_correct(ctx, record: dict[str, Any]) -> list[bool]:
    from slimformer.inference import load  # the loader the job's variant figures come from

    folder = ctx.path("candidates", record["hash"], "model")
    clf = load(folder, backend="onnx", batch_size=64)
    predicted = clf.logits([e.text for e in ctx.task.test]).argmax(axis=-1)
    return [int(p) == e.label for p, e in zip(predicted, ctx.task.test, strict=True)]


def saved_subnet_correct(ctx, folder: Path) -> list[bool]:
    """Which test examples a saved fine-tuned SubNet gets right, at the job's tokenizer and max_length
    (as the fine-tune judged it)."""
    from slimformer.supernet.load import load_subnet
    from slimformer.supernet.task_score import predict_logits

    model, _, _ = load_subnet(folder)
    teacher = ctx.teacher
    logits = predict_logits(model, teacher.tokenizer, [e.text for e in ctx.task.test], teacher.max_length)
    return [int(p) == e.label for p, e in zip(logits.argmax(-1).tolist(), ctx.task.test, strict=True)]


def checked(correct: list[bool], stated: float, what: str) -> list[bool]:
    """`correct`, after checking that it counts the test accuracy a results file states."""
    got = sum(correct) / len(correct)
    if abs(got - stated) > 1e-9:
        raise ValueError(f"{what}: recomputed test accuracy {got:.6f} is not the file's {stated:.6f}")
    return correct


def margin_intervals(ctx, doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Per truncated k: which found model gave the margin, and the paired 95% interval in points."""
    from slimformer.metrics import paired_difference_interval

    rows = []
    cache: dict[str, list[bool]] = {}
    for base in doc["baselines"]["truncated"]:
        near = [f for f in doc["found"] if f["latency_ms"] <= 1.02 * base["latency_ms"]]
        if not near:
            rows.append({"layers": base["layers"], "found_hash": None, "margin_interval_points": None})
            continue
        best = max(near, key=lambda f: f["test_accuracy"])  # the first of equals, as targets() reads it
        if best["hash"] not in cache:
            cache[best["hash"]] = checked(_found_correct(ctx, best), best["test_accuracy"], best["hash"])
        cut = checked(saved_subnet_correct(ctx, ctx.path("baselines", f"first{base['layers']}", "trained")),
                      base["test_accuracy"], f"first{base['layers']}")
        lo, hi = paired_difference_interval(cache[best["hash"]], cut)
        disagree = sum(a != b for a, b in zip(cache[best["hash"]], cut, strict=True))
        rows.append({"layers": base["layers"], "found_hash": best["hash"], "disagreements": disagree,
                     "margin_interval_points": [round(100 * lo, 2), round(100 * hi, 2)]})
    return rows


def attach(doc: dict[str, Any], intervals: list[dict[str, Any]]) -> None:
    """Write the intervals into `targets.never_worse_than_truncation`, beside the margins they qualify."""
    block = doc["targets"]["never_worse_than_truncation"]
    by_k = {row["layers"]: row for row in intervals}
    for entry in block["per_k"]:
        row = by_k.get(entry["layers"], {})
        entry.update({k: row.get(k) for k in ("found_hash", "disagreements", "margin_interval_points")})
    block["k_better_beyond_chance"] = sum(
        1 for e in block["per_k"] if e.get("margin_interval_points") and e["margin_interval_points"][0] > 0)
    block["k_worse_beyond_chance"] = sum(
        1 for e in block["per_k"] if e.get("margin_interval_points") and e["margin_interval_points"][1] < 0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", required=True, type=Path, help="the run folder the results file came from")
    parser.add_argument("--results", type=Path, default=Path(__file__).parent / "results" / "quality.json")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from slimformer.contracts.spec import JobSpec
    from slimformer.workers.context import RunContext

    doc = json.loads(args.results.read_text())
    spec = JobSpec(name="bench-quality", preset=doc["preset"], teacher=doc["teacher_name"], dataset=doc["dataset"])
    ctx = RunContext(spec, args.run_dir, use_ray=False)
    attach(doc, margin_intervals(ctx, doc))
    args.results.write_text(json.dumps(doc, indent=2))
    for e in doc["targets"]["never_worse_than_truncation"]["per_k"]:
        print(f"first {e['layers']}: margin {e['margin_points']} points, 95% {e['margin_interval_points']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
