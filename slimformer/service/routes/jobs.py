"""Jobs: submit, list, read, cancel."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Header, Query, Response, status

from slimformer.contracts.spec import JobSpec
from slimformer.service.auth import CurrentTenant
from slimformer.service.deps import PageDep, SessionDep, SettingsDep
from slimformer.service.openapi import PROTECTED, error_responses
from slimformer.service.rate_limit import RateLimit
from slimformer.service.schemas import EventOut, JobDetail, JobOut, Page
from slimformer.service.validation import check_spec
from slimformer.store import events, jobs
from slimformer.store.models import Job

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], responses=PROTECTED)

IdempotencyKey = Annotated[
    str | None,
    Header(
        min_length=1, max_length=200, pattern=r"^[\x21-\x7e]+$",
        description="Retries with the same key (and body) return the job the first request made.",
    ),
]
_LIST_422 = "Invalid query; also a malformed cursor, one of another list, or a cursor with an offset"
JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    dependencies=[RateLimit],
    responses={
        200: {"model": JobOut, "description": "A retry: the job an earlier request with this Idempotency-Key made"},
        **error_responses(400, 413, 429, described={
            409: "The Idempotency-Key was used before for a different request",
            422: "Invalid request, unknown teacher or data set, or a budget no architecture can meet",
        }),
    },
)
def submit_job(
    spec: JobSpec,
    response: Response,
    session: SessionDep,
    tenant: CurrentTenant,
    settings: SettingsDep,
    idempotency_key: IdempotencyKey = None,
) -> JobOut:
    """Queue a compression job. Counts against the API key's rate limit (429 with `Retry-After` over it).

    201 with the new job; with an `Idempotency-Key` that this tenant used before for the same body,
    200 with that earlier job and `Idempotent-Replayed: true` (no second job, even for concurrent
    retries). The teacher, the data set and the budgets are checked here, so an impossible job is
    refused at once (422) instead of failing later.
    """
    if idempotency_key is not None:
        digest = jobs.spec_digest(spec)
        earlier = jobs.find_idempotent(session, tenant.id, idempotency_key, digest)
        if earlier is not None:
            return _replayed(response, earlier)
    checked = check_spec(session, tenant.id, spec, settings)
    job, created = jobs.create_job(session, tenant.id, spec, idempotency_key, checked.dataset_id, checked.teacher_id)
    if not created:
        return _replayed(response, job)
    response.headers["Location"] = f"{router.prefix}/{job.id}"
    return JobOut.model_validate(job)


def _replayed(response: Response, job: Job) -> JobOut:
    response.status_code = status.HTTP_200_OK
    response.headers["Idempotent-Replayed"] = "true"
    response.headers["Location"] = f"{router.prefix}/{job.id}"
    return JobOut.model_validate(job)


@router.get("", responses=error_responses(described={422: _LIST_422}))
def list_jobs(
    session: SessionDep,
    tenant: CurrentTenant,
    page: PageDep,
    status_: Annotated[JobStatus | None, Query(alias="status", description="only jobs in this status")] = None,
) -> Page[JobOut]:
    """The tenant's jobs, newest first. Page with `cursor` (each page's `next_cursor`), or `offset`."""
    found = jobs.list_jobs(session, tenant.id, status_, page.limit, page.offset, page.cursor)
    return Page[JobOut](items=[JobOut.model_validate(j) for j in found.rows], total=found.total, limit=page.limit,
                        offset=page.offset, next_cursor=found.next_cursor)


@router.get("/{job_id}", responses=error_responses(described={404: "No such job (or not yours)"}))
def get_job(job_id: str, session: SessionDep, tenant: CurrentTenant) -> JobDetail:
    """A job's status, stage, progress, ETA, timestamps and its last 20 events."""
    job = jobs.get_job(session, tenant.id, job_id)
    history = [EventOut.model_validate(e) for e in events.recent_events(session, job.id)]
    return JobDetail.model_validate({**JobOut.model_validate(job).model_dump(), "events": history})


@router.post(
    "/{job_id}/cancel",
    responses=error_responses(413, described={404: "No such job (or not yours)", 409: "The job has finished"}),
)
def cancel_job(job_id: str, session: SessionDep, tenant: CurrentTenant) -> JobOut:
    """Cancel a job: a queued one is cancelled at once; a running one gets `cancel_requested` and its
    worker stops at its next check. Repeating the request on a running job is harmless; a finished
    job answers 409."""
    job = jobs.request_cancel(session, tenant.id, job_id)
    session.commit()
    return JobOut.model_validate(job)
