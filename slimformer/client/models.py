"""What the API returns, as small frozen dataclasses a program can use without reading JSON.

Plain dataclasses, not the service's pydantic schemas: the client must not import the service
(nor torch, nor a database driver), and it should keep working against a slightly newer server,
so unknown fields are ignored and optional ones default. Each object keeps the JSON it came from
in `raw` (for `--json` output and for fields this version does not know yet).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar

__all__ = ["FINAL_STATUSES", "Candidate", "Dataset", "Job", "JobEvent", "Page", "Teacher"]

FINAL_STATUSES = ("succeeded", "failed", "cancelled")
T = TypeVar("T")


def _time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


@dataclass(frozen=True)
class JobEvent:
    """One line of a job's log: a stage starting or ending, a warning, a failure."""

    id: int
    at: datetime
    message: str
    level: str = "info"
    stage: str | None = None
    data: dict[str, Any] | None = None

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> JobEvent:
        return cls(id=doc["id"], at=_time(doc["at"]), message=doc["message"], level=doc.get("level", "info"),
                   stage=doc.get("stage"), data=doc.get("data"))


@dataclass(frozen=True)
class Job:
    """A compression job as the server last reported it.

    `events` is filled by `get_job` (the detail view) and empty in listings. `replayed` is True
    when `submit_job` got back an earlier job under the same idempotency key.
    """

    id: str
    status: str
    name: str = ""
    stage: str | None = None
    progress: float = 0.0
    eta_seconds: float | None = None
    error: str | None = None
    cancel_requested: bool = False
    attempts: int = 0
    dataset_id: str | None = None
    teacher_id: str | None = None
    spec: dict[str, Any] = field(default_factory=dict)
    # Reference points (the task teacher; TF-IDF + logistic regression), once the job measured them.
    teacher: dict[str, Any] | None = None
    baseline: dict[str, Any] | None = None
    metric: str | None = None  # the task metric it optimises ("accuracy" or "macro_f1"), once resolved
    created_at: datetime | None = None
    updated_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    events: tuple[JobEvent, ...] = ()
    replayed: bool = False
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def finished(self) -> bool:
        """True once the job can change no more (succeeded, failed or cancelled)."""
        return self.status in FINAL_STATUSES

    @classmethod
    def from_dict(cls, doc: dict[str, Any], replayed: bool = False) -> Job:
        return cls(
            id=doc["id"], status=doc["status"], name=doc.get("name") or "", stage=doc.get("stage"),
            progress=float(doc.get("progress") or 0.0), eta_seconds=doc.get("eta_seconds"), error=doc.get("error"),
            cancel_requested=bool(doc.get("cancel_requested")), attempts=int(doc.get("attempts") or 0),
            dataset_id=doc.get("dataset_id"), teacher_id=doc.get("teacher_id"), spec=doc.get("spec") or {},
            teacher=doc.get("teacher"), baseline=doc.get("baseline"), metric=doc.get("metric"),
            created_at=_time(doc.get("created_at")),
            updated_at=_time(doc.get("updated_at")), started_at=_time(doc.get("started_at")),
            finished_at=_time(doc.get("finished_at")),
            events=tuple(JobEvent.from_dict(e) for e in doc.get("events") or ()), replayed=replayed, raw=doc,
        )


@dataclass(frozen=True)
class Candidate:
    """An architecture the search kept: its measurements and, once exported, its download formats."""

    id: str
    job_id: str
    arch_hash: str
    state: str
    pareto: bool = False
    arch: dict[str, Any] = field(default_factory=dict)
    proxy: float | None = None
    predicted_latency_ms: float | None = None
    measured_latency_ms: float | None = None
    params: int | None = None
    memory_mb: float | None = None
    dev_accuracy: float | None = None
    test_accuracy: float | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    formats: tuple[str, ...] = ()
    created_at: datetime | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> Candidate:
        return cls(
            id=doc["id"], job_id=doc["job_id"], arch_hash=doc["arch_hash"], state=doc["state"],
            pareto=bool(doc.get("pareto")), arch=doc.get("arch") or {}, proxy=doc.get("proxy"),
            predicted_latency_ms=doc.get("predicted_latency_ms"), measured_latency_ms=doc.get("measured_latency_ms"),
            params=doc.get("params"), memory_mb=doc.get("memory_mb"), dev_accuracy=doc.get("dev_accuracy"),
            test_accuracy=doc.get("test_accuracy"), metrics=doc.get("metrics") or {},
            formats=tuple(doc.get("formats") or ()), created_at=_time(doc.get("created_at")), raw=doc,
        )


@dataclass(frozen=True)
class Dataset:
    """An uploaded labelled data set; its id goes in a job spec's `dataset`."""

    id: str
    name: str
    rows: int
    labels: tuple[str, ...]
    format: str = ""
    sha256: str = ""
    size_bytes: int = 0
    created_at: datetime | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> Dataset:
        return cls(
            id=doc["id"], name=doc.get("name") or "", rows=int(doc.get("rows") or 0),
            labels=tuple(doc.get("labels") or ()), format=doc.get("format") or "", sha256=doc.get("sha256") or "",
            size_bytes=int(doc.get("size_bytes") or 0), created_at=_time(doc.get("created_at")), raw=doc,
        )


@dataclass(frozen=True)
class Teacher:
    """An uploaded teacher model folder; its id goes in a job spec's `teacher`."""

    id: str
    name: str
    model_type: str = ""
    architectures: tuple[str, ...] = ()
    files: int = 0
    sha256: str = ""
    size_bytes: int = 0
    created_at: datetime | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> Teacher:
        return cls(
            id=doc["id"], name=doc.get("name") or "", model_type=doc.get("model_type") or "",
            architectures=tuple(doc.get("architectures") or ()), files=int(doc.get("files") or 0),
            sha256=doc.get("sha256") or "", size_bytes=int(doc.get("size_bytes") or 0),
            created_at=_time(doc.get("created_at")), raw=doc,
        )


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a listing: `items`, `total` across all pages, and `next_cursor` for the next page
    (None on the last; the client's `iter_*` methods follow it for you)."""

    items: list[T]
    total: int
    limit: int
    offset: int = 0
    next_cursor: str | None = None
