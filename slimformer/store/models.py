"""Database tables: tenants and their API keys, jobs and their events, candidates, artifacts, data sets,
uploaded teachers, and the latency tables workers measured.

Ids are server-generated ULIDs (time-ordered, so "newest first" is an index scan and ids never
come from a client). Timestamps are UTC and come back timezone-aware on every database.
Artifact and data set paths are relative to the artifact directory, never absolute, so the store
can move and no path in a response reveals the server's layout.

The migrations under `slimformer/migrations/versions/` create exactly these tables (a test
compares them); a change here needs a new revision.
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

JOB_STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")
FINISHED_STATUSES = ("succeeded", "failed", "cancelled")
CANDIDATE_STATES = ("scored", "finetuned", "exported")
ARTIFACT_FORMATS = ("hf", "onnx", "onnx-int8")
EVENT_LEVELS = ("debug", "info", "warning", "error")

# Named constraints, so migrations (and SQLite batch mode) can address them on every database.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_id() -> str:
    """A ULID: 48 bits of Unix milliseconds then 80 random bits, as 26 Crockford base-32 characters.

    Returns:
        An id that sorts by creation time (to the millisecond) and cannot be guessed.
    """
    value = (time.time_ns() // 1_000_000) << 80 | int.from_bytes(os.urandom(10), "big")
    return "".join(_CROCKFORD[(value >> shift) & 31] for shift in range(125, -1, -5))


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every database.

    SQLite has no timezone type and hands back naive values; storing naive UTC there and marking
    it UTC on the way out keeps comparisons (lease expiry) and responses the same everywhere.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: pass a timezone-aware UTC datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# SQLite only auto-increments an INTEGER PRIMARY KEY, not a BIGINT one.
_BIG_ID = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON(), list[Any]: JSON()}


class Tenant(Base):
    """Who owns jobs, data sets and keys. Everything a request can see is scoped to one tenant."""

    __tablename__ = "tenants"

    id: Mapped[str] = mapped_column(String(26), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ApiKey(Base):
    """A bearer key of a tenant. Only its SHA-256 is stored; `prefix` lets people tell keys apart."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(26), primary_key=True, default=new_id)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    prefix: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(100), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)


class Dataset(Base):
    """An uploaded labelled data set, validated at upload and stored under the artifact directory."""

    __tablename__ = "datasets"
    __table_args__ = (Index("ix_datasets_tenant_created", "tenant_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(26), primary_key=True, default=new_id)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    path: Mapped[str] = mapped_column(String(1000))  # relative to the artifact directory
    format: Mapped[str] = mapped_column(String(10))  # "csv" or "jsonl"
    rows: Mapped[int] = mapped_column(Integer)
    labels: Mapped[list[Any]] = mapped_column()
    sha256: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Teacher(Base):
    """An uploaded teacher model folder, checked at upload and unpacked under the artifact directory.

    `path` is the model folder (the one holding config.json) relative to the artifact directory;
    `sha256` is the content digest of its files (`contracts.teacher_files.folder_digest`), which
    lets a client find an earlier upload of the same folder.
    """

    __tablename__ = "teachers"
    __table_args__ = (Index("ix_teachers_tenant_created", "tenant_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(26), primary_key=True, default=new_id)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    path: Mapped[str] = mapped_column(String(1000))  # relative to the artifact directory
    model_type: Mapped[str] = mapped_column(String(40))
    architectures: Mapped[list[Any]] = mapped_column()
    files: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Job(Base):
    """A compression job and the state of its one run.

    Lifecycle: queued -> running -> succeeded | failed | cancelled (queued -> cancelled directly).
    A worker owns a running job while `lease_expires_at` is in the future and renews it by
    heartbeat; a job whose lease ran out is claimable again and resumes from its checkpoints.
    """

    __tablename__ = "jobs"
    __table_args__ = (
        UniqueConstraint("tenant_id", "idempotency_key", name="uq_jobs_tenant_idempotency_key"),
        CheckConstraint(f"status IN {JOB_STATUSES!r}", name="status"),
        CheckConstraint("progress >= 0 AND progress <= 1", name="progress"),
        Index("ix_jobs_tenant_created", "tenant_id", "created_at"),
        Index("ix_jobs_status_created", "status", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(26), primary_key=True, default=new_id)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200), default="")
    spec: Mapped[dict[str, Any]] = mapped_column()
    spec_sha256: Mapped[str] = mapped_column(String(64))  # tells an idempotent retry from a key reuse
    dataset_id: Mapped[str | None] = mapped_column(ForeignKey("datasets.id", ondelete="RESTRICT"), default=None)
    # The uploaded teacher the spec names. Not a foreign key: adding one to an existing SQLite jobs
    # table means rebuilding it, and dropping the old table would cascade to events and candidates.
    # `store.teachers` refuses to delete a teacher an unfinished job names.
    teacher_id: Mapped[str | None] = mapped_column(String(26), index=True, default=None)
    idempotency_key: Mapped[str | None] = mapped_column(String(200), default=None)
    status: Mapped[str] = mapped_column(String(16), default="queued")
    stage: Mapped[str | None] = mapped_column(String(40), default=None)
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    eta_seconds: Mapped[float | None] = mapped_column(Float, default=None)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    lease_owner: Mapped[str | None] = mapped_column(String(200), default=None)
    lease_expires_at: Mapped[datetime | None] = mapped_column(default=None)
    heartbeat_at: Mapped[datetime | None] = mapped_column(default=None)
    run_dir: Mapped[str | None] = mapped_column(String(1000), default=None)  # relative to the artifact dir
    error: Mapped[str | None] = mapped_column(Text, default=None)
    # Reference points the worker records once the job's `baseline` stage is done (see
    # workers/references.py): the task teacher's figures and TF-IDF + logistic regression's (null
    # when it could not be fitted), and the task metric the job optimises ("accuracy", "macro_f1").
    teacher: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    baseline: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    metric: Mapped[str | None] = mapped_column(String(16), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)


class JobEvent(Base):
    """One line of a job's history (stage started, checkpoint written, lease taken over, ...)."""

    __tablename__ = "job_events"
    __table_args__ = (Index("ix_job_events_job_id_id", "job_id", "id"),)

    id: Mapped[int] = mapped_column(_BIG_ID, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(default=utcnow)
    level: Mapped[str] = mapped_column(String(10), default="info")
    stage: Mapped[str | None] = mapped_column(String(40), default=None)
    message: Mapped[str] = mapped_column(Text)
    data: Mapped[dict[str, Any] | None] = mapped_column(default=None)


class Candidate(Base):
    """An architecture the search scored, and what was measured of it later.

    Unique per (job, architecture hash), so a resumed job updates its candidates instead of
    adding copies.
    """

    __tablename__ = "candidates"
    __table_args__ = (
        UniqueConstraint("job_id", "arch_hash", name="uq_candidates_job_arch"),
        CheckConstraint(f"state IN {CANDIDATE_STATES!r}", name="state"),
        Index("ix_candidates_job_pareto", "job_id", "pareto"),
    )

    id: Mapped[str] = mapped_column(String(26), primary_key=True, default=new_id)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    arch_hash: Mapped[str] = mapped_column(String(64))
    arch: Mapped[dict[str, Any]] = mapped_column()
    state: Mapped[str] = mapped_column(String(16), default="scored")
    pareto: Mapped[bool] = mapped_column(Boolean, default=False)
    proxy: Mapped[float | None] = mapped_column(Float, default=None)
    predicted_latency_ms: Mapped[float | None] = mapped_column(Float, default=None)
    measured_latency_ms: Mapped[float | None] = mapped_column(Float, default=None)
    params: Mapped[int | None] = mapped_column(BigInteger, default=None)
    memory_mb: Mapped[float | None] = mapped_column(Float, default=None)
    dev_accuracy: Mapped[float | None] = mapped_column(Float, default=None)
    test_accuracy: Mapped[float | None] = mapped_column(Float, default=None)
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Artifact(Base):
    """A downloadable form of a candidate: a file or folder under the artifact directory.

    `size_bytes`/`sha256` describe what the worker wrote (sha256 may be None for a folder). The
    zip the API serves is built once and cached; `zip_sha256`/`zip_size_bytes` describe it and are
    reset whenever the worker registers the artifact again.
    """

    __tablename__ = "artifacts"
    __table_args__ = (
        UniqueConstraint("candidate_id", "format", name="uq_artifacts_candidate_format"),
        CheckConstraint(f"format IN {ARTIFACT_FORMATS!r}", name="format"),
    )

    id: Mapped[str] = mapped_column(String(26), primary_key=True, default=new_id)
    candidate_id: Mapped[str] = mapped_column(ForeignKey("candidates.id", ondelete="CASCADE"))
    format: Mapped[str] = mapped_column(String(16))
    path: Mapped[str] = mapped_column(String(1000))  # relative to the artifact directory
    size_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    sha256: Mapped[str | None] = mapped_column(String(64), default=None)
    zip_sha256: Mapped[str | None] = mapped_column(String(64), default=None)
    zip_size_bytes: Mapped[int | None] = mapped_column(BigInteger, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class LatencyTableRecord(Base):
    """A latency table a worker measured (`slimformer.search_space.latency.LatencyTable.to_dict()`).

    Shared across tenants: it describes a worker machine, not anybody's data. The API reads it to
    refuse at submission a latency budget that no architecture can meet on the workers that
    measured it. One row per `key` (machine, setting, torch version and space, as in
    `table_cache_path`); a worker that measures again replaces its row.
    """

    __tablename__ = "latency_tables"
    __table_args__ = (
        UniqueConstraint("key", name="uq_latency_tables_key"),
        Index("ix_latency_tables_lookup", "space_key", "batch", "seq_len", "threads", "runtime"),
    )

    id: Mapped[str] = mapped_column(String(26), primary_key=True, default=new_id)
    key: Mapped[str] = mapped_column(String(200))
    space_key: Mapped[str] = mapped_column(String(32))
    batch: Mapped[int] = mapped_column(Integer)
    seq_len: Mapped[int] = mapped_column(Integer)
    threads: Mapped[int] = mapped_column(Integer)
    runtime: Mapped[str] = mapped_column(String(20))
    hardware: Mapped[dict[str, Any]] = mapped_column()
    table: Mapped[dict[str, Any]] = mapped_column()
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
