"""The whole job in-process on the tiny teacher: stages, Ray block training, resume, outputs."""

from __future__ import annotations

import csv
import json
import shutil

import pytest

from slimformer.workers.pipeline import STAGE_NAMES, completed_stages, format_table, run_job, stage_marker
from slimformer.workers.progress import JobCancelled, Reporter
from slimformer.workers.spec import JobSpec


@pytest.fixture(scope="module")
def task_csv(tmp_path_factory, tiny_task):
    path = tmp_path_factory.mktemp("data") / "tiny.csv"
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        for split in (tiny_task.train, tiny_task.dev, tiny_task.test):
            for ex in split:
                writer.writerow([ex.text, tiny_task.labels[ex.label]])
    return path


@pytest.fixture(scope="module")
def spec(tiny_teacher_dir, task_csv):
    return JobSpec(name="tiny", teacher=str(tiny_teacher_dir), dataset=str(task_csv), corpus=None, preset="tiny",
                   search={"strategy": "sample", "finalists": 2})


class Recorder(Reporter):
    def __init__(self, cancel_at: str | None = None):
        self.started: list[str] = []
        self.candidates: list[dict] = []
        self.cancel_at = cancel_at
        self.current = ""

    def stage_started(self, stage, index, total):
        self.started.append(stage)
        self.current = stage

    def candidate(self, record):
        self.candidates.append(record)

    def check_cancelled(self):
        if self.cancel_at == self.current:
            raise JobCancelled("cancelled by test")


@pytest.fixture(scope="module")
def finished_run(spec, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("run")
    recorder = Recorder()
    results = run_job(spec, run_dir, recorder, use_ray=False, cache_dir=tmp_path_factory.mktemp("cache"))
    return run_dir, results, recorder


def test_job_runs_every_stage_and_writes_its_outputs(finished_run):
    run_dir, results, recorder = finished_run
    assert recorder.started == STAGE_NAMES
    assert completed_stages(run_dir) == STAGE_NAMES
    assert len(results["finalists"]) == 2 and len(recorder.candidates) == 2
    assert len(results["blocks"]) == 3
    for block in results["blocks"]:
        assert block["loss_end"] <= block["loss_start"] * 1.5  # tiny preset: a few steps, must not blow up
    export = results["export"]
    assert export["onnx_max_abs_diff"] < 1e-4
    assert (run_dir / "export" / export["best"] / "model.onnx").exists()
    rows = list(csv.DictReader(open(run_dir / "candidates.csv")))
    assert {r["hash"] for r in rows} == {f["hash"] for f in results["finalists"]}
    assert json.loads((run_dir / "results.json").read_text())["teacher"]["params"] > 0
    assert "teacher" in format_table(results)


def test_sampled_finalists_differ_in_size(finished_run):
    _, results, _ = finished_run
    params = sorted(f["params"] for f in results["finalists"])
    assert params[0] < params[-1]


def test_a_finished_job_is_not_run_again(finished_run, spec):
    run_dir, results, _ = finished_run
    recorder = Recorder()
    again = run_job(spec, run_dir, recorder, use_ray=False)
    assert recorder.started == []
    assert again["finalists"] == results["finalists"]


def test_an_interrupted_job_resumes_at_its_first_unfinished_stage(finished_run, spec, tmp_path):
    run_dir, results, _ = finished_run
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    for name in ("finalize", "export"):
        stage_marker(copy, name).unlink()
    shutil.rmtree(copy / "candidates" / results["finalists"][1]["hash"])
    recorder = Recorder()
    again = run_job(spec, copy, recorder, use_ray=False)
    assert recorder.started == ["finalize", "export"]
    # The finalist finished before the interruption is reused, not trained again.
    assert recorder.candidates[0] == results["finalists"][0]
    assert again["finalists"][0] == results["finalists"][0]


def test_cancel_stops_the_job_between_steps(spec, tmp_path):
    with pytest.raises(JobCancelled):
        run_job(spec, tmp_path / "run", Recorder(cancel_at="states"), use_ray=False, cache_dir=tmp_path / "cache")
    assert completed_stages(tmp_path / "run") == ["prepare"]


def test_blocks_train_as_ray_tasks(spec, finished_run, tmp_path, monkeypatch):
    from slimformer.workers.ray_runtime import init_ray, shutdown_ray

    run_dir, _, _ = finished_run
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    for name in ("blocks", "fewshot", "search", "finalize", "export"):
        stage_marker(copy, name).unlink()
    shutil.rmtree(copy / "checkpoints")
    shutil.rmtree(copy / "candidates")
    monkeypatch.setenv("SLIMFORMER_HOME", str(tmp_path / "home"))
    init_ray(num_cpus=2)
    try:
        results = run_job(spec, copy, Recorder(), use_ray=True)
    finally:
        shutdown_ray()
    assert len(results["blocks"]) == 3
    assert {b["steps"] for b in results["blocks"]} == {6}
