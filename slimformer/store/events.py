"""A job's history: append an event, read the latest ones.

History is append-only and not lease-guarded: whoever reports on a job may add a line to it.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from slimformer.store.models import EVENT_LEVELS, JobEvent


def add_event(
    session: Session,
    job_id: str,
    message: str,
    level: str = "info",
    stage: str | None = None,
    data: dict[str, Any] | None = None,
) -> JobEvent:
    """Append an event to the job's history (flushed, not committed).

    Args:
        session: an open session.
        job_id: the job.
        message: the line, for people.
        level: one of `EVENT_LEVELS`.
        stage: the stage the event belongs to, if any.
        data: facts for programs.

    Returns:
        The event.

    Raises:
        ValueError: an unknown level.
    """
    if level not in EVENT_LEVELS:
        raise ValueError(f"level {level!r} not in {EVENT_LEVELS}")
    event = JobEvent(job_id=job_id, message=message, level=level, stage=stage, data=data)
    session.add(event)
    session.flush()
    return event


def recent_events(session: Session, job_id: str, limit: int = 20) -> list[JobEvent]:
    """The job's last `limit` events, oldest first."""
    newest = session.scalars(
        select(JobEvent).where(JobEvent.job_id == job_id).order_by(JobEvent.id.desc()).limit(limit)
    ).all()
    return list(reversed(newest))
