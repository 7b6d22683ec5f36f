"""DatabaseReporter alone, on a fake clock: what it writes, when, and when it refuses to (SQLite and PostgreSQL).

Moved here from tests/test_worker.py, which tests the worker loop against a live API.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select, update

from slimformer.store import jobs, leases
from slimformer.store.db import session_scope
from slimformer.store.models import Job, JobEvent


def test_reporter_throttles_progress_registers_artifacts_and_stops_when_the_lease_is_lost(database_url, tmp_path):
    """DatabaseReporter alone, on a fake clock: what it writes, when, and when it refuses to."""
    from slimformer.store.schema import upgrade

    upgrade(database_url)
    _exercise_reporter(database_url, tmp_path)


def _exercise_reporter(url: str, tmp_path: Path) -> None:
    from slimformer.contracts.spec import JobSpec
    from slimformer.store.api_keys import get_or_create_tenant
    from slimformer.store.db import make_engine, make_session_factory
    from slimformer.store.models import Artifact, Candidate
    from slimformer.workers.context import write_json
    from slimformer.workers.db_reporter import DatabaseReporter, LeaseLost
    from slimformer.workers.progress import JobCancelled

    engine = make_engine(url)
    factory = make_session_factory(engine)
    with session_scope(factory) as session:
        tenant = get_or_create_tenant(session, "t").id
    with session_scope(factory) as session:
        job_id = jobs.create_job(session, tenant, JobSpec(name="r"))[0].id
    with session_scope(factory) as session:
        assert leases.claim_next_job(session, "w", 30).id == job_id

    artifacts, now = tmp_path / "artifacts", [0.0]
    run_dir = artifacts / "runs" / job_id
    reporter = DatabaseReporter(factory, job_id, "w", artifacts, run_dir, lease_seconds=30, clock=lambda: now[0])

    def job() -> Job:
        with session_scope(factory) as session:
            return session.get(Job, job_id)

    reporter.stage_started("blocks", 2, 7)
    assert (job().stage, job().progress, job().eta_seconds) == ("blocks", 2 / 7, None)
    now[0] = 0.5
    reporter.progress("blocks", 0.5)
    assert job().progress == 2 / 7  # under a second since the last write: not written
    now[0] = 1.5
    reporter.progress("blocks", 0.5)
    assert job().progress == pytest.approx(2.5 / 7) and job().eta_seconds == pytest.approx(1.5 * 9)
    now[0] = 3.0
    reporter.progress("prepare", 0.9)  # an earlier stage's lazy resource: the bar does not move back
    assert job().progress == pytest.approx(2.5 / 7)
    reporter.stage_done("blocks", {"seconds": 3.0})
    assert job().progress == pytest.approx(3 / 7)

    folder = run_dir / "candidates" / "h2" / "model"
    folder.mkdir(parents=True)
    for name in ("model.safetensors", "model.onnx", "config.json", "tokenizer.json"):
        (folder / name).write_text(name)
    reporter.candidate({"hash": "h1", "arch": {"hidden": 16}, "proxy": 0.3, "predicted_latency_ms": 2.0,
                        "params": 10, "memory_mb": 1.0, "state": "scored"})
    reporter.candidate({"hash": "h2", "arch": {"hidden": 32}, "latency_ms": 3.0, "dev_accuracy": 0.8,
                        "test_accuracy": 0.7, "params": 20, "state": "exported", "folder": str(folder)})
    reporter.candidate({"hash": "h2", "arch": {"hidden": 32}, "latency_ms": 2.5, "folder": str(folder)})  # again
    with session_scope(factory) as session:
        rows = {c.arch_hash: c for c in session.scalars(select(Candidate).where(Candidate.job_id == job_id))}
        formats = {a.format: a.path for a in session.scalars(select(Artifact))}
        assert all(a.sha256 is None and a.size_bytes > 0 for a in session.scalars(select(Artifact)))
    assert set(rows) == {"h1", "h2"}
    assert (rows["h1"].proxy, rows["h1"].measured_latency_ms, rows["h1"].state) == (0.3, None, "scored")
    assert (rows["h2"].measured_latency_ms, rows["h2"].dev_accuracy, rows["h2"].state) == (2.5, 0.8, "exported")
    assert "folder" not in rows["h2"].metrics and rows["h2"].metrics["latency_ms"] == 2.5
    assert set(formats) == {"hf", "onnx"}  # no model.int8.onnx was written
    assert sorted(p.name for p in (artifacts / formats["hf"]).iterdir()) == [
        "config.json", "model.safetensors", "tokenizer.json"]
    assert sorted(p.name for p in (artifacts / formats["onnx"]).iterdir()) == [
        "config.json", "model.onnx", "tokenizer.json"]

    # The baseline stage's reference points and metric reach the job when it is done; a warning is one.
    write_json(run_dir / "teacher.json", {"teacher": {"name": "t", "dev_accuracy": 0.9, "test_accuracy": 0.8,
                                                      "latency_ms": 4.0, "params": 1000}})
    write_json(run_dir / "baseline.json", {"value": None, "error": "ValueError: one class"})
    write_json(run_dir / "metric.json", {"metric": "macro_f1"})
    assert job().teacher is None and job().metric is None
    reporter.warning("TF-IDF + logistic regression baseline not available: one class")
    reporter.stage_done("baseline", {"seconds": 0.2})
    assert job().teacher["params"] == 1000 and job().teacher["dev_macro_f1"] is None
    assert job().baseline is None and job().metric == "macro_f1"
    with session_scope(factory) as session:
        levels = {r.message: r.level for r in session.execute(select(JobEvent.message, JobEvent.level).where(
            JobEvent.job_id == job_id))}
    assert levels["TF-IDF + logistic regression baseline not available: one class"] == "warning"

    write_json(run_dir / "finalists.json", [{"hash": "h2", "pareto": True}, {"hash": "h1", "pareto": False}])
    reporter.stage_done("report", {"seconds": 0.1})
    with session_scope(factory) as session:
        assert set(session.scalars(select(Candidate.arch_hash).where(Candidate.pareto.is_(True)))) == {"h2"}

    with session_scope(factory) as session:
        jobs.request_cancel(session, tenant, job_id)
    now[0] = 10.0
    with pytest.raises(JobCancelled):
        reporter.check_cancelled()

    with session_scope(factory) as session:  # another worker takes the job over
        session.execute(update(Job).where(Job.id == job_id).values(lease_owner="thief"))
    now[0] = 20.0
    with pytest.raises(LeaseLost):
        reporter.stage_started("report", 6, 7)
    with pytest.raises(LeaseLost):  # from now on without asking the database
        reporter.event("anything")
    with pytest.raises(LeaseLost):
        reporter.finish()
    assert job().status == "running" and job().lease_owner == "thief"
    engine.dispose()
