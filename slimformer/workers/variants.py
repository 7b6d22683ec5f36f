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

from slimformer.search_space import Arch, count_params, estimate_memory
from slimformer.workers.context import RunContext
from slimformer.workers.vocab import job_vocab

VARIANTS = ("fp32", "int8")
FORMATS = {"fp32": "onnx", "int8": "onnx-int8"}  # download format of each variant (store.models.ARTIFACT_FORMATS)
# int8 is recommended when it is faster and loses at most this much dev accuracy (1 point).
MAX_INT8_ACCURACY_LOSS = 0.01


def onnx_metrics(folder: Path | str, rows: Sequence[Any], quantized: bool, labels: Sequence[str],
                 split: str, threads: int | None = None) -> dict[str, Any]:
    """`<split>_accuracy`, `<split>_macro_f1` and `<split>_per_class` of the folder's ONNX model on `rows`."""
    from slimformer.inference import load
    from slimformer.metrics import split_metrics

    if not rows:
        return {f"{split}_accuracy": None}
    clf = load(folder, backend="onnx", quantized=quantized, batch_size=64, threads=threads)
    predicted = [int(p) for p in clf.logits([r.text for r in rows]).argmax(axis=-1)]
    return split_metrics(split, predicted, [r.label for r in rows], labels)


def recommend(variants: dict[str, dict[str, Any]], metric: str = "accuracy") -> tuple[str, str]:
    """(variant, reason): int8 when it is faster at no more than 1 point of the job's dev metric, else fp32.

    `metric` is the job's task metric ("accuracy" or "macro_f1"): on an imbalanced task int8 must keep
    macro-F1, which quantisation can lose on the small class while accuracy hardly moves.
    """
    key, name = f"dev_{metric}", "dev accuracy" if metric == "accuracy" else "dev macro-F1"
    fp32, int8 = variants.get("fp32"), variants.get("int8")
    if not fp32 or not int8 or any(v.get(k) is None for v in (fp32, int8) for k in (key, "latency_ms")):
        return "fp32", "no int8 figures to compare"
    loss = fp32[key] - int8[key]
    if int8["latency_ms"] < fp32["latency_ms"] and loss <= MAX_INT8_ACCURACY_LOSS:
        return "int8", (f"int8 is {fp32['latency_ms'] / int8['latency_ms']:.2f}x as fast and loses "
                        f"{100 * max(loss, 0.0):.2g} points of {name}, within the "
                        f"{100 * MAX_INT8_ACCURACY_LOSS:g}-point allowance")
    if int8["latency_ms"] >= fp32["latency_ms"]:
        return "fp32", "int8 is not faster at this shape"
    return "fp32", f"int8 loses {100 * loss:.2g} points of {name} (more than {100 * MAX_INT8_ACCURACY_LOSS:g})"


def offered_variants(record: dict[str, Any], runtime: str) -> list[str]:
    """The variants of a finalist that are points of the measured front for a job's runtime."""
    if runtime != "onnxruntime":
        return ["fp32"]
    return [v for v in VARIANTS if v in record.get("variants", {})] or ["fp32"]


def point(record: dict[str, Any], variant: str) -> dict[str, Any]:
    """A variant's figures (dev accuracy, latency, memory, budget check), falling back to the record's."""
    return {**record, **record.get("variants", {}).get(variant, {}), "variant": variant}


# --- finalize's use: figures of an exported finalist ------------------------------------------


def variant_accuracy(ctx: RunContext, folder: Path, threads: int | None = None,
                     fp32: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """Per variant (fp32, int8), the accuracy of the exported folder's ONNX file on the eval rows.

    Accuracy, macro-F1 and per-class precision/recall, from the same predictions. `threads`:
    onnxruntime's threads (a Ray task evaluates on the core it was given). `fp32`: those figures
    of the fp32 model, already counted on the same rows (`finalist_export.fit_metrics`), used
    instead of running model.onnx again.
    """
    task = ctx.eval_task

    def measured(quantized: bool) -> dict[str, Any]:
        return {**onnx_metrics(folder, task.dev, quantized, task.labels, "dev", threads),
                **onnx_metrics(folder, task.test, quantized, task.labels, "test", threads)}

    return {"fp32": dict(fp32) if fp32 is not None else measured(False), "int8": measured(True)}


def measure_variants(ctx: RunContext, arch: Arch, accuracy: dict[str, dict[str, Any]], latency_ms: float,
                     int8_latency_ms: float) -> dict[str, dict[str, Any]]:
    """fp32 and int8 figures of an exported finalist: `accuracy` (`variant_accuracy`), latency, memory.

    fp32's latency is the job runtime's (torch or onnxruntime), and it downloads as that runtime
    runs it; int8 is an onnxruntime model. int8 memory counts weights at one byte each.
    """
    setting, params = ctx.latency_setting, count_params(arch, ctx.space)
    out = {}
    for name, quantized, latency in (("fp32", False, latency_ms), ("int8", True, int8_latency_ms)):
        memory = estimate_memory(arch, ctx.space, setting.batch, setting.seq_len, "int8" if quantized else "float32")
        out[name] = {
            "format": "hf" if name == "fp32" and setting.runtime == "torch" else FORMATS[name],
            **accuracy[name], "latency_ms": latency, "memory_mb": round(memory.total_mb, 3), "params": params,
        }
    return out


def variant_summary(ctx: RunContext, variants: dict[str, dict[str, Any]], fp32_onnx_ms: float,
                    fit: dict[str, Any]) -> dict[str, Any]:
    """The record's variant fields: both variants, the recommended one and why, the vocabulary."""
    # Recommend on onnxruntime figures for both, whatever the job's runtime: the same engine.
    recommended, reason = recommend({"fp32": {**variants["fp32"], "latency_ms": fp32_onnx_ms},
                                     "int8": variants["int8"]}, ctx.metric)
    out: dict[str, Any] = {"variants": variants, "recommended_variant": recommended, "recommended_reason": reason}
    vocab = job_vocab(ctx) if ctx.space.student_vocab else None  # trimmed only where the search costed it so
    if vocab:
        out["vocab"] = {k: v for k, v in vocab.items() if k != "kept"}
        out["oov_rate"] = vocab["oov_rate_test"]
        out["vocab_size"] = vocab["vocab_size"]
        # What fine-tuning measured with the teacher's whole vocabulary: the cost of trimming is the gap.
        out["dev_accuracy_full_vocab"], out["test_accuracy_full_vocab"] = fit["dev_accuracy"], fit["test_accuracy"]
    return out


def update_folder_metrics(folder: Path, record: dict[str, Any]) -> None:
    """metrics.json and the model card of the exported folder, now with every measured figure."""
    from slimformer.supernet.export import update_metrics

    keys = ("dev_accuracy", "test_accuracy", "dev_macro_f1", "test_macro_f1", "dev_accuracy_full_vocab",
            "test_accuracy_full_vocab", "latency_ms", "params", "memory_mb", "vocab", "variants", "recommended_variant",
            "recommended_reason", "origin", "reference")
    update_metrics(folder, {k: record[k] for k in keys if k in record})
