"""The `baseline` stage: TF-IDF + logistic regression on the job's own split, on the tiny task.

Real scikit-learn on the tiny sentiment set (its classes are told apart by single words, so a
linear model on words must beat chance by far); resumption and a failure that must not fail the job.
"""

from __future__ import annotations

import dataclasses

import pytest

from slimformer.baselines import fit_tfidf_logistic_regression
from slimformer.contracts.spec import JobSpec
from slimformer.workers import pipeline
from slimformer.workers.context import RunContext, read_json
from slimformer.workers.pipeline import completed_stages, run_job
from slimformer.workers.progress import JobCancelled, Reporter
from slimformer.workers.references import baseline_point, card_rows, reference_points
from slimformer.workers.stages.baseline import stage_baseline


class Recorder(Reporter):
    def __init__(self, cancel_at: str | None = None):
        self.messages: list[str] = []
        self.progressed: list[str] = []
        self.stage = ""
        self.cancel_at = cancel_at

    def stage_started(self, stage, index, total):
        self.stage = stage

    def progress(self, stage, fraction, message=""):
        self.progressed.append(message)

    def event(self, message):
        self.messages.append(message)

    def check_cancelled(self):
        if self.stage == self.cancel_at:
            raise JobCancelled("stop here")


@pytest.fixture
def spec(tiny_teacher_dir, task_csv):
    return JobSpec(name="tiny", teacher=str(tiny_teacher_dir), dataset=str(task_csv), corpus=None, preset="tiny",
                   latency={"threads": 1})


def test_the_baseline_is_fitted_on_the_job_split_and_beats_chance(spec, tmp_path):
    ctx = RunContext(spec, tmp_path / "run", Recorder(), use_ray=False)
    summary = stage_baseline(ctx)
    doc = read_json(tmp_path / "run" / "baseline.json")
    b = doc["baseline"]
    assert doc["error"] is None and b["name"] == "tfidf_lr"
    # The classes differ by their sentiment words: a linear model on words separates them.
    assert 0.8 <= b["dev_accuracy"] <= 1 and 0.8 <= b["test_accuracy"] <= 1
    assert 0 < b["latency_ms"] < 1000 and b["fit_seconds"] > 0 and b["threads"] == 1
    assert b["train_examples"] == len(ctx.task.train) and b["features"] > 20
    # Judged on exactly the rows the finalists are judged on.
    assert len(b["dev_predictions"]) == len(ctx.eval_task.dev) and len(b["test_predictions"]) == len(ctx.eval_task.test)
    right = sum(p == e.label for p, e in zip(b["test_predictions"], ctx.eval_task.test, strict=True))
    assert b["test_accuracy"] == pytest.approx(right / len(ctx.eval_task.test))
    assert summary["dev_accuracy"] == b["dev_accuracy"]
    point = baseline_point(ctx.run_dir)
    assert point["name"] == "TF-IDF + logistic regression" and point["latency_ms"] == b["latency_ms"]


def test_caps_bound_the_rows_and_the_vocabulary(tiny_task):
    fitted = fit_tfidf_logistic_regression(tiny_task.train, tiny_task.dev, tiny_task.test, repeats=3,
                                           max_train=30, max_features=10)
    assert fitted.train_examples == 30 and fitted.features == 10
    assert 0 <= fitted.dev_accuracy <= 1 and len(fitted.test_predictions) == len(tiny_task.test)


def test_a_fitted_baseline_is_not_fitted_again_on_resume(spec, tmp_path):
    ctx = RunContext(spec, tmp_path / "run", Recorder(), use_ray=False)
    first = stage_baseline(ctx)
    mtime = (tmp_path / "run" / "baseline.json").stat().st_mtime_ns
    again = Recorder()
    resumed = stage_baseline(RunContext(spec, tmp_path / "run", again, use_ray=False))
    assert resumed == first and again.progressed == []  # nothing fitted
    assert (tmp_path / "run" / "baseline.json").stat().st_mtime_ns == mtime


def test_a_baseline_that_cannot_be_fitted_does_not_fail_the_job(spec, tmp_path, monkeypatch):
    """A training split of one class (logistic regression refuses it): a warning and a null point,
    and the job goes on to its next stage."""
    recorder = Recorder(cancel_at="states")
    ctx = RunContext(spec, tmp_path / "run", recorder, use_ray=False)
    task = ctx.task
    ctx.__dict__["task"] = dataclasses.replace(task, train=[e for e in task.train if e.label == 1])
    # The pipeline builds its context from the spec; hand it this one, whose task the test changed.
    monkeypatch.setattr(pipeline, "RunContext", lambda *args, **kwargs: ctx)
    with pytest.raises(JobCancelled):  # stopped once the stage after the baseline starts
        run_job(spec, ctx.run_dir, recorder, use_ray=False, cache_dir=tmp_path / "cache")
    assert completed_stages(tmp_path / "run") == ["prepare", "baseline"]
    doc = read_json(tmp_path / "run" / "baseline.json")
    assert doc["baseline"] is None and "ValueError" in doc["error"]
    assert any(m.startswith("warning: TF-IDF + logistic regression baseline not available") for m in recorder.messages)
    refs = reference_points(tmp_path / "run")
    assert refs["baseline"] is None and refs["teacher"]["params"] > 0
    rows = card_rows(tmp_path / "run", {"hash": "abc", "params": 5, "latency_ms": 1.0, "dev_accuracy": 0.5})
    assert [r["name"] for r in rows] == [f"teacher ({spec.teacher})", "this model (abc)"]

