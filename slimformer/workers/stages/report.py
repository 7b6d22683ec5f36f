"""Stage `report`: the measured Pareto front of the finalists, the recommended model, and pareto.png."""

from __future__ import annotations

from typing import Any

from slimformer.workers.context import RunContext, read_json, write_json


def measured_front(records: list[dict[str, Any]]) -> list[str]:
    """Hashes of finalists no other finalist beats on both dev accuracy and measured latency."""
    from slimformer.search.pareto import pareto_front

    points = [(-r["dev_accuracy"], r["latency_ms"]) for r in records]
    return [records[i]["hash"] for i in pareto_front(points)]


def stage_report(ctx: RunContext) -> dict[str, Any]:
    """The measured Pareto front of the finalists and the recommended model (best dev accuracy).

    Only finalists whose measured figures meet the budgets are offered; if none does, all are,
    and `within_budget` in the summary says so.
    """
    records = read_json(ctx.path("finalists.json"))
    eligible = [r for r in records if r.get("within_budget", True)]
    if not eligible:
        ctx.reporter.event("no finalist met the budgets as measured: the front shows them all")
    front = measured_front(eligible or records)
    for r in records:
        r["pareto"] = r["hash"] in front
    write_json(ctx.path("finalists.json"), records)
    best = max(eligible or records, key=lambda r: (r["dev_accuracy"], -r["latency_ms"]))
    summary = {"best": best["hash"], "folder": best["folder"], "pareto": front, "sizes": best["size_bytes"],
               "within_budget": bool(eligible), "over_budget": [r["hash"] for r in records if r not in eligible]}
    write_json(ctx.path("export.json"), summary)
    write_pareto_plot(ctx, records)
    return summary


def write_pareto_plot(ctx: RunContext, records: list[dict[str, Any]]) -> None:
    """pareto.png: finalists' dev accuracy against measured latency, the teacher marked."""
    from slimformer.plots import PlotPoint, ReferencePoint, render_pareto

    teacher = read_json(ctx.path("teacher.json"))["teacher"]
    points = [PlotPoint(r["hash"], r["latency_ms"], r["dev_accuracy"], r["pareto"]) for r in records]
    refs = [ReferencePoint("teacher", teacher["latency_ms"], teacher["dev_accuracy"], "*")]
    image = render_pareto(points, "png", ctx.spec.name or "slimformer job", "dev accuracy", refs)
    ctx.path("pareto.png").write_bytes(image)
