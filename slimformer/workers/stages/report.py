"""Stage `report`: the measured Pareto front of the finalists, the recommended model, and pareto.png.

Both optimise the job's task metric (`ctx.metric`: accuracy, or macro-F1 on an imbalanced task) on dev.
"""

from __future__ import annotations

from typing import Any

from slimformer.metrics import LABELS, metric_value
from slimformer.workers.context import RunContext, read_json, write_json
from slimformer.workers.variants import offered_variants, point


def measured_front(records: list[dict[str, Any]], metric: str = "accuracy") -> list[str]:
    """Hashes of finalists no other finalist beats on both the dev metric and measured latency."""
    from slimformer.search.pareto import pareto_front

    points = [(-metric_value(r, metric), r["latency_ms"]) for r in records]
    return [records[i]["hash"] for i in pareto_front(points)]


def variant_points(records: list[dict[str, Any]], runtime: str, within_budget: bool) -> list[dict[str, Any]]:
    """Every (finalist, variant) the job's runtime can serve, as a point with that variant's figures.

    With `within_budget`, only the variants whose own measured figures meet the budgets.
    """
    out = []
    for r in records:
        for name in offered_variants(r, runtime):
            p = point(r, name)
            if not within_budget or p.get("within_budget", True):
                out.append(p)
    return out


def stage_report(ctx: RunContext) -> dict[str, Any]:
    """The measured Pareto front of the finalists and the recommended model (best dev metric).

    Only finalists whose measured figures meet the budgets are offered; if none does, all are,
    and `within_budget` in the summary says so. For an onnxruntime job each finalist's fp32 and
    int8 variants are points of their own (workers/variants.py).
    """
    from slimformer.search.pareto import pareto_front

    metric = ctx.metric
    records = read_json(ctx.path("finalists.json"))
    eligible = [r for r in records if r.get("within_budget", True)]
    if not eligible:
        ctx.reporter.event("no finalist met the budgets as measured: the front shows them all")
    # For onnxruntime jobs fp32 and int8 are separate points: a finalist is on the front when either is.
    points = variant_points(eligible or records, ctx.latency_setting.runtime, within_budget=bool(eligible))
    on_front = [points[i] for i in pareto_front([(-metric_value(p, metric), p["latency_ms"]) for p in points])]
    for r in records:
        r["pareto_variants"] = [p["variant"] for p in on_front if p["hash"] == r["hash"]]
        r["pareto"] = bool(r["pareto_variants"])
    front = [r["hash"] for r in records if r["pareto"]]
    write_json(ctx.path("finalists.json"), records)
    best = max(points, key=lambda p: (metric_value(p, metric), -p["latency_ms"]))
    summary = {"best": best["hash"], "best_variant": best["variant"], "folder": best["folder"], "pareto": front,
               "pareto_points": [{"hash": p["hash"], "variant": p["variant"]} for p in on_front],
               "sizes": best["size_bytes"], "within_budget": bool(eligible),
               "over_budget": [r["hash"] for r in records if r not in eligible], "metric": metric}
    write_json(ctx.path("export.json"), summary)
    write_pareto_plot(ctx, records)
    return summary


def write_pareto_plot(ctx: RunContext, records: list[dict[str, Any]]) -> None:
    """pareto.png: finalists' dev metric against measured latency, the teacher and the baseline marked."""
    from slimformer.plots import PlotPoint, ReferencePoint, render_pareto
    from slimformer.workers.references import reference_points

    metric = ctx.metric
    refs_doc = reference_points(ctx.run_dir)
    points = [PlotPoint(r["hash"], r["latency_ms"], metric_value(r, metric), r["pareto"]) for r in records]
    refs = [ReferencePoint(label, refs_doc[kind]["latency_ms"], metric_value(refs_doc[kind], metric), marker)
            for kind, label, marker in (("teacher", "teacher", "*"), ("baseline", "TF-IDF + LR", "s"))
            if refs_doc[kind] is not None and metric_value(refs_doc[kind], metric) is not None]
    image = render_pareto(points, "png", ctx.spec.name or "slimformer job", f"dev {LABELS[metric]}", refs)
    ctx.path("pareto.png").write_bytes(image)
