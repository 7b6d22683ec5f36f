"""The job state changes workers make: claim, lease, heartbeat, report, finish. SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import delete, func, select, update

from slimformer.contracts.spec import JobSpec
from slimformer.store import artifacts, candidates, events, jobs, leases
from slimformer.store.api_keys import get_or_create_tenant
from slimformer.store.db import make_engine, make_session_factory, session_scope
from slimformer.store.models import Artifact, Base, Candidate, Job, JobEvent, utcnow


@pytest.fixture
def db(migrated_url):
    """A session factory on an emptied, migrated database."""
    engine = make_engine(migrated_url)
    with engine.begin() as conn:
        for table in reversed(Base.metadata.sorted_tables):
            conn.execute(delete(table))
    yield make_session_factory(engine)
    engine.dispose()


def _submit(factory, n: int = 1, tenant: str = "acme") -> list[str]:
    ids = []
    for i in range(n):
        with session_scope(factory) as session:
            tenant_id = get_or_create_tenant(session, tenant).id
            session.commit()
            job, created = jobs.create_job(session, tenant_id, JobSpec(name=f"job {i}"))
            assert created
            ids.append(job.id)
    return ids


def _claim(factory, owner: str, lease: float = 60, **kwargs):
    with session_scope(factory) as session:
        return leases.claim_next_job(session, owner, lease, **kwargs)


def _expire(factory, job_id: str) -> None:
    with session_scope(factory) as session:
        session.execute(update(Job).where(Job.id == job_id).values(lease_expires_at=utcnow() - timedelta(seconds=1)))


def test_claim_takes_the_oldest_job_once(db):
    assert _claim(db, "w1") is None
    first, second = _submit(db, 2)
    job = _claim(db, "w1")
    assert (job.id, job.status, job.lease_owner, job.attempts) == (first, "running", "w1", 1)
    assert job.started_at is not None and job.lease_expires_at > utcnow() + timedelta(seconds=50)
    assert _claim(db, "w2").id == second
    assert _claim(db, "w3") is None  # both leases are live


def test_concurrent_workers_never_claim_the_same_job(db):
    jobs = set(_submit(db, 24))
    claimed: list[tuple[str, str]] = []
    start = threading.Barrier(4)

    def work(owner: str) -> None:
        start.wait()
        while (job := _claim(db, owner)) is not None:
            claimed.append((job.id, owner))

    threads = [threading.Thread(target=work, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    ids = [job_id for job_id, _ in claimed]
    assert sorted(ids) == sorted(jobs)  # each job exactly once
    with session_scope(db) as session:
        owners = dict(session.execute(select(Job.id, Job.lease_owner)).all())
    assert all(owners[job_id] == owner for job_id, owner in claimed)


def test_an_expired_lease_is_taken_over_and_the_stale_owner_is_shut_out(db):
    (job_id,) = _submit(db)
    assert _claim(db, "old").id == job_id
    with session_scope(db) as session:
        assert leases.set_stage(session, job_id, "old", "blocks")
        assert leases.heartbeat(session, job_id, "old", 60)

    _expire(db, job_id)
    taken = _claim(db, "new")
    assert (taken.id, taken.lease_owner, taken.attempts, taken.stage) == (job_id, "new", 2, "blocks")

    with session_scope(db) as session:
        assert leases.heartbeat(session, job_id, "old", 60) is False
        assert leases.set_stage(session, job_id, "old", "search") is False
        assert leases.set_progress(session, job_id, "old", 0.9) is False
        assert leases.finish_job(session, job_id, "old") is False
        assert leases.heartbeat(session, job_id, "new", 60) is True
        job = session.get(Job, job_id)
        assert (job.status, job.stage, job.lease_owner) == ("running", "blocks", "new")
        messages = [e.message for e in events.recent_events(session, job_id)]
    assert any("taken over" in m and "resuming after blocks" in m for m in messages)


def test_a_restarted_worker_reclaims_its_own_live_lease_first_and_only_when_asked(db):
    older, mine = _submit(db, 2)
    assert _claim(db, "other").id == older
    assert _claim(db, "serve").id == mine
    with session_scope(db) as session:
        assert leases.set_stage(session, mine, "serve", "blocks")
    # Both leases are live: nobody takes either, not even the owner without `reclaim`.
    assert _claim(db, "stranger", reclaim=True) is None
    assert _claim(db, "serve") is None
    (queued,) = _submit(db)  # a queued job is claimable, but the own job comes first
    back = _claim(db, "serve", reclaim=True)
    assert (back.id, back.lease_owner, back.attempts, back.stage) == (mine, "serve", 2, "blocks")
    assert back.lease_expires_at > utcnow() + timedelta(seconds=50)
    with session_scope(db) as session:
        messages = [e.message for e in events.recent_events(session, mine)]
        assert session.get(Job, older).lease_owner == "other"  # another worker's live lease is left alone
    assert any(m.startswith("job reclaimed after its worker restarted (attempt 2, resuming after blocks)")
               for m in messages), messages
    assert _claim(db, "serve").id == queued  # (a worker reclaims once, at start: see Worker.reclaim)


def test_abandoned_jobs_are_settled_not_retried_forever(db):
    cancelled, exhausted, retried = _submit(db, 3)
    for _ in range(3):
        assert _claim(db, "w") is not None
    with session_scope(db) as session:
        session.execute(update(Job).where(Job.id == cancelled).values(cancel_requested=True))
        session.execute(update(Job).where(Job.id == exhausted).values(attempts=3))
    for job_id in (cancelled, exhausted, retried):
        _expire(db, job_id)

    again = _claim(db, "w2", max_attempts=3)
    assert again.id == retried and again.attempts == 2
    with session_scope(db) as session:
        statuses = dict(session.execute(select(Job.id, Job.status)).all())
        assert statuses[cancelled] == "cancelled" and statuses[exhausted] == "failed"
        assert "lease expired 3 times" in session.get(Job, exhausted).error


def test_worker_reports_progress_and_finishes(db):
    done, failed, cancelled, released = _submit(db, 4)
    for _ in range(4):
        _claim(db, "w")
    with session_scope(db) as session:
        assert leases.set_progress(session, done, "w", 1.5, eta_seconds=float("inf"))
        assert leases.set_run_dir(session, done, "w", f"runs/{done}")
        job = session.get(Job, done)
        assert (job.progress, job.eta_seconds, job.run_dir) == (1.0, None, f"runs/{done}")
        with pytest.raises(ValueError):
            leases.set_progress(session, done, "w", float("nan"))
        assert leases.finish_job(session, done, "w")
        assert leases.fail_job(session, failed, "w", "out of memory in stage blocks")
        session.execute(update(Job).where(Job.id == cancelled).values(cancel_requested=True))
        assert jobs.is_cancel_requested(session, cancelled) and not jobs.is_cancel_requested(session, done)
        assert leases.mark_cancelled(session, cancelled, "w")
        assert leases.release_job(session, released, "w")
    with session_scope(db) as session:
        rows = {j.id: j for j in session.scalars(select(Job))}
    assert rows[done].status == "succeeded" and rows[done].finished_at and rows[done].lease_owner is None
    assert rows[failed].status == "failed" and rows[failed].error == "out of memory in stage blocks"
    assert rows[cancelled].status == "cancelled"
    assert (rows[released].status, rows[released].attempts, rows[released].lease_owner) == ("queued", 0, None)
    assert _claim(db, "w2").id == released  # back in the queue at once


def test_upsert_candidate_never_duplicates(db):
    (job_id,) = _submit(db)
    with session_scope(db) as session:
        first = candidates.upsert_candidate(session, job_id, "abc", {"hidden": 128}, proxy=0.5, params=1000)
    with session_scope(db) as session:  # a resumed job reports the same architecture again
        again = candidates.upsert_candidate(
            session, job_id, "abc", {"hidden": 128}, measured_latency_ms=3.2, state="exported", pareto=True
        )
        other = candidates.upsert_candidate(session, job_id, "def", {"hidden": 256})
        with pytest.raises(ValueError, match="unknown candidate fields"):
            candidates.upsert_candidate(session, job_id, "x", {}, accuracy=1)
    assert first == again != other
    with session_scope(db) as session:
        assert session.scalar(select(func.count()).select_from(Candidate)) == 2
        row = session.get(Candidate, first)
        assert (row.proxy, row.params, row.measured_latency_ms, row.state, row.pareto) == (
            0.5, 1000, 3.2, "exported", True)
        candidates.set_pareto(session, job_id, [other])
    with session_scope(db) as session:
        assert dict(session.execute(select(Candidate.id, Candidate.pareto)).all()) == {first: False, other: True}


def test_upsert_artifact_replaces_and_invalidates_the_download(db):
    (job_id,) = _submit(db)
    with session_scope(db) as session:
        cid = candidates.upsert_candidate(session, job_id, "abc", {"hidden": 128})
        aid = artifacts.upsert_artifact(session, cid, "onnx", f"runs/{job_id}/model.onnx", 10, "a" * 64)
        session.execute(update(Artifact).where(Artifact.id == aid).values(zip_sha256="b" * 64, zip_size_bytes=5))
    with session_scope(db) as session:
        assert artifacts.upsert_artifact(session, cid, "onnx", f"runs/{job_id}/model2.onnx", 20) == aid
        for bad in ("/etc/passwd", "../outside", "runs/../../x"):
            with pytest.raises(ValueError):
                artifacts.upsert_artifact(session, cid, "hf", bad, 1)
        with pytest.raises(ValueError):
            artifacts.upsert_artifact(session, cid, "tar", "x", 1)
    with session_scope(db) as session:
        row = session.get(Artifact, aid)
        assert (row.path, row.size_bytes, row.sha256, row.zip_sha256) == (f"runs/{job_id}/model2.onnx", 20, None, None)
        assert session.scalar(select(func.count()).select_from(JobEvent).where(JobEvent.job_id == job_id)) == 1
