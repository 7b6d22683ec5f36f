"""One finalist after fine-tuning: the model as shipped, exported, and the accuracy of both of its ONNX files.

This runs inside the finalist's own Ray task, right after its fine-tune, so the two cores export and
evaluate finalists side by side while other finalists still train. Done in the driver, one
finalist after another, it took 5-16 s per finalist on this machine (stop 21, 2 threads: export 2-5 s,
fp32 and int8 ONNX on the whole dev and test splits 3-11 s, for the first 1 to 5 teacher layers)
while the other core idled. Latency is not measured here: timing a model beside another task's training
would measure the contention, so finalize times every finalist together afterwards.

Both steps are idempotent (`export.json` and `variant_accuracy.json` in the candidate folder), so
the driver calls `export_finalist` again and reads what the task wrote, or does the work itself
for a folder trained before this split.

The fp32 figures come from the fine-tune's own predictions (`fit_metrics`, kept in `trained.json`)
where the shipped model is the trained one: the export checks model.onnx against it (logits within
1e-4) and its tokenizer truncates where training did, so another pass over dev and test with
model.onnx counted the same predictions. On three finalists of stop 32's rerun of the quality job
those two passes took 4.0, 10.7 and 18.4 s on one core (the first layer, every other layer, the
first 5 layers) and counted exactly what each fine-tune had. A job that trims the vocabulary ships
another tokenizer, so there both files are still run on the rows; the int8 file always is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from slimformer.search_space import Arch
from slimformer.workers.context import RunContext, read_json, write_json
from slimformer.workers.variants import variant_accuracy
from slimformer.workers.vocab import job_kept_vocab


def shipped_model(ctx: RunContext, trained: Path, with_tokenizer: bool = True) -> tuple[Any, Any]:
    """(model, tokenizer) of a trained folder as the user gets it: trimmed to the job's vocabulary
    where the search costed students with it (space.json says so), else as trained.

    `with_tokenizer=False` leaves the tokenizer as trained (the driver times the model only, and
    trimming a tokenizer writes and reads a folder of files).
    """
    from slimformer.supernet.load import load_subnet
    from slimformer.supernet.vocab import trim_subnet, trim_tokenizer

    model, tokenizer, _ = load_subnet(trained)
    if not trims_vocab(ctx):
        return model, tokenizer
    kept = job_kept_vocab(ctx)
    return trim_subnet(model, kept), trim_tokenizer(tokenizer, kept) if with_tokenizer else tokenizer


def fit_metrics(ctx: RunContext, dev_predictions: list[int], test_predictions: list[int]) -> dict[str, Any]:
    """Accuracy, macro-F1 and per-class figures of a fine-tune's own predictions on the eval rows."""
    from slimformer.metrics import split_metrics

    task = ctx.eval_task
    out: dict[str, Any] = {}
    for split, rows, predicted in (("dev", task.dev, dev_predictions), ("test", task.test, test_predictions)):
        out.update(split_metrics(split, predicted, [r.label for r in rows], task.labels) if rows
                   else {f"{split}_accuracy": None})
    return out


def trims_vocab(ctx: RunContext) -> bool:
    """Whether the shipped model keeps only the job's vocabulary (`shipped_model`), not the trained one."""
    return bool(ctx.space.student_vocab) and job_kept_vocab(ctx) is not None


def export_finalist(ctx: RunContext, arch: Arch, fit: dict[str, Any],
                    threads: int | None = None) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Export a fine-tuned finalist (safetensors, ONNX, int8 ONNX) and measure both ONNX files' accuracy.

    Args:
        fit: its `trained.json` record (the dev and test figures the first metrics.json shows).
        threads: onnxruntime's threads for the accuracy pass (a Ray task's one core); None: all.

    Returns:
        (what `export_folder` returned, `variant_accuracy` of the exported folder).
    """
    from slimformer.supernet.export import export_folder

    folder = ctx.path("candidates", arch.hash)
    export_file, accuracy_file = folder / "export.json", folder / "variant_accuracy.json"
    if export_file.exists():
        exported = read_json(export_file)
    else:
        model, tokenizer = shipped_model(ctx, folder / "trained")
        # The exported tokenizer truncates where fine-tuning did, so the figures below are the same model's.
        exported = export_folder(model, tokenizer, folder / "model",
                                 metrics={k: fit[k] for k in ("dev_accuracy", "test_accuracy")},
                                 max_length=ctx.teacher.max_length)
        write_json(export_file, exported)
    if accuracy_file.exists():
        return exported, read_json(accuracy_file)
    # This run's own folder (export.json names the folder where it was first exported).
    fp32 = fit.get("fit_metrics") if not trims_vocab(ctx) else None  # None: a fit recorded before them
    accuracy = variant_accuracy(ctx, folder / "model", threads, fp32=fp32)
    write_json(accuracy_file, accuracy)
    return exported, accuracy
