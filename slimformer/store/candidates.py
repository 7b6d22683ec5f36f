"""A job's candidates: the worker records and flags them, the API lists and reads them.

Unique per (job, architecture hash), so a resumed job re-reporting a candidate updates it instead
of adding a copy.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Row, select, update
from sqlalchemy.orm import Session

from slimformer.store.errors import NotFound
from slimformer.store.models import CANDIDATE_STATES, Candidate, new_id, utcnow
from slimformer.store.pages import Slice, SortKey, fetch_page
from slimformer.store.sql import NO_SYNC, dialect_insert, names_nothing

CANDIDATE_FIELDS = frozenset(
    {
        "state", "pareto", "proxy", "predicted_latency_ms", "measured_latency_ms", "params", "memory_mb",
        "dev_accuracy", "test_accuracy", "metrics",
    }
)
# The columns a list can be sorted by; only these names reach ORDER BY.
SORT_COLUMNS = {
    "created_at": Candidate.created_at,
    "proxy": Candidate.proxy,
    "predicted_latency_ms": Candidate.predicted_latency_ms,
    "measured_latency_ms": Candidate.measured_latency_ms,
    "params": Candidate.params,
    "memory_mb": Candidate.memory_mb,
    "dev_accuracy": Candidate.dev_accuracy,
    "test_accuracy": Candidate.test_accuracy,
}


def upsert_candidate(session: Session, job_id: str, arch_hash: str, arch: dict[str, Any], **fields: Any) -> str:
    """Insert a candidate, or update the one with the same (job, arch_hash).

    Fields not given keep their stored values.

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
    insert = dialect_insert(session)
    stmt = insert(Candidate).values(
        id=new_id(), job_id=job_id, arch_hash=arch_hash, arch=arch, created_at=now, updated_at=now, **fields
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=["job_id", "arch_hash"], set_={**fields, "arch": arch, "updated_at": now}
    ).returning(Candidate.id)
    return session.scalars(stmt, execution_options=NO_SYNC).one()


def set_pareto(session: Session, job_id: str, candidate_ids: list[str]) -> None:
    """Flag exactly `candidate_ids` as the job's Pareto front."""
    session.execute(
        update(Candidate)
        .where(Candidate.job_id == job_id)
        .values(pareto=Candidate.id.in_(candidate_ids) if candidate_ids else False)
        .execution_options(**NO_SYNC)
    )


def ids_by_hash(session: Session, job_id: str, arch_hashes: Sequence[str]) -> list[str]:
    """The ids of the job's candidates with these architecture hashes (unknown hashes are skipped)."""
    if not arch_hashes:
        return []
    return list(session.scalars(
        select(Candidate.id).where(Candidate.job_id == job_id, Candidate.arch_hash.in_(arch_hashes))
    ))


def get_candidate(session: Session, job_id: str, candidate_id: str) -> Candidate:
    """One candidate of a job (check first that the job is the tenant's).

    Raises:
        NotFound: no such candidate in this job.
    """
    candidate = None if names_nothing(candidate_id) else session.scalar(
        select(Candidate).where(Candidate.id == candidate_id, Candidate.job_id == job_id)
    )
    if candidate is None:
        raise NotFound(f"candidate {candidate_id} not found in job {job_id}")
    return candidate


def list_candidates(
    session: Session, job_id: str, pareto: bool | None, sort: str, limit: int, offset: int = 0,
    cursor: str | None = None,
) -> Slice[Candidate]:
    """One page of a job's candidates.

    Args:
        session: an open session.
        job_id: the job (check first that it is the tenant's).
        pareto: True for only the Pareto front, False for only the rest, None for all.
        sort: a `SORT_COLUMNS` name, "-" prefixed for descending; missing values sort last; the id
            breaks ties.
        limit: page size.
        offset: candidates to skip (without a cursor).
        cursor: the `next_cursor` of the page before. Sorted by `created_at` (the default) a walk
            sees every candidate once; sorted by a measurement, a candidate the worker measures
            during the walk can move past the cursor.

    Returns:
        The page, how many candidates match in all, and the next page's cursor (None on the last page).

    Raises:
        ValueError: an unknown sort column.
        BadCursor: a malformed cursor, or one of another job, filter or sort.
    """
    column = SORT_COLUMNS.get(sort.lstrip("-"))
    if column is None:
        raise ValueError(f"cannot sort candidates by {sort!r}; known: {sorted(SORT_COLUMNS)}")
    query = select(Candidate).where(Candidate.job_id == job_id)
    if pareto is not None:
        query = query.where(Candidate.pareto == pareto)
    keys = (SortKey(column, descending=sort.startswith("-"), nullable=column is not Candidate.created_at),
            SortKey(Candidate.id))
    return fetch_page(session, query, keys, f"candidates|{job_id}|{pareto}|{sort}", limit, offset, cursor)


def measured_points(session: Session, job_id: str) -> list[Row[Any]]:
    """The job's candidates with a measured latency and some accuracy, for the Pareto plot.

    Returns:
        Rows of (id, measured_latency_ms, test_accuracy, dev_accuracy, pareto, metrics); at least one
        of the accuracies is set in each.
    """
    rows = session.execute(
        select(Candidate.id, Candidate.measured_latency_ms, Candidate.test_accuracy, Candidate.dev_accuracy,
               Candidate.pareto, Candidate.metrics)
        .where(Candidate.job_id == job_id, Candidate.measured_latency_ms.is_not(None))
    ).all()
    return [r for r in rows if r.test_accuracy is not None or r.dev_accuracy is not None]
