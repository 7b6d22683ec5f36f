"""The changes a worker makes to a job it holds: claim, heartbeat, stage and progress, finish.

Every write is guarded by the lease: it names the job *and* the worker (`owner`) and changes
nothing, returning False, once another worker has taken the job over. A worker that sees False
has lost the job and must stop without writing more. A claim holds only once its transaction has
committed.

Leases are compared with this process's clock (UTC); keep worker clocks in sync (NTP) to well
within a lease length.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, func, or_, select, update
from sqlalchemy.orm import Session

from slimformer.store.events import add_event
from slimformer.store.models import Job, utcnow
from slimformer.store.sql import NO_SYNC

DEFAULT_MAX_ATTEMPTS = 3
MAX_ERROR_CHARS = 10_000


def claim_next_job(
    session: Session, owner: str, lease_seconds: float, max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    reclaim: bool = False,
) -> Job | None:
    """Take the oldest claimable job: queued, or running with a lease that ran out.

    With `reclaim`, a job still leased to `owner` itself is claimable too, and taken first: it is
    the job of this worker's earlier life, which died (a killed `slimformer serve` restarted on the
    same home), so it resumes now instead of after the rest of the dead lease. Only for a worker
    whose name is stable across restarts and held by one live process at a time
    (`slimformer.workers.owner_lock`), and only on its first claim after it started (later, a job
    leased to its name is one it left on purpose, e.g. to its lease during a database outage).

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
        reclaim: also take back a job whose (unexpired) lease names `owner`.

    Returns:
        The claimed job (status running, `lease_owner` = owner, `attempts` counted), or None.
        `job.stage` says where a taken-over job left off.
    """
    now = utcnow()
    _settle_abandoned(session, now, max_attempts)
    expired = Job.lease_expires_at < now
    own = and_(Job.status == "running", Job.lease_owner == owner)
    claimable = and_(
        or_(Job.status == "queued", and_(Job.status == "running", or_(expired, own) if reclaim else expired)),
        Job.cancel_requested.is_(False),
        Job.attempts < max_attempts,
    )
    # Only this (restarted) worker uses its name, so no other writer changes these rows meanwhile.
    own_ids = set(session.scalars(select(Job.id).where(own))) if reclaim else set()
    values = dict(
        status="running", lease_owner=owner, lease_expires_at=now + _seconds(lease_seconds), heartbeat_at=now,
        attempts=Job.attempts + 1, started_at=func.coalesce(Job.started_at, now),
    )
    oldest = select(Job.id).where(claimable).order_by(
        *([case((own, 0), else_=1)] if reclaim else []), Job.created_at, Job.id).limit(1)
    if session.get_bind().dialect.name == "postgresql":
        job_id = session.scalar(oldest.with_for_update(skip_locked=True))
        if job_id is None:
            return None
        session.execute(update(Job).where(Job.id == job_id).values(**values).execution_options(**NO_SYNC))
    else:
        # The subquery and the update are one statement, so no other writer can slip in between.
        job_id = session.scalar(
            update(Job)
            .where(Job.id == oldest.scalar_subquery(), claimable)
            .values(**values)
            .returning(Job.id)
            .execution_options(**NO_SYNC)
        )
        if job_id is None:
            return None
    job = session.scalars(select(Job).where(Job.id == job_id).execution_options(populate_existing=True)).one()
    where = f"resuming after {job.stage}" if job.stage else "from the start"
    what = "claimed" if job.attempts == 1 else f"taken over (attempt {job.attempts}, {where})"
    if job_id in own_ids:
        what = f"reclaimed after its worker restarted (attempt {job.attempts}, {where})"
    add_event(session, job_id, f"job {what} by {owner}", stage=job.stage, data={"owner": owner})
    return job


def _settle_abandoned(session: Session, now: datetime, max_attempts: int) -> None:
    expired = and_(Job.status == "running", Job.lease_expires_at < now)
    for job_id in session.scalars(
        update(Job)
        .where(expired, Job.cancel_requested.is_(True))
        .values(status="cancelled", finished_at=now, lease_owner=None, lease_expires_at=None)
        .returning(Job.id)
        .execution_options(**NO_SYNC)
    ).all():
        add_event(session, job_id, "job cancelled: its worker stopped before it could acknowledge", level="warning")
    error = f"the job's worker lease expired {max_attempts} times; giving up"
    for job_id in session.scalars(
        update(Job)
        .where(expired, Job.attempts >= max_attempts)
        .values(status="failed", error=error, finished_at=now, lease_owner=None, lease_expires_at=None)
        .returning(Job.id)
        .execution_options(**NO_SYNC)
    ).all():
        add_event(session, job_id, f"job failed: {error}", level="error")


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


def set_references(
    session: Session, job_id: str, owner: str, teacher: dict[str, Any] | None, baseline: dict[str, Any] | None,
    metric: str | None = None,
) -> bool:
    """Record the job's reference points (teacher, baseline) and its task metric. False if the lease is lost."""
    return _guarded(session, job_id, owner, teacher=teacher, baseline=baseline, metric=metric)


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


def _guarded(session: Session, job_id: str, owner: str, **values: Any) -> bool:
    """UPDATE the job only while `owner` holds it and it runs; True if it did."""
    result = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.lease_owner == owner, Job.status == "running")
        .values(**values)
        .execution_options(**NO_SYNC)
    )
    return result.rowcount == 1


def _final(status: str) -> dict[str, Any]:
    return dict(status=status, finished_at=utcnow(), lease_owner=None, lease_expires_at=None)


def _seconds(seconds: float) -> timedelta:
    if not (math.isfinite(seconds) and seconds > 0):
        raise ValueError(f"lease must be a positive number of seconds, got {seconds}")
    return timedelta(seconds=seconds)
