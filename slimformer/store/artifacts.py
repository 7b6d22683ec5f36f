"""A candidate's downloadable files: the worker registers them, the API finds them and caches their zips."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from slimformer.store.errors import NotFound
from slimformer.store.models import ARTIFACT_FORMATS, Artifact, new_id, utcnow
from slimformer.store.sql import NO_SYNC, dialect_insert


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
    insert = dialect_insert(session)
    stmt = (
        insert(Artifact)
        .values(id=new_id(), candidate_id=candidate_id, format=format, created_at=utcnow(), **changes)
        .on_conflict_do_update(index_elements=["candidate_id", "format"], set_=changes)
        .returning(Artifact.id)
    )
    return session.scalars(stmt, execution_options=NO_SYNC).one()


def get_artifact(session: Session, candidate_id: str, format: str) -> Artifact:
    """The candidate's artifact in `format` (check first that the candidate is the tenant's).

    Raises:
        NotFound: the candidate has no artifact in that format (yet).
    """
    artifact = session.scalar(select(Artifact).where(Artifact.candidate_id == candidate_id, Artifact.format == format))
    if artifact is None:
        raise NotFound(f"candidate {candidate_id} has no {format} artifact (yet)")
    return artifact


def formats_by_candidate(session: Session, candidate_ids: Sequence[str]) -> dict[str, list[str]]:
    """The artifact formats each candidate has, sorted; candidates without any are left out."""
    found: dict[str, list[str]] = {}
    if candidate_ids:
        for cid, fmt in session.execute(
            select(Artifact.candidate_id, Artifact.format).where(Artifact.candidate_id.in_(candidate_ids))
            .order_by(Artifact.format)
        ):
            found.setdefault(cid, []).append(fmt)
    return found


def record_zip(session: Session, artifact: Artifact, sha256: str, size_bytes: int) -> None:
    """Remember the cached download zip built for `artifact` (flushed; the caller commits).

    Re-registering the artifact (`upsert_artifact`) forgets it again, so a stale zip is never served.
    """
    artifact.zip_sha256, artifact.zip_size_bytes = sha256, size_bytes
    session.flush()
