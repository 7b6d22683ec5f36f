"""fp32 and int8: two variants of one finalist, each with its own accuracy, latency and memory.

Every finalist is exported as model.onnx (fp32) and model.int8.onnx (dynamically quantized).
Both files are evaluated here as a user would run them (`slimformer.load(..., backend="onnx")`
on the raw dev and test rows), so the figures include the exported tokenizer as well. For a job
whose runtime is onnxruntime both variants are points of the measured front and either may meet
the budgets; for the torch runtime only the fp32 model is what was timed, so int8 is reported
beside it but not offered as a point.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

VARIANTS = ("fp32", "int8")
FORMATS = {"fp32": "onnx", "int8": "onnx-int8"}  # download format of each variant (store.models.ARTIFACT_FORMATS)
# int8 is recommended when it is faster and loses at most this much dev accuracy (1 point).
MAX_INT8_ACCURACY_LOSS = 0.01


def onnx_accuracy(folder: Path | str, rows: Sequence[Any], quantized: bool) -> float | None:
    """Accuracy of the folder's model.onnx (or model.int8.onnx) on `rows` (objects with text, label)."""
    from slimformer.inference import load

    if not rows:
        return None
    clf = load(folder, backend="onnx", quantized=quantized, batch_size=64)
    predicted = clf.logits([r.text for r in rows]).argmax(axis=-1)
    return float(sum(int(p) == r.label for p, r in zip(predicted, rows, strict=True)) / len(rows))


def recommend(variants: dict[str, dict[str, Any]]) -> tuple[str, str]:
    """(variant, reason): int8 when it is faster at no more than 1 point of dev accuracy, else fp32."""
    fp32, int8 = variants.get("fp32"), variants.get("int8")
    if not int8 or int8.get("dev_accuracy") is None or int8.get("latency_ms") is None:
        return "fp32", "no int8 figures"
    loss = fp32["dev_accuracy"] - int8["dev_accuracy"]
    if int8["latency_ms"] < fp32["latency_ms"] and loss <= MAX_INT8_ACCURACY_LOSS:
        return "int8", (f"int8 is {fp32['latency_ms'] / int8['latency_ms']:.2f}x as fast and loses "
                        f"{100 * max(loss, 0.0):.2g} points of dev accuracy (at most {100 * MAX_INT8_ACCURACY_LOSS:g})")
    if int8["latency_ms"] >= fp32["latency_ms"]:
        return "fp32", "int8 is not faster at this shape"
    return "fp32", f"int8 loses {100 * loss:.2g} points of dev accuracy (more than {100 * MAX_INT8_ACCURACY_LOSS:g})"


def offered_variants(record: dict[str, Any], runtime: str) -> list[str]:
    """The variants of a finalist that are points of the measured front for a job's runtime."""
    if runtime != "onnxruntime":
        return ["fp32"]
    return [v for v in VARIANTS if v in record.get("variants", {})] or ["fp32"]


def point(record: dict[str, Any], variant: str) -> dict[str, Any]:
    """A variant's figures (dev accuracy, latency, memory, budget check), falling back to the record's."""
    return {**record, **record.get("variants", {}).get(variant, {}), "variant": variant}
