"""fp32 and int8 as variants of one finalist: the recommendation, budgets and the measured front."""

from __future__ import annotations

import copy

from slimformer.workers.stages.finalize import apply_budgets
from slimformer.workers.stages.report import variant_points
from slimformer.workers.variants import recommend


def record(name: str, dev: float, ms: float, int8_dev: float, int8_ms: float, params: int = 1_000_000) -> dict:
    fp32 = {"format": "onnx", "dev_accuracy": dev, "test_accuracy": dev, "latency_ms": ms, "memory_mb": 10.0,
            "params": params}
    int8 = {**fp32, "format": "onnx-int8", "dev_accuracy": int8_dev, "latency_ms": int8_ms, "memory_mb": 4.0}
    return {"hash": name, "dev_accuracy": dev, "latency_ms": ms, "memory_mb": 10.0, "params": params,
            "variants": {"fp32": fp32, "int8": int8}}


def front(records: list[dict], runtime: str) -> set[tuple[str, str]]:
    from slimformer.search.pareto import pareto_front

    points = variant_points(records, runtime, within_budget=False)
    return {(points[i]["hash"], points[i]["variant"])
            for i in pareto_front([(-p["dev_accuracy"], p["latency_ms"]) for p in points])}


def test_int8_is_recommended_when_faster_at_no_more_than_one_point():
    assert recommend(record("a", 0.85, 2.0, 0.845, 1.0)["variants"])[0] == "int8"
    assert recommend(record("a", 0.85, 2.0, 0.83, 1.0)["variants"]) == (
        "fp32", "int8 loses 2 points of dev accuracy (more than 1)")
    assert recommend(record("a", 0.85, 1.0, 0.85, 1.2)["variants"]) == ("fp32", "int8 is not faster at this shape")
    assert recommend({"fp32": record("a", 0.85, 1.0, 0.85, 1.0)["variants"]["fp32"]})[0] == "fp32"


def test_int8_is_judged_on_the_job_metric():
    variants = record("a", 0.85, 2.0, 0.845, 1.0)["variants"]
    variants["fp32"]["dev_macro_f1"], variants["int8"]["dev_macro_f1"] = 0.70, 0.65  # the small class suffers
    assert recommend(variants)[0] == "int8"  # accuracy barely moved
    assert recommend(variants, "macro_f1") == ("fp32", "int8 loses 5 points of dev macro-F1 (more than 1)")


def test_int8_variant_joins_the_onnxruntime_front_when_it_wins():
    # a's int8 is faster than everything at a's accuracy minus a little; b is slower and worse than a's int8.
    records = [record("a", 0.85, 2.0, 0.84, 0.8), record("b", 0.80, 1.5, 0.70, 1.4)]
    assert front(records, "onnxruntime") == {("a", "fp32"), ("a", "int8")}
    # The torch runtime timed the fp32 models only: int8 is no point there.
    assert front(records, "torch") == {("a", "fp32"), ("b", "fp32")}
    # An int8 that loses accuracy for no speed is dominated by its own fp32.
    assert front([record("c", 0.85, 1.0, 0.80, 1.1)], "onnxruntime") == {("c", "fp32")}


def test_an_onnxruntime_budget_can_be_met_by_the_int8_variant_alone():
    r = record("a", 0.85, 2.0, 0.84, 0.8)
    onnx = copy.deepcopy(r)
    apply_budgets(onnx, {"latency_ms": 1.0}, "onnxruntime")
    assert onnx["budget_violations"] == {"latency_ms": 2.0}  # the fp32 model misses it ...
    assert onnx["variants"]["int8"]["within_budget"] and onnx["within_budget"]  # ... int8 meets it
    assert variant_points([onnx], "onnxruntime", within_budget=True)[0]["variant"] == "int8"
    torch_run = copy.deepcopy(r)
    apply_budgets(torch_run, {"latency_ms": 1.0}, "torch")
    assert not torch_run["within_budget"]
    both_miss = copy.deepcopy(r)
    apply_budgets(both_miss, {"params_m": 0.5}, "onnxruntime")  # int8 has as many parameters
    assert not both_miss["within_budget"] and not both_miss["variants"]["int8"]["within_budget"]


def test_records_without_variants_are_one_fp32_point():
    old = {"hash": "x", "dev_accuracy": 0.8, "latency_ms": 1.0, "memory_mb": 3.0, "params": 10}
    apply_budgets(old, {"latency_ms": 2.0}, "onnxruntime")
    assert old["within_budget"]
    assert [p["variant"] for p in variant_points([old], "onnxruntime", within_budget=True)] == ["fp32"]
