"""Uploaded teachers: record an upload, list, read and delete a tenant's, find the folder a job names.

The model folder itself lives under the artifact directory; rows hold its path relative to it.
A job that names an uploaded teacher records its id (`Job.teacher_id`), so a teacher in use by a
queued or running job is not deleted, and a worker finds the folder from the job alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from slimformer.store.errors import Conflict, NotFound
from slimformer.store.models import FINISHED_STATUSES, Job, Teacher
from slimformer.store.pages import Slice, SortKey, fetch_page
from slimformer.store.sql import names_nothing

# Where uploaded teachers live, relative to the artifact directory: teachers/<tenant>/<teacher id>/.
TEACHERS_DIR = "teachers"
TEACHER_ORDER = (SortKey(Teacher.created_at, descending=True), SortKey(Teacher.id, descending=True))


def teacher_dir(tenant_id: str, teacher_id: str) -> str:
    """The folder an upload is unpacked into, relative to the artifact directory."""
    return f"{TEACHERS_DIR}/{tenant_id}/{teacher_id}"


def add_teacher(session: Session, **columns: Any) -> Teacher:
    """Record a checked upload (flushed; the caller commits once the files are in place).

    Args:
        session: an open session.
        **columns: the `Teacher` columns: id, tenant_id, name, path (the model folder, relative to
            the artifact directory), model_type, architectures, files, sha256, size_bytes.

    Returns:
        The new row.
    """
    teacher = Teacher(**columns)
    session.add(teacher)
    session.flush()
    return teacher


def get_teacher(session: Session, tenant_id: str, teacher_id: str) -> Teacher:
    """The tenant's teacher.

    Raises:
        NotFound: no such teacher, or another tenant's.
    """
    teacher = find_teacher(session, tenant_id, teacher_id)
    if teacher is None:
        raise NotFound(f"teacher {teacher_id} not found")
    return teacher


def find_teacher(session: Session, tenant_id: str, teacher_id: str) -> Teacher | None:
    """The tenant's teacher, or None (another tenant's reads as missing, and so does an id with NUL)."""
    if names_nothing(teacher_id):
        return None
    return session.scalar(select(Teacher).where(Teacher.id == teacher_id, Teacher.tenant_id == tenant_id))


def list_teachers(
    session: Session, tenant_id: str, limit: int, offset: int = 0, cursor: str | None = None
) -> Slice[Teacher]:
    """One page of the tenant's teachers, newest first (by upload time, then id).

    Returns:
        The page, how many teachers the tenant has in all, and the next page's cursor (None on the
        last page).

    Raises:
        BadCursor: a malformed cursor, or one of another list.
    """
    query = select(Teacher).where(Teacher.tenant_id == tenant_id)
    return fetch_page(session, query, TEACHER_ORDER, f"teachers|{tenant_id}", limit, offset, cursor)


def recent_ids(session: Session, tenant_id: str, limit: int) -> list[str]:
    """The ids of the tenant's newest `limit` teachers (for error messages that list the choices)."""
    return list(session.scalars(
        select(Teacher.id).where(Teacher.tenant_id == tenant_id).order_by(Teacher.created_at.desc()).limit(limit)
    ).all())


def delete_teacher(session: Session, tenant_id: str, teacher_id: str) -> str:
    """Delete the tenant's teacher row (flushed; the caller commits, then removes the files).

    Finished jobs keep their `teacher_id`, as a record of what they were made from.

    Returns:
        Its folder relative to the artifact directory (`teacher_dir`), to remove after the commit.

    Raises:
        NotFound: no such teacher, or another tenant's.
        Conflict: a queued or running job names it.
    """
    teacher = get_teacher(session, tenant_id, teacher_id)
    busy = session.scalars(
        select(Job.id).where(Job.teacher_id == teacher.id, Job.status.not_in(FINISHED_STATUSES)).limit(3)
    ).all()
    if busy:
        raise Conflict(f"teacher {teacher_id} is used by unfinished jobs ({', '.join(busy)}); "
                       "cancel them or wait until they finish")
    session.delete(teacher)
    session.flush()
    return teacher_dir(tenant_id, teacher_id)


def teacher_folder(session: Session, job: Job, artifact_dir: Path) -> Path | None:
    """The model folder of the uploaded teacher a job names; None when it names none.

    The worker-side resolution: `jobs.job_inputs` puts it in the spec it hands to the pipeline.

    Raises:
        NotFound: the job names an uploaded teacher that no longer exists (deleted meanwhile).
    """
    if job.teacher_id is None:
        return None
    relative = session.scalar(
        select(Teacher.path).where(Teacher.id == job.teacher_id, Teacher.tenant_id == job.tenant_id)
    )
    if relative is None:
        raise NotFound(f"the job's uploaded teacher {job.teacher_id} no longer exists")
    return artifact_dir / relative
