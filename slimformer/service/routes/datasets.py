"""Uploaded data sets: upload (CSV or JSON lines with `text` and `label`), list, read."""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Annotated, BinaryIO

from fastapi import APIRouter, Form, UploadFile, status

from slimformer.data.files import CSV_SUFFIXES, JSONL_SUFFIXES
from slimformer.data.registry import load_task
from slimformer.errors import DataError
from slimformer.service.auth import CurrentTenant
from slimformer.service.deps import PageDep, SessionDep, SettingsDep
from slimformer.service.errors import InvalidRequest, PayloadTooLarge
from slimformer.service.openapi import PROTECTED, error_responses
from slimformer.service.rate_limit import RateLimit
from slimformer.service.schemas import NO_NUL, DatasetOut, Page
from slimformer.store import datasets
from slimformer.store.models import new_id

router = APIRouter(prefix="/v1/datasets", tags=["datasets"], responses=PROTECTED)

UPLOAD_SUFFIXES = CSV_SUFFIXES + JSONL_SUFFIXES
_CHUNK = 1024 * 1024


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    dependencies=[RateLimit],
    responses=error_responses(400, 429, described={
        413: "File over the upload limit", 422: "Not a usable data set; the message names the line",
    }),
)
def upload_dataset(
    file: UploadFile,
    session: SessionDep,
    tenant: CurrentTenant,
    settings: SettingsDep,
    name: Annotated[str | None, Form(max_length=200, description="defaults to the file's name",
                                     json_schema_extra={"pattern": NO_NUL})] = None,
) -> DatasetOut:
    """Upload a labelled data set (`.csv`, `.jsonl` or `.json` lines; columns `text` and `label`).

    It is checked in full before it is kept: a problem answers 422 with a message that names the
    line ("reviews.csv line 7: empty text"). Use the returned `id` as a job's `dataset`. Counts
    against the API key's rate limit (429 with `Retry-After` over it).
    """
    if name is not None and "\x00" in name:
        raise InvalidRequest.at(["body", "name"], "name should not contain NUL (\\x00) characters", "string_nul")
    # The client's file name is only a label and a suffix: the stored name is ours.
    filename = PurePosixPath((file.filename or "").replace("\\", "/").replace("\x00", "")).name or "upload"
    suffix = PurePosixPath(filename).suffix.lower()
    if suffix not in UPLOAD_SUFFIXES:
        raise DataError(f"{filename}: unknown extension '{suffix}' (expected one of {', '.join(UPLOAD_SUFFIXES)})")
    dataset_id = new_id()
    relative = f"datasets/{tenant.id}/{dataset_id}{suffix}"
    stored = settings.artifacts / relative
    try:
        size = _save_limited(file.file, stored, settings.max_upload_bytes)
        task = load_task(stored, max_bytes=settings.max_upload_bytes, display_name=filename)
        dataset = datasets.add_dataset(
            session, id=dataset_id, tenant_id=tenant.id, name=(name or PurePosixPath(filename).stem)[:200],
            path=relative, format=task.source["format"], rows=task.source["counts"]["rows"], labels=list(task.labels),
            sha256=task.source["sha256"], size_bytes=size,
        )
        session.commit()
    except BaseException:
        stored.unlink(missing_ok=True)  # no row, no file: a refused or failed upload leaves nothing
        raise
    return DatasetOut.model_validate(dataset)


def _save_limited(source: BinaryIO, target: Path, limit: int) -> int:
    target.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with target.open("wb") as out:
        while chunk := source.read(_CHUNK):
            written += len(chunk)
            if written > limit:
                raise PayloadTooLarge(f"uploaded file is over the limit of {limit} bytes")
            out.write(chunk)
    return written


@router.get("", responses=error_responses(described={
    422: "Invalid query; also a malformed cursor, one of another list, or a cursor with an offset",
}))
def list_datasets(session: SessionDep, tenant: CurrentTenant, page: PageDep) -> Page[DatasetOut]:
    """The tenant's uploaded data sets, newest first. Page with `cursor` (each page's `next_cursor`), or `offset`."""
    found = datasets.list_datasets(session, tenant.id, page.limit, page.offset, page.cursor)
    return Page[DatasetOut](items=[DatasetOut.model_validate(d) for d in found.rows], total=found.total,
                            limit=page.limit, offset=page.offset, next_cursor=found.next_cursor)


@router.get("/{dataset_id}", responses=error_responses(described={404: "No such data set (or not yours)"}))
def get_dataset(dataset_id: str, session: SessionDep, tenant: CurrentTenant) -> DatasetOut:
    """One uploaded data set."""
    return DatasetOut.model_validate(datasets.get_dataset(session, tenant.id, dataset_id))
