"""Stage `baseline`: TF-IDF + logistic regression on the job's split, the classical reference point.

Fitted on the training split (capped, see `baselines.MAX_TRAIN_TEXTS`), with C picked on and
figures reported for the same dev/test rows the finalists are judged on (`ctx.eval_task`), and
its latency measured like theirs: the median of 30 single-example predictions at the job's
thread count. A reference point is a courtesy, never a reason to fail a job: any error becomes a
warning event and a `null` baseline. The result is written to baseline.json first, so a resumed
job does not fit it again.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from slimformer.workers.context import RunContext, read_json, write_json
from slimformer.workers.references import BASELINE_FILE


def fit_baseline(ctx: RunContext) -> dict[str, Any]:
    """The fitted baseline as a JSON-ready dict (raises on any error)."""
    from slimformer.baselines import fit_tfidf_logistic_regression

    task = ctx.eval_task
    fitted = fit_tfidf_logistic_regression(ctx.task.train, task.dev, task.test, seed=ctx.spec.seed,
                                           threads=ctx.latency_setting.threads)
    return asdict(fitted)


def stage_baseline(ctx: RunContext) -> dict[str, Any]:
    file = ctx.path(BASELINE_FILE)
    if file.exists():
        doc = read_json(file)
    else:
        ctx.reporter.progress("baseline", 0.1, "fitting TF-IDF + logistic regression")
        try:
            doc = {"baseline": fit_baseline(ctx), "error": None}
        except Exception as exc:  # noqa: BLE001 - a reference point must never fail the job
            ctx.reporter.warning(f"TF-IDF + logistic regression baseline not available: {exc}")
            doc = {"baseline": None, "error": f"{type(exc).__name__}: {exc}"}
        write_json(file, doc)
    b = doc["baseline"]
    if b is None:
        return {"baseline": None, "error": doc["error"]}
    return {k: b[k] for k in ("dev_accuracy", "test_accuracy", "latency_ms", "fit_seconds", "train_examples",
                              "features")}
