"""Job state changes, for the API (submit, cancel) and for workers (claim, heartbeat, report, finish).

Every worker-side write is guarded by the lease: it names the job *and* the worker (`owner`) and
changes nothing, returning False, once another worker has taken the job over. A worker that sees
False has lost the job and must stop without writing more.

Functions take an open session and do not commit (except `create_job`, see there); run them in
`slimformer.store.db.session_scope`, which commits at the end of the block. A claim holds only
once that transaction has committed.

Leases are compared with this process's clock (UTC); keep worker clocks in sync (NTP) to well
within a lease length.
"""

from __future__ import annotations

import hashlib
import json
import math
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import and_, case, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from slimformer.contracts.spec import JobSpec
from slimformer.service.errors import Conflict, NotFound
from slimformer.store.models import (
    ARTIFACT_FORMATS,
    CANDIDATE_STATES,
    EVENT_LEVELS,
    Artifact,
    Candidate,
    Dataset,
    Job,
    JobEvent,
    new_id,
    utcnow,
)

DEFAULT_MAX_ATTEMPTS = 3
MAX_ERROR_CHARS = 10_000
CANDIDATE_FIELDS = frozenset(
    {
        "state", "pareto", "proxy", "predicted_latency_ms", "measured_latency_ms", "params", "memory_mb",
        "dev_accuracy", "test_accuracy", "metrics",
    }
)
_NO_SYNC = {"synchronize_session": False}


# --- the API side ----------------------------------------------------------------------------------


def spec_digest(spec: JobSpec) -> str:
    """SHA-256 of the spec's canonical JSON: equal for equal requests, whatever their key order."""
    doc = json.dumps(spec.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(doc.encode()).hexdigest()


def create_job(
    session: Session,
    tenant_id: str,
    spec: JobSpec,
    idempotency_key: str | None = None,
    dataset_id: str | None = None,
) -> tuple[Job, bool]:
    """Queue a job, or return the job an earlier request with the same idempotency key made.

    Commits, because only the commit tells whether this request won a race on the key: the
    unique constraint on (tenant, idempotency_key) lets exactly one concurrent insert through, and
    the losers roll back and read the winner's job. Call it on a session with no other pending work.

    Args:
        session: an open session with nothing else pending.
        tenant_id: owner of the job.
        spec: the validated request.
        idempotency_key: the client's `Idempotency-Key`, or None.
        dataset_id: the uploaded data set the spec names, if any.

    Returns:
        (job, created): created is False when an earlier request with this key made the job.

    Raises:
        Conflict: the key was used before for a different spec.
    """
    digest = spec_digest(spec)
    if idempotency_key is not None:
        earlier = find_idempotent(session, tenant_id, idempotency_key, digest)
        if earlier is not None:
            return earlier, False
    job = Job(
        id=new_id(), tenant_id=tenant_id, name=spec.name, spec=spec.model_dump(mode="json"), spec_sha256=digest,
        dataset_id=dataset_id, idempotency_key=idempotency_key,
    )
    session.add(job)
    session.add(JobEvent(job_id=job.id, message="job queued", data={"idempotency_key": idempotency_key}))
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        earlier = find_idempotent(session, tenant_id, idempotency_key, digest) if idempotency_key else None
        if earlier is None:
            raise
        return earlier, False
    return job, True


def find_idempotent(session: Session, tenant_id: str, key: str, digest: str) -> Job | None:
    """The job an earlier request with this idempotency key made, if any.

    Args:
        session: an open session.
        tenant_id: keys are scoped per tenant.
        key: the `Idempotency-Key`.
        digest: `spec_digest` of this request's spec.

    Returns:
        The earlier job, or None.

    Raises:
        Conflict: the earlier request had a different spec.
    """
    job = session.scalar(select(Job).where(Job.tenant_id == tenant_id, Job.idempotency_key == key))
    if job is not None and job.spec_sha256 != digest:
        raise Conflict("this Idempotency-Key was already used for a different request; use a new key for a new job")
    return job


def get_job(session: Session, tenant_id: str, job_id: str) -> Job:
    """The tenant's job.

    Raises:
        NotFound: no such job, or another tenant's (the same answer, so ids leak nothing).
    """
    job = session.scalar(select(Job).where(Job.id == job_id, Job.tenant_id == tenant_id))
    if job is None:
        raise NotFound(f"job {job_id} not found")
    return job


def recent_events(session: Session, job_id: str, limit: int = 20) -> list[JobEvent]:
    """The job's last `limit` events, oldest first."""
    newest = session.scalars(
        select(JobEvent).where(JobEvent.job_id == job_id).order_by(JobEvent.id.desc()).limit(limit)
    ).all()
    return list(reversed(newest))


def request_cancel(session: Session, tenant_id: str, job_id: str) -> Job:
    """Cancel a job: a queued one at once, a running one by asking its worker to stop.

    Each step is a conditional UPDATE, so a job a worker claims at the same moment is not left
    both running and cancelled: the second step then flags it instead.

    Returns:
        The job after the change (already-requested cancellations are answered the same way).

    Raises:
        NotFound: no such job for this tenant.
        Conflict: the job has already finished.
    """
    job = get_job(session, tenant_id, job_id)
    cancelled = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == "queued")
        .values(status="cancelled", finished_at=utcnow(), cancel_requested=True)
        .execution_options(**_NO_SYNC)
    ).rowcount
    if cancelled:
        add_event(session, job_id, "job cancelled before it started")
    elif session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == "running", Job.cancel_requested.is_(False))
        .values(cancel_requested=True)
        .execution_options(**_NO_SYNC)
    ).rowcount:
        add_event(session, job_id, "cancellation requested; the worker stops at its next check")
    session.refresh(job)
    if job.status != "running" and not cancelled:
        raise Conflict(f"job {job_id} is already {job.status}; only queued or running jobs can be cancelled")
    return job


# --- the worker side -------------------------------------------------------------------------------


def claim_next_job(
    session: Session, owner: str, lease_seconds: float, max_attempts: int = DEFAULT_MAX_ATTEMPTS
) -> Job | None:
    """Take the oldest claimable job: queued, or running with a lease that ran out.

    First settles abandoned jobs that must not run again (cancel requested, or `max_attempts`
    leases already spent) as cancelled or failed. On PostgreSQL the pick is
    `SELECT ... FOR UPDATE SKIP LOCKED`, so concurrent workers each get a different job without
    waiting on each other; on SQLite it is one conditional UPDATE, atomic under SQLite's single
    write lock.

    Args:
        session: an open session; the claim holds once its transaction commits.
        owner: this worker's unique name (e.g. host:pid:uuid).
        lease_seconds: how long the claim lasts without a heartbeat.
        max_attempts: how many leases a job may spend before it is failed instead of retried.

    Returns:
        The claimed job (status running, `lease_owner` = owner, `attempts` counted), or None.
        `job.stage` says where a taken-over job left off.
    """
    now = utcnow()
    _settle_abandoned(session, now, max_attempts)
    claimable = and_(
        or_(Job.status == "queued", and_(Job.status == "running", Job.lease_expires_at < now)),
        Job.cancel_requested.is_(False),
        Job.attempts < max_attempts,
    )
    values = dict(
        status="running", lease_owner=owner, lease_expires_at=now + _seconds(lease_seconds), heartbeat_at=now,
        attempts=Job.attempts + 1, started_at=func.coalesce(Job.started_at, now),
    )
    oldest = select(Job.id).where(claimable).order_by(Job.created_at, Job.id).limit(1)
    if session.get_bind().dialect.name == "postgresql":
        job_id = session.scalar(oldest.with_for_update(skip_locked=True))
        if job_id is None:
            return None
        session.execute(update(Job).where(Job.id == job_id).values(**values).execution_options(**_NO_SYNC))
    else:
        # The subquery and the update are one statement, so no other writer can slip in between.
        job_id = session.scalar(
            update(Job)
            .where(Job.id == oldest.scalar_subquery(), claimable)
            .values(**values)
            .returning(Job.id)
            .execution_options(**_NO_SYNC)
        )
        if job_id is None:
            return None
    job = session.scalars(select(Job).where(Job.id == job_id).execution_options(populate_existing=True)).one()
    where = f"resuming after {job.stage}" if job.stage else "from the start"
    what = "claimed" if job.attempts == 1 else f"taken over (attempt {job.attempts}, {where})"
    add_event(session, job_id, f"job {what} by {owner}", stage=job.stage, data={"owner": owner})
    return job


def _settle_abandoned(session: Session, now: datetime, max_attempts: int) -> None:
    expired = and_(Job.status == "running", Job.lease_expires_at < now)
    for job_id in session.scalars(
        update(Job)
        .where(expired, Job.cancel_requested.is_(True))
        .values(status="cancelled", finished_at=now, lease_owner=None, lease_expires_at=None)
        .returning(Job.id)
        .execution_options(**_NO_SYNC)
    ).all():
        add_event(session, job_id, "job cancelled: its worker stopped before it could acknowledge", level="warning")
    error = f"the job's worker lease expired {max_attempts} times; giving up"
    for job_id in session.scalars(
        update(Job)
        .where(expired, Job.attempts >= max_attempts)
        .values(status="failed", error=error, finished_at=now, lease_owner=None, lease_expires_at=None)
        .returning(Job.id)
        .execution_options(**_NO_SYNC)
    ).all():
        add_event(session, job_id, f"job failed: {error}", level="error")


def job_inputs(session: Session, job: Job, artifact_dir: Path) -> tuple[JobSpec, Path | None]:
    """What a worker needs to run a claimed job.

    Args:
        session: an open session.
        job: the claimed job.
        artifact_dir: the artifact directory (`Settings.artifact_dir`).

    Returns:
        The job's spec, and the file of its uploaded data set (None for a built-in data set; pass
        it as `JobContext.dataset_path`).
    """
    spec = JobSpec.model_validate(job.spec)
    if job.dataset_id is None:
        return spec, None
    relative = session.scalar(select(Dataset.path).where(Dataset.id == job.dataset_id))
    return spec, (artifact_dir / relative) if relative else None


def heartbeat(session: Session, job_id: str, owner: str, lease_seconds: float) -> bool:
    """Extend this worker's lease on a running job.

    Returns:
        False if the lease is lost (another worker took the job over, or it is no longer running):
        the caller must stop working on the job.
    """
    now = utcnow()
    return _guarded(session, job_id, owner, lease_expires_at=now + _seconds(lease_seconds), heartbeat_at=now)


def set_stage(session: Session, job_id: str, owner: str, stage: str, message: str | None = None) -> bool:
    """Record that the job entered `stage` (and log an event). False if the lease is lost."""
    if not _guarded(session, job_id, owner, stage=stage):
        return False
    add_event(session, job_id, message or f"stage {stage} started", stage=stage)
    return True


def set_progress(
    session: Session, job_id: str, owner: str, progress: float, eta_seconds: float | None = None
) -> bool:
    """Record overall progress (clamped to 0..1) and the estimated seconds left. False if the lease is lost."""
    if not math.isfinite(progress):
        raise ValueError(f"progress must be finite, got {progress}")
    if eta_seconds is not None and not (math.isfinite(eta_seconds) and eta_seconds >= 0):
        eta_seconds = None  # an unknown ETA is better than a nonsensical one
    return _guarded(session, job_id, owner, progress=min(1.0, max(0.0, progress)), eta_seconds=eta_seconds)


def set_run_dir(session: Session, job_id: str, owner: str, run_dir: str) -> bool:
    """Record the job's run folder, relative to the artifact directory. False if the lease is lost."""
    return _guarded(session, job_id, owner, run_dir=run_dir)


def is_cancel_requested(session: Session, job_id: str) -> bool:
    """Whether someone asked to cancel the job (a worker checks this between steps)."""
    return bool(session.scalar(select(Job.cancel_requested).where(Job.id == job_id)))


def finish_job(session: Session, job_id: str, owner: str) -> bool:
    """Mark the job succeeded and give up the lease. False if the lease is lost."""
    if not _guarded(session, job_id, owner, **_final("succeeded"), progress=1.0, eta_seconds=0.0):
        return False
    add_event(session, job_id, "job succeeded")
    return True


def fail_job(session: Session, job_id: str, owner: str, error: str) -> bool:
    """Mark the job failed with a message for the user. False if the lease is lost."""
    error = error[:MAX_ERROR_CHARS]
    if not _guarded(session, job_id, owner, **_final("failed"), error=error):
        return False
    add_event(session, job_id, f"job failed: {error}", level="error")
    return True


def mark_cancelled(session: Session, job_id: str, owner: str) -> bool:
    """Acknowledge a cancellation request: the job is cancelled. False if the lease is lost."""
    if not _guarded(session, job_id, owner, **_final("cancelled")):
        return False
    add_event(session, job_id, "job cancelled")
    return True


def release_job(session: Session, job_id: str, owner: str, reason: str = "worker shutting down") -> bool:
    """Give a running job back to the queue (graceful shutdown) so another worker resumes it now.

    The attempt is refunded: a clean hand-back is not a failure. False if the lease is lost.
    """
    if not _guarded(
        session, job_id, owner, status="queued", lease_owner=None, lease_expires_at=None,
        attempts=case((Job.attempts > 0, Job.attempts - 1), else_=0),
    ):
        return False
    add_event(session, job_id, f"job released: {reason}", level="warning")
    return True


def add_event(
    session: Session,
    job_id: str,
    message: str,
    level: str = "info",
    stage: str | None = None,
    data: dict[str, Any] | None = None,
) -> JobEvent:
    """Append an event to the job's history (not lease-guarded: history is append-only)."""
    if level not in EVENT_LEVELS:
        raise ValueError(f"level {level!r} not in {EVENT_LEVELS}")
    event = JobEvent(job_id=job_id, message=message, level=level, stage=stage, data=data)
    session.add(event)
    session.flush()
    return event


def upsert_candidate(session: Session, job_id: str, arch_hash: str, arch: dict[str, Any], **fields: Any) -> str:
    """Insert a candidate, or update the one with the same (job, arch_hash).

    A resumed job re-reporting a candidate therefore updates it instead of adding a copy. Fields
    not given keep their stored values.

    Args:
        session: an open session.
        job_id: the job.
        arch_hash: the architecture's canonical hash (`Arch.hash()`).
        arch: the architecture document (`Arch.to_dict()`).
        **fields: any of `CANDIDATE_FIELDS` (state, pareto, proxy, predicted_latency_ms,
            measured_latency_ms, params, memory_mb, dev_accuracy, test_accuracy, metrics).

    Returns:
        The candidate's id (the existing one on update).

    Raises:
        ValueError: an unknown field or state.
    """
    unknown = set(fields) - CANDIDATE_FIELDS
    if unknown:
        raise ValueError(f"unknown candidate fields {sorted(unknown)}; known: {sorted(CANDIDATE_FIELDS)}")
    if "state" in fields and fields["state"] not in CANDIDATE_STATES:
        raise ValueError(f"state {fields['state']!r} not in {CANDIDATE_STATES}")
    now = utcnow()
    insert = _dialect_insert(session)
    stmt = insert(Candidate).values(
        id=new_id(), job_id=job_id, arch_hash=arch_hash, arch=arch, created_at=now, updated_at=now, **fields
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=["job_id", "arch_hash"], set_={**fields, "arch": arch, "updated_at": now}
    ).returning(Candidate.id)
    return session.scalars(stmt, execution_options=_NO_SYNC).one()


def set_pareto(session: Session, job_id: str, candidate_ids: list[str]) -> None:
    """Flag exactly `candidate_ids` as the job's Pareto front."""
    session.execute(
        update(Candidate)
        .where(Candidate.job_id == job_id)
        .values(pareto=Candidate.id.in_(candidate_ids) if candidate_ids else False)
        .execution_options(**_NO_SYNC)
    )


def upsert_artifact(
    session: Session, candidate_id: str, format: str, path: str, size_bytes: int, sha256: str | None = None
) -> str:
    """Register (or re-register) a candidate's exported file or folder.

    Args:
        session: an open session.
        candidate_id: the candidate.
        format: one of "hf", "onnx", "onnx-int8".
        path: relative to the artifact directory (never absolute, never with "..").
        size_bytes: bytes written.
        sha256: hex digest of a file artifact; None for a folder.

    Returns:
        The artifact's id. The API's cached download zip is invalidated.

    Raises:
        ValueError: unknown format or a path that leaves the artifact directory.
    """
    if format not in ARTIFACT_FORMATS:
        raise ValueError(f"format {format!r} not in {ARTIFACT_FORMATS}")
    if path.startswith(("/", "\\")) or ".." in path.replace("\\", "/").split("/"):
        raise ValueError(f"artifact path {path!r} must be relative to the artifact directory")
    changes = dict(path=path, size_bytes=size_bytes, sha256=sha256, zip_sha256=None, zip_size_bytes=None)
    insert = _dialect_insert(session)
    stmt = (
        insert(Artifact)
        .values(id=new_id(), candidate_id=candidate_id, format=format, created_at=utcnow(), **changes)
        .on_conflict_do_update(index_elements=["candidate_id", "format"], set_=changes)
        .returning(Artifact.id)
    )
    return session.scalars(stmt, execution_options=_NO_SYNC).one()


# --- helpers ---------------------------------------------------------------------------------------


def _guarded(session: Session, job_id: str, owner: str, **values: Any) -> bool:
    """UPDATE the job only while `owner` holds it and it runs; True if it did."""
    result = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.lease_owner == owner, Job.status == "running")
        .values(**values)
        .execution_options(**_NO_SYNC)
    )
    return result.rowcount == 1


def _final(status: str) -> dict[str, Any]:
    return dict(status=status, finished_at=utcnow(), lease_owner=None, lease_expires_at=None)


def _seconds(seconds: float) -> timedelta:
    if not (math.isfinite(seconds) and seconds > 0):
        raise ValueError(f"lease must be a positive number of seconds, got {seconds}")
    return timedelta(seconds=seconds)


def _is_sqlite(session: Session) -> bool:
    return session.get_bind().dialect.name == "sqlite"


def _dialect_insert(session: Session) -> Any:
    # ON CONFLICT is dialect-specific syntax; both supported databases have it.
    if _is_sqlite(session):
        from sqlalchemy.dialects.sqlite import insert
    else:
        from sqlalchemy.dialects.postgresql import insert
    return insert
