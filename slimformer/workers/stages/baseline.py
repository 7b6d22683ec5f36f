"""Stage `baseline`: the job's reference points and its task metric.

- TF-IDF + logistic regression, the classical reference point: fitted on the training split
  (capped, see `baselines.MAX_TRAIN_TEXTS`), with C (and, on a macro-F1 job, balanced class
  weights) picked by the job's metric on the same dev rows the finalists are judged on
  (`ctx.eval_task`), figures reported on those rows, and its latency measured like theirs: the
  median of 30 single-example predictions at the job's thread count.
- The task teacher's macro-F1 and per-class precision/recall on those rows (its accuracy and
  latency come from `prepare`).
- The metric the job optimises (`ctx.metric`: the spec's, or resolved from the class balance).

A reference point is a courtesy, never a reason to fail a job: any error becomes a warning event
and a `null` point. Each result is written to its file first, so a resumed job does not redo it.

Cost, measured on the real teacher (minilm-l6, cached, fine-tuned; quick preset on rotten-tomatoes:
10,202 training rows, 1,275 dev and 1,275 test rows; 2 driver threads, on 2 cores shared with another
job, `nice -n 10`): the whole stage took 141 s, well over a minute. Nearly all of it is the teacher's
forward pass over dev+test (160 s when timed alone, about 80 s of CPU time); TF-IDF + logistic
regression takes 5 s (fit 2-3 s, latency 0.9 ms per text). So the teacher's figures are kept beside the
cached teacher, per set of rows (`teacher_metrics`): the first job on a task pays for that pass, every
later one reads it.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

from slimformer.workers.context import RunContext, read_json, write_json
from slimformer.workers.references import BASELINE_FILE, METRIC_FILE, TEACHER_METRICS_FILE


def fit_baseline(ctx: RunContext) -> dict[str, Any]:
    """The fitted baseline, with its metrics on the finalists' rows, as a JSON-ready dict (raises on any error)."""
    from slimformer.baselines import fit_tfidf_logistic_regression
    from slimformer.metrics import split_metrics

    task = ctx.eval_task
    fitted = fit_tfidf_logistic_regression(ctx.task.train, task.dev, task.test, seed=ctx.spec.seed,
                                           threads=ctx.latency_setting.threads, metric=ctx.metric)
    doc = asdict(fitted)
    for split, examples, predicted in (("dev", task.dev, fitted.dev_predictions),
                                       ("test", task.test, fitted.test_predictions)):
        if examples:
            doc.update(split_metrics(split, predicted, [e.label for e in examples], task.labels))
    return doc


def teacher_metrics(ctx: RunContext) -> dict[str, Any]:
    """The task teacher's accuracy, macro-F1 and per-class precision/recall on the finalists' rows.

    A teacher in the job cache is the same model for every job on the task, so its figures on the
    same rows are too: they are kept in its cache folder under the rows' fingerprint. A teacher
    loaded from a folder of the user's own is never written to.
    """
    from slimformer.supernet.task_metrics import model_metrics
    from slimformer.supernet.timing import torch_threads

    task, teacher = ctx.eval_task, ctx.teacher
    cached = _teacher_metrics_file(ctx, teacher.cache_path, task.fingerprint())
    if cached is not None and cached.exists():
        return read_json(cached)
    with torch_threads(ctx.plan.driver_threads):
        doc = model_metrics(teacher.model, teacher.tokenizer, {"dev": task.dev, "test": task.test}, task.labels,
                            teacher.max_length)
    if cached is not None:
        _write_shared(cached, doc)
    return doc


def _teacher_metrics_file(ctx: RunContext, folder: Path, rows: str) -> Path | None:
    """Where a cached teacher's figures on `rows` live; None for a teacher outside the job cache."""
    try:
        Path(folder).resolve().relative_to(Path(ctx.cache_dir).resolve())
    except ValueError:
        return None
    return Path(folder) / f"eval_metrics-{rows}.json"


def _write_shared(path: Path, doc: dict[str, Any]) -> None:
    """Atomic, with a temp file of this process's own: two jobs on one task may write it at once."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump(doc, out)
    os.replace(tmp, path)


def _once(ctx: RunContext, file_name: str, what: str, fn, at: float) -> dict[str, Any]:
    """{"value": fn(ctx) or None, "error": None or why}, computed once and kept in `file_name`."""
    file = ctx.path(file_name)
    if file.exists():
        return read_json(file)
    ctx.reporter.progress("baseline", at, what)
    try:
        doc = {"value": fn(ctx), "error": None}
    except Exception as exc:  # noqa: BLE001 - a reference point must never fail the job
        ctx.reporter.warning(f"{what} not available: {exc}")
        doc = {"value": None, "error": f"{type(exc).__name__}: {exc}"}
    write_json(file, doc)
    return doc


def stage_baseline(ctx: RunContext) -> dict[str, Any]:
    from slimformer.metrics import smallest_class_share

    share = smallest_class_share([e.label for e in ctx.task.train], len(ctx.task.labels))
    write_json(ctx.path(METRIC_FILE), {"metric": ctx.metric, "requested": ctx.spec.metric,
                                       "smallest_class_share": share})
    teacher = _once(ctx, TEACHER_METRICS_FILE, "the teacher's macro-F1 and per-class figures", teacher_metrics, 0.05)
    doc = _once(ctx, BASELINE_FILE, "TF-IDF + logistic regression baseline", fit_baseline, 0.5)
    summary: dict[str, Any] = {"metric": ctx.metric, "smallest_class_share": round(share, 4),
                               "teacher_dev_macro_f1": (teacher["value"] or {}).get("dev_macro_f1")}
    b = doc["value"]
    if b is None:
        return {**summary, "baseline": None, "error": doc["error"]}
    return {**summary, **{k: b[k] for k in ("dev_accuracy", "test_accuracy", "dev_macro_f1", "latency_ms",
                                             "fit_seconds", "train_examples", "features")}}
