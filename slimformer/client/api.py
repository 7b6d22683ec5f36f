"""SlimformerClient: the /v1 API as typed Python methods, over HTTP only (httpx).

No torch, no database, no service code: a notebook or a CI script can drive a remote server with
this module alone, and the CLI's remote commands are a thin layer of printing over it. Every
failure is a ClientError with a message fit to show a person.
"""

from __future__ import annotations

import hashlib
import tarfile
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx

from slimformer.client.artifacts import save_model_zip
from slimformer.client.errors import ClientError, http_error_message, transport_error_message
from slimformer.client.models import Candidate, Dataset, Job, Page, Teacher
from slimformer.contracts.teacher_files import folder_digest, upload_files

__all__ = ["SlimformerClient"]

T = TypeVar("T")


class SlimformerClient:
    """A client of one server's /v1 API, acting as the tenant of one API key.

    Args:
        base_url: the server, e.g. http://127.0.0.1:8000.
        api_key: the API key (sent as a bearer token); None sends none (the server answers 401).
        timeout: seconds per request (downloads: per chunk).
        transport: an httpx transport to send through instead of the network (tests, proxies).

    Use as a context manager, or call `close()`, to release its connections.
    """

    def __init__(self, base_url: str, api_key: str | None = None, timeout: float = 60.0,
                 transport: httpx.BaseTransport | None = None):
        self.base_url = base_url.rstrip("/")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout, transport=transport)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> SlimformerClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- transport ---------------------------------------------------------------------------

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Send a request and return the response, or raise ClientError for a failure.

        Raises:
            ClientError: cannot connect, a timeout, or an HTTP error status (with the API's `detail`).
        """
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise ClientError(transport_error_message(exc, self.base_url, f"{method} {path}")) from None
        if response.is_error:
            raise ClientError(http_error_message(response), response.status_code)
        return response

    @contextmanager
    def stream(self, path: str, **kwargs: Any) -> Iterator[httpx.Response]:
        """GET `path` as a stream (for downloads); errors as in `request`."""
        try:
            with self.http.stream("GET", path, **kwargs) as response:
                if response.is_error:
                    response.read()
                    raise ClientError(http_error_message(response), response.status_code)
                yield response
        except httpx.TransportError as exc:
            raise ClientError(transport_error_message(exc, self.base_url, f"GET {path}")) from None

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.request(method, path, **kwargs).json()

    # --- jobs --------------------------------------------------------------------------------

    def submit_job(self, spec: Mapping[str, Any] | Any, idempotency_key: str | None = None) -> Job:
        """Queue a job. `spec` is a dict or a JobSpec; a local data set must be uploaded first.

        With `idempotency_key`, a retry of the same request returns the first job (`replayed`).
        """
        body = spec.model_dump(mode="json") if hasattr(spec, "model_dump") else dict(spec)
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        response = self.request("POST", "/v1/jobs", json=body, headers=headers)
        return Job.from_dict(response.json(), replayed=response.headers.get("Idempotent-Replayed") == "true")

    def get_job(self, job_id: str) -> Job:
        """The job with its recent events."""
        return Job.from_dict(self.json("GET", f"/v1/jobs/{job_id}"))

    def list_jobs(self, status: str | None = None, limit: int | None = 20, offset: int = 0,
                  cursor: str | None = None) -> Page[Job]:
        """One page of the tenant's jobs, newest first; pass a page's `next_cursor` as `cursor` for the next.

        `limit=None` asks for the server's default page size.
        """
        params: dict[str, Any] = {} if limit is None else {"limit": limit}
        if offset:
            params["offset"] = offset
        if cursor:
            params["cursor"] = cursor
        if status:
            params["status"] = status
        return _page(self.json("GET", "/v1/jobs", params=params), Job.from_dict)

    def iter_jobs(self, status: str | None = None, page_size: int | None = None) -> Iterator[Job]:
        """Every job of the tenant, newest first, page by page (by cursor: none twice, none skipped)."""
        return _walk(lambda cursor: self.list_jobs(status=status, limit=page_size, cursor=cursor))

    def cancel_job(self, job_id: str) -> Job:
        """Cancel a queued job, or ask a running one to stop at its next check."""
        return Job.from_dict(self.json("POST", f"/v1/jobs/{job_id}/cancel"))

    # --- candidates and artifacts ------------------------------------------------------------

    def candidates(self, job_id: str, pareto: bool | None = None, sort: str | None = None,
                   limit: int | None = None, offset: int = 0, cursor: str | None = None) -> Page[Candidate]:
        """The job's candidates; `pareto=True` only the front, `sort` by a field (e.g. measured_latency_ms).

        For the next page pass this page's `next_cursor` as `cursor`, with the same `pareto` and `sort`.
        """
        params: dict[str, Any] = {}
        if pareto is not None:
            params["pareto"] = "true" if pareto else "false"
        if sort:
            params["sort"] = sort
        if limit is not None:
            params["limit"] = limit
        if offset:
            params["offset"] = offset
        if cursor:
            params["cursor"] = cursor
        return _page(self.json("GET", f"/v1/jobs/{job_id}/candidates", params=params), Candidate.from_dict)

    def iter_candidates(self, job_id: str, pareto: bool | None = None, sort: str | None = None,
                        page_size: int | None = None) -> Iterator[Candidate]:
        """Every candidate of the job (filtered and sorted as in `candidates`), page by page."""
        return _walk(lambda cursor: self.candidates(job_id, pareto, sort, limit=page_size, cursor=cursor))

    def pareto_plot(self, job_id: str, format: str = "png") -> bytes:
        """The Pareto plot as PNG or SVG bytes."""
        if format not in ("png", "svg"):
            raise ClientError(f"pareto plot format {format!r}: use png or svg")
        return self.request("GET", f"/v1/jobs/{job_id}/pareto.{format}").content

    def download(self, job_id: str, candidate_id: str, format: str = "hf", dest: Path | str = ".") -> Path:
        """Stream a candidate's model (hf, onnx or onnx-int8), check its digest, unzip it into `dest`.

        Returns:
            `dest`, holding the model files (config.json, weights, tokenizer ...).
        """
        path = f"/v1/jobs/{job_id}/candidates/{candidate_id}/artifact"
        with self.stream(path, params={"format": format}) as response:
            return save_model_zip(response, Path(dest))

    # --- data sets ---------------------------------------------------------------------------

    def list_datasets(self, limit: int | None = None, cursor: str | None = None) -> Page[Dataset]:
        """One page of the tenant's uploads, newest first (the server's default page size unless `limit`)."""
        params: dict[str, Any] = {}
        if limit is not None:
            params["limit"] = limit
        if cursor:
            params["cursor"] = cursor
        return _page(self.json("GET", "/v1/datasets", params=params), Dataset.from_dict)

    def iter_datasets(self, page_size: int | None = None) -> Iterator[Dataset]:
        """Every upload of the tenant, newest first, page by page."""
        return _walk(lambda cursor: self.list_datasets(limit=page_size, cursor=cursor))

    def upload_dataset(self, path: Path | str, name: str | None = None) -> Dataset:
        """Upload a CSV/JSONL file of labelled text."""
        path = Path(path)
        with path.open("rb") as f:
            doc = self.json("POST", "/v1/datasets", files={"file": (path.name, f)}, data={"name": name or path.stem})
        return Dataset.from_dict(doc)

    def ensure_dataset(self, path: Path | str) -> tuple[Dataset, bool]:
        """The tenant's earlier upload of the same bytes, else a new upload.

        Reusing keeps a retried submission idempotent: a second upload would get a new data set id,
        so the retry would differ from the first request and be refused as a reuse of its key.

        Returns:
            The data set and whether it was an earlier upload.
        """
        digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
        for dataset in self.iter_datasets():
            if dataset.sha256 == digest:
                return dataset, True
        return self.upload_dataset(path), False

    # --- teachers ----------------------------------------------------------------------------

    def list_teachers(self, limit: int | None = None, cursor: str | None = None) -> Page[Teacher]:
        """One page of the tenant's uploaded teachers, newest first (the server's default page size unless `limit`)."""
        params: dict[str, Any] = {}
        if limit is not None:
            params["limit"] = limit
        if cursor:
            params["cursor"] = cursor
        return _page(self.json("GET", "/v1/teachers", params=params), Teacher.from_dict)

    def iter_teachers(self, page_size: int | None = None) -> Iterator[Teacher]:
        """Every uploaded teacher of the tenant, newest first, page by page."""
        return _walk(lambda cursor: self.list_teachers(limit=page_size, cursor=cursor))

    def get_teacher(self, teacher_id: str) -> Teacher:
        return Teacher.from_dict(self.json("GET", f"/v1/teachers/{teacher_id}"))

    def delete_teacher(self, teacher_id: str) -> None:
        """Delete an uploaded teacher (409 while a queued or running job uses it)."""
        self.request("DELETE", f"/v1/teachers/{teacher_id}")

    def upload_teacher(self, path: Path | str, name: str | None = None) -> Teacher:
        """Upload a teacher: a local Hugging Face model folder (sent as a tar of `upload_files`) or
        a .zip/.tar/.tar.gz of one. Use the returned id as a job's `teacher`.

        Raises:
            ClientError: the folder has no config.json, or the server refused the upload (its reason).
        """
        path = Path(path)
        if not path.is_dir():
            with path.open("rb") as f:
                doc = self.json("POST", "/v1/teachers", files={"file": (path.name, f)},
                                data={"name": name or _archive_stem(path.name)})
            return Teacher.from_dict(doc)
        files = _folder_files(path)
        with tempfile.TemporaryFile() as archive:
            # dereference: a linked file (a Hugging Face cache folder) goes as the file it points to.
            with tarfile.open(fileobj=archive, mode="w", dereference=True) as tar:
                for file in files:
                    tar.add(file, arcname=file.name, recursive=False)
            archive.seek(0)
            doc = self.json("POST", "/v1/teachers", files={"file": (f"{path.name}.tar", archive)},
                            data={"name": name or path.name})
        return Teacher.from_dict(doc)

    def ensure_teacher(self, folder: Path | str) -> tuple[Teacher, bool]:
        """The tenant's earlier upload of the same model folder (same files), else a new upload.

        Reusing keeps a retried submission idempotent, as `ensure_dataset` does for data sets.

        Returns:
            The teacher and whether it was an earlier upload.
        """
        folder = Path(folder)
        digest = folder_digest((f.name, f) for f in _folder_files(folder))
        for teacher in self.iter_teachers():
            if teacher.sha256 == digest:
                return teacher, True
        return self.upload_teacher(folder), False


def _folder_files(folder: Path) -> list[Path]:
    if not (folder / "config.json").is_file():
        raise ClientError(f"{folder}: no config.json; point at the Hugging Face model folder that holds it")
    return upload_files(folder)


def _archive_stem(name: str) -> str:
    for suffix in (".tar.gz", ".tgz", ".tar", ".zip"):
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name


def _page(doc: dict[str, Any], parse: Any) -> Page[Any]:
    return Page(items=[parse(item) for item in doc["items"]], total=doc["total"], limit=doc.get("limit", 0),
                offset=doc.get("offset", 0), next_cursor=doc.get("next_cursor"))


def _walk(fetch: Callable[[str | None], Page[T]]) -> Iterator[T]:
    """The items of every page, following `next_cursor` until a page has none.

    Pages are fetched as the iteration reaches them; a server too old to return cursors ends the
    walk after its first page.
    """
    cursor: str | None = None
    while True:
        page = fetch(cursor)
        yield from page.items
        if not page.next_cursor:
            return
        cursor = page.next_cursor
