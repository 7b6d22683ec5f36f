"""The `baseline` stage: TF-IDF + logistic regression on the job's own split, on the tiny task.

Real scikit-learn on the tiny sentiment set (its classes are told apart by single words, so a
linear model on words must beat chance by far); resumption and a failure that must not fail the job.
"""

from __future__ import annotations

import dataclasses

import pytest

from slimformer.baselines import fit_tfidf_logistic_regression
from slimformer.contracts.spec import JobSpec
from slimformer.metrics import classification_metrics
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


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """One teacher cache for the module: the tiny task teacher is fine-tuned once."""
    return tmp_path_factory.mktemp("cache")


def context(spec, run_dir, reporter, cache) -> RunContext:
    return RunContext(spec, run_dir, reporter, use_ray=False, cache_dir=cache)


def test_the_baseline_is_fitted_on_the_job_split_and_beats_chance(spec, tmp_path, cache):
    ctx = context(spec, tmp_path / "run", Recorder(), cache)
    summary = stage_baseline(ctx)
    doc = read_json(tmp_path / "run" / "baseline.json")
    b = doc["value"]
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
    # Macro-F1 and per-class figures from the same predictions.
    assert point["test_macro_f1"] == pytest.approx(classification_metrics(
        b["test_predictions"], [e.label for e in ctx.eval_task.test], 2)["macro_f1"])
    assert set(point["dev_per_class"]) == {"negative", "positive"}
    assert sum(c["support"] for c in point["dev_per_class"].values()) == len(ctx.eval_task.dev)
    # The teacher's on the same rows, and the job's metric: a balanced task is judged on accuracy.
    teacher = reference_points(ctx.run_dir)
    assert teacher["metric"] == "accuracy" and summary["metric"] == "accuracy"
    assert read_json(ctx.run_dir / "teacher_metrics.json")["value"]["dev_accuracy"] == pytest.approx(
        ctx.teacher.dev_accuracy)


def test_caps_bound_the_rows_and_the_vocabulary(tiny_task):
    fitted = fit_tfidf_logistic_regression(tiny_task.train, tiny_task.dev, tiny_task.test, repeats=3,
                                           max_train=30, max_features=10)
    assert fitted.train_examples == 30 and fitted.features == 10
    assert 0 <= fitted.dev_accuracy <= 1 and len(fitted.test_predictions) == len(tiny_task.test)


def test_on_a_macro_f1_job_the_baseline_is_picked_by_macro_f1_with_class_weights_tried(tiny_task):
    """Minority positives: picked by dev macro-F1 over C and balanced weights, the baseline can only do at
    least as well on that figure as the accuracy-picked, unweighted fit, and says how it was picked."""
    negatives = [e for e in tiny_task.train if e.label == 0]
    train = negatives + [e for e in tiny_task.train if e.label == 1][: round(len(negatives) * 0.1)]
    gold = [e.label for e in tiny_task.dev]

    def dev_f1(fitted):
        return classification_metrics(fitted.dev_predictions, gold, 2)["macro_f1"]

    by_accuracy = fit_tfidf_logistic_regression(train, tiny_task.dev, tiny_task.test, repeats=1)
    by_f1 = fit_tfidf_logistic_regression(train, tiny_task.dev, tiny_task.test, repeats=1, metric="macro_f1")
    assert (by_accuracy.picked_by, by_accuracy.class_weight) == ("accuracy", None)
    assert by_f1.picked_by == "macro_f1" and by_f1.class_weight in (None, "balanced")
    assert dev_f1(by_f1) >= dev_f1(by_accuracy)
    right = sum(p == g for p, g in zip(by_f1.dev_predictions, gold, strict=True))
    assert by_f1.dev_accuracy == pytest.approx(right / len(gold))  # still accuracy, whatever it was picked by


def test_a_fitted_baseline_is_not_fitted_again_on_resume(spec, tmp_path, cache):
    first_recorder = Recorder()
    first = stage_baseline(context(spec, tmp_path / "run", first_recorder, cache))
    assert len(first_recorder.progressed) == 2  # the teacher's figures, then the baseline
    mtime = (tmp_path / "run" / "baseline.json").stat().st_mtime_ns
    again = Recorder()
    resumed = stage_baseline(context(spec, tmp_path / "run", again, cache))
    assert resumed == first and again.progressed == []  # nothing fitted
    assert (tmp_path / "run" / "baseline.json").stat().st_mtime_ns == mtime


def test_a_baseline_that_cannot_be_fitted_does_not_fail_the_job(spec, tmp_path, monkeypatch, cache):
    """A training split of one class (logistic regression refuses it): a warning and a null point,
    and the job goes on to its next stage."""
    recorder = Recorder(cancel_at="states")
    ctx = context(spec, tmp_path / "run", recorder, cache)
    task = ctx.task
    ctx.__dict__["task"] = dataclasses.replace(task, train=[e for e in task.train if e.label == 1])
    # The pipeline builds its context from the spec; hand it this one, whose task the test changed.
    monkeypatch.setattr(pipeline, "RunContext", lambda *args, **kwargs: ctx)
    with pytest.raises(JobCancelled):  # stopped once the stage after the baseline starts
        run_job(spec, ctx.run_dir, recorder, use_ray=False, cache_dir=cache)
    assert completed_stages(tmp_path / "run") == ["prepare", "baseline"]
    doc = read_json(tmp_path / "run" / "baseline.json")
    assert doc["value"] is None and "ValueError" in doc["error"]
    assert any(m.startswith("warning: TF-IDF + logistic regression baseline not available") for m in recorder.messages)
    refs = reference_points(tmp_path / "run")
    assert refs["baseline"] is None and refs["teacher"]["params"] > 0
    rows = card_rows(tmp_path / "run", {"hash": "abc", "params": 5, "latency_ms": 1.0, "dev_accuracy": 0.5})
    assert [r["name"] for r in rows] == [f"teacher ({spec.teacher}, fine-tuned by slimformer)", "this model (abc)"]



def test_an_imbalanced_task_is_judged_on_macro_f1_and_the_search_s_error_follows(spec, tmp_path, cache, tiny_task):
    """13% positives in training, no metric in the spec: macro-F1, recorded for the reporter; a plan that
    scores by error rate then scores by 1 - macro-F1. An explicit metric wins."""
    from slimformer.workers.stages.search import score_metric

    negatives = [e for e in tiny_task.train if e.label == 0]
    positives = [e for e in tiny_task.train if e.label == 1][: round(len(negatives) * 0.15)]
    ctx = context(spec, tmp_path / "run", Recorder(), cache)
    ctx.__dict__["task"] = dataclasses.replace(tiny_task, train=negatives + positives)
    assert ctx.metric == "macro_f1"
    stage_baseline(ctx)
    metric = read_json(tmp_path / "run" / "metric.json")
    assert metric["metric"] == "macro_f1" and metric["requested"] is None
    assert metric["smallest_class_share"] == pytest.approx(len(positives) / (len(negatives) + len(positives)))
    assert reference_points(ctx.run_dir)["metric"] == "macro_f1"
    assert score_metric(ctx) == "kl"  # the default score is the KL to the teacher, whatever the metric
    ctx.plan.score_metric = "error"
    assert score_metric(ctx) == "f1_error"

    balanced = context(spec.model_copy(update={"metric": "macro_f1"}), tmp_path / "other", Recorder(), cache)
    balanced.plan.score_metric = "error"
    assert balanced.metric == "macro_f1" and score_metric(balanced) == "f1_error"
    accuracy = context(spec, tmp_path / "third", Recorder(), cache)
    accuracy.plan.score_metric = "error"
    assert accuracy.metric == "accuracy" and score_metric(accuracy) == "error"


def test_a_second_job_on_the_task_reads_the_teachers_figures_from_its_cache(spec, tmp_path, cache, monkeypatch):
    from slimformer.supernet import task_metrics

    first = stage_baseline(context(spec, tmp_path / "first", Recorder(), cache))
    ctx = context(spec, tmp_path / "second", Recorder(), cache)
    kept = list(ctx.teacher.cache_path.glob("eval_metrics-*.json"))
    assert [f.name for f in kept] == [f"eval_metrics-{ctx.eval_task.fingerprint()}.json"]

    def no_forward_pass(*args, **kwargs):
        raise AssertionError("the teacher's figures were computed again")

    monkeypatch.setattr(task_metrics, "model_metrics", no_forward_pass)
    second = stage_baseline(ctx)
    assert second["teacher_dev_macro_f1"] == first["teacher_dev_macro_f1"] is not None
    assert read_json(tmp_path / "second" / "teacher_metrics.json") == read_json(
        tmp_path / "first" / "teacher_metrics.json")
