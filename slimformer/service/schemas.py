"""Response bodies of the API. Requests are `slimformer.contracts.spec.JobSpec` (jobs) and multipart (uploads).

Server paths (run folders, artifact and data set files) and worker names never appear here.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from slimformer.store.pages import CURSOR_PATTERN, MAX_CURSOR_LENGTH

T = TypeVar("T")

# The most events a job's detail carries (`store.events.recent_events`' default).
MAX_EVENTS = 20
# Bounds the settings allow; the app's schema tightens `limit` and `items` to its own page size
# (`slimformer.service.openapi`).
MAX_PAGE_SIZE = 1000
MAX_OFFSET = 1_000_000
# The schema pattern of a form text (an upload's name): PostgreSQL cannot store NUL in text.
NO_NUL = r"^[^\x00]*$"


class ErrorOut(BaseModel):
    """The body of every error answer except 422 (which carries a list, FastAPI's `HTTPValidationError`)."""

    detail: str = Field(description="what went wrong, for people")


class Page(BaseModel, Generic[T]):
    """One page of a list, newest first unless a sort says otherwise.

    Pass `next_cursor` back as `cursor` for the next page; it is null on the last page. Walking by
    cursor sees every row that exists throughout the walk exactly once, whatever is added meanwhile.
    """

    items: list[T] = Field(max_length=MAX_PAGE_SIZE)
    total: int = Field(ge=0, description="items in the whole list (not only after the cursor)")
    limit: int = Field(ge=1, le=MAX_PAGE_SIZE)
    offset: int = Field(ge=0, le=MAX_OFFSET, description="items skipped (0 when paging by cursor)")
    next_cursor: str | None = Field(
        default=None, max_length=MAX_CURSOR_LENGTH, pattern=CURSOR_PATTERN,
        description="the `cursor` of the next page; null on the last page",
    )


class EventOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    at: datetime
    level: str
    stage: str | None
    message: str
    data: dict[str, Any] | None


class ClassFiguresOut(BaseModel):
    """One class's figures on a split (precision 0 when never predicted, recall 0 when absent)."""

    precision: float = Field(ge=0, le=1)
    recall: float = Field(ge=0, le=1)
    f1: float = Field(ge=0, le=1)
    support: int = Field(ge=0, description="rows of this class in the split")


class ClassMetricsOut(BaseModel):
    """Macro-F1 and per-class figures (keyed by label name) on the same rows as the accuracy; null
    where not measured (a job from before they were)."""

    dev_macro_f1: float | None = Field(default=None, ge=0, le=1)
    test_macro_f1: float | None = Field(default=None, ge=0, le=1)
    dev_per_class: dict[str, ClassFiguresOut] | None = None
    test_per_class: dict[str, ClassFiguresOut] | None = None


class TeacherPointOut(ClassMetricsOut):
    """The job's task teacher as a reference point, measured on the same rows and shape as the finalists."""

    name: str = Field(description="the teacher the spec names")
    dev_accuracy: float = Field(ge=0, le=1)
    test_accuracy: float = Field(ge=0, le=1)
    latency_ms: float = Field(ge=0, description="measured like the finalists' (the spec's latency shape)")
    params: int = Field(ge=0)
    source: Literal["given", "fine_tuned", "head"] = Field(
        "fine_tuned", description="given: the uploaded classifier used unchanged; fine_tuned: slimformer "
                                  "fine-tuned a head on the task; head: the folder's own mean-pooling head")


class BaselinePointOut(ClassMetricsOut):
    """TF-IDF + logistic regression (scikit-learn) fitted on the job's training split: the classical
    reference point. Judged on the finalists' dev/test rows; latency is the median of 30
    single-example predictions (text in, label out) at the spec's thread count."""

    name: str
    dev_accuracy: float = Field(ge=0, le=1)
    test_accuracy: float = Field(ge=0, le=1)
    latency_ms: float = Field(ge=0)
    fit_seconds: float = Field(ge=0)
    train_examples: int = Field(ge=0, description="training rows fitted on (capped at 50,000)")
    features: int = Field(ge=0, description="TF-IDF vocabulary size (capped at 100,000)")
    threads: int = Field(ge=1)


class JobOut(BaseModel):
    """A job's state. `progress` is 0..1 over the whole job; `eta_seconds` is None until known."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    status: Literal["queued", "running", "succeeded", "failed", "cancelled"]
    stage: str | None
    progress: float
    eta_seconds: float | None
    cancel_requested: bool
    attempts: int
    error: str | None
    dataset_id: str | None
    teacher_id: str | None = Field(description="the uploaded teacher the spec names, if any")
    spec: dict[str, Any]
    teacher: TeacherPointOut | None = Field(
        default=None, description="the task teacher's figures; null until the job's baseline stage is done")
    baseline: BaselinePointOut | None = Field(
        default=None, description="TF-IDF + logistic regression's figures; null until the job's baseline stage is "
                                  "done, or when it could not be fitted")
    metric: Literal["accuracy", "macro_f1"] | None = Field(
        default=None, description="the task metric the job optimises (the spec's, or for `auto` macro_f1 when the "
                                  "smallest class is under 20% of the training data); null until resolved")
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class JobDetail(JobOut):
    """A job with its last 20 events, oldest first."""

    events: list[EventOut] = Field(max_length=MAX_EVENTS)


class CandidateOut(BaseModel):
    """A scored architecture and what was measured of it. `formats`: artifacts ready to download."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    job_id: str
    arch_hash: str
    arch: dict[str, Any]
    state: Literal["scored", "finetuned", "exported"]
    pareto: bool
    proxy: float | None
    predicted_latency_ms: float | None
    measured_latency_ms: float | None
    params: int | None
    memory_mb: float | None
    dev_accuracy: float | None
    test_accuracy: float | None
    metrics: dict[str, Any]
    formats: list[str] = []
    created_at: datetime
    updated_at: datetime


class DatasetOut(BaseModel):
    """An uploaded data set; use its `id` as a job's `dataset`."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    format: str
    rows: int
    labels: list[str]
    sha256: str
    size_bytes: int
    created_at: datetime


class TeacherOut(BaseModel):
    """An uploaded teacher; use its `id` as a job's `teacher`. `sha256`: digest of its files."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    model_type: str
    architectures: list[str]
    files: int
    sha256: str
    size_bytes: int
    created_at: datetime


class HealthOut(BaseModel):
    status: Literal["ok", "unavailable"]
    database: dict[str, Any]
    ray: dict[str, Any]
