"""Jobs as tenants see them: submit (idempotently), read, list, cancel; and what a worker reads of one.

The changes a worker makes under its lease are in `slimformer.store.leases`.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from slimformer.contracts.spec import JobSpec
from slimformer.store import datasets, teachers
from slimformer.store.errors import Conflict, NotFound
from slimformer.store.events import add_event
from slimformer.store.models import Job, JobEvent, new_id, utcnow
from slimformer.store.pages import Slice, SortKey, fetch_page
from slimformer.store.sql import NO_SYNC, names_nothing

# Newest first; the id breaks ties, so the order is total and cursors are exact.
JOB_ORDER = (SortKey(Job.created_at, descending=True), SortKey(Job.id, descending=True))


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
    teacher_id: str | None = None,
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
        teacher_id: the uploaded teacher the spec names, if any.

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
        dataset_id=dataset_id, teacher_id=teacher_id, idempotency_key=idempotency_key,
    )
    session.add(job)
    # Not `add_event`: its flush would raise a lost race on the key before the commit below catches it.
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
    job = None if names_nothing(job_id) else session.scalar(
        select(Job).where(Job.id == job_id, Job.tenant_id == tenant_id)
    )
    if job is None:
        raise NotFound(f"job {job_id} not found")
    return job


def list_jobs(
    session: Session, tenant_id: str, status: str | None, limit: int, offset: int = 0, cursor: str | None = None
) -> Slice[Job]:
    """One page of the tenant's jobs, newest first (by creation time, then id).

    Args:
        session: an open session.
        tenant_id: whose jobs.
        status: only jobs in this status; None for all.
        limit: page size.
        offset: jobs to skip (without a cursor).
        cursor: the `next_cursor` of the page before (see `slimformer.store.pages`).

    Returns:
        The page, how many jobs match in all, and the next page's cursor (None on the last page).

    Raises:
        BadCursor: a malformed cursor, or one of another tenant's or another status's list.
    """
    query = select(Job).where(Job.tenant_id == tenant_id)
    if status is not None:
        query = query.where(Job.status == status)
    return fetch_page(session, query, JOB_ORDER, f"jobs|{tenant_id}|{status or ''}", limit, offset, cursor)


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
        .execution_options(**NO_SYNC)
    ).rowcount
    if cancelled:
        add_event(session, job_id, "job cancelled before it started")
    elif session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == "running", Job.cancel_requested.is_(False))
        .values(cancel_requested=True)
        .execution_options(**NO_SYNC)
    ).rowcount:
        add_event(session, job_id, "cancellation requested; the worker stops at its next check")
    session.refresh(job)
    if job.status != "running" and not cancelled:
        raise Conflict(f"job {job_id} is already {job.status}; only queued or running jobs can be cancelled")
    return job


def is_cancel_requested(session: Session, job_id: str) -> bool:
    """Whether someone asked to cancel the job (a worker checks this between steps)."""
    return bool(session.scalar(select(Job.cancel_requested).where(Job.id == job_id)))


def job_inputs(session: Session, job: Job, artifact_dir: Path) -> tuple[JobSpec, Path | None]:
    """What a worker needs to run a claimed job.

    Args:
        session: an open session.
        job: the claimed job.
        artifact_dir: the artifact directory (`Settings.artifact_dir`).

    Returns:
        The job's spec, its `teacher` replaced by the stored model folder when it names an
        uploaded teacher (`teachers.teacher_folder`), and the file of its uploaded data set (None
        for a built-in data set; pass it as `JobContext.dataset_path`).

    Raises:
        NotFound: the job's uploaded teacher was deleted meanwhile.
    """
    spec = JobSpec.model_validate(job.spec)
    folder = teachers.teacher_folder(session, job, artifact_dir)
    if folder is not None:
        spec = spec.model_copy(update={"teacher": str(folder)})
    if job.dataset_id is None:
        return spec, None
    relative = datasets.dataset_path(session, job.dataset_id)
    return spec, (artifact_dir / relative) if relative else None
