"""A job's candidates: list, read, download as a zip, and the Pareto plot."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi.responses import FileResponse, Response
from sqlalchemy.orm import Session

from slimformer.plots import MEDIA_TYPES, ImageFormat, PlotPoint, ReferencePoint, render_pareto
from slimformer.service.auth import CurrentTenant
from slimformer.service.deps import PageDep, SessionDep, SettingsDep
from slimformer.service.downloads import build_lock, build_zip, resolve_under, zip_cache_path
from slimformer.service.openapi import PROTECTED, error_responses
from slimformer.service.schemas import CandidateOut, Page
from slimformer.store import artifacts, candidates, jobs
from slimformer.store.models import Artifact, Candidate

router = APIRouter(prefix="/v1/jobs", tags=["candidates"], responses=PROTECTED)

# "-x" sorts descending; the whitelist is the OpenAPI enum (the names of `candidates.SORT_COLUMNS`),
# so no client text reaches ORDER BY.
CandidateSort = Literal[
    "created_at", "-created_at", "proxy", "-proxy", "predicted_latency_ms", "-predicted_latency_ms",
    "measured_latency_ms", "-measured_latency_ms", "params", "-params", "memory_mb", "-memory_mb",
    "dev_accuracy", "-dev_accuracy", "test_accuracy", "-test_accuracy",
]
ArtifactFormat = Literal["hf", "onnx", "onnx-int8"]
_NOT_FOUND = error_responses(described={404: "No such job or candidate (or not yours)"})


@router.get("/{job_id}/candidates", responses=error_responses(described={
    404: "No such job (or not yours)",
    422: "Invalid query; also a malformed cursor, one of another job, filter or sort, or a cursor with an offset",
}))
def list_candidates(
    job_id: str,
    session: SessionDep,
    tenant: CurrentTenant,
    page: PageDep,
    pareto: Annotated[bool | None, Query(description="true: only the Pareto front; false: only the rest")] = None,
    sort: Annotated[CandidateSort, Query(description="column, '-' prefix for descending; missing values last")] = (
        "created_at"
    ),
) -> Page[CandidateOut]:
    """The job's candidates with their scores and measurements. Page with `cursor` (each page's
    `next_cursor`, for the same `pareto` and `sort`), or `offset`."""
    job = jobs.get_job(session, tenant.id, job_id)
    found = candidates.list_candidates(session, job.id, pareto, sort, page.limit, page.offset, page.cursor)
    formats = artifacts.formats_by_candidate(session, [c.id for c in found.rows])
    items = [CandidateOut.model_validate(c).model_copy(update={"formats": formats.get(c.id, [])}) for c in found.rows]
    return Page[CandidateOut](items=items, total=found.total, limit=page.limit, offset=page.offset,
                              next_cursor=found.next_cursor)


@router.get("/{job_id}/candidates/{candidate_id}", responses=_NOT_FOUND)
def get_candidate(job_id: str, candidate_id: str, session: SessionDep, tenant: CurrentTenant) -> CandidateOut:
    """One candidate."""
    candidate = _candidate(session, tenant.id, job_id, candidate_id)
    formats = artifacts.formats_by_candidate(session, [candidate.id]).get(candidate.id, [])
    return CandidateOut.model_validate(candidate).model_copy(update={"formats": formats})


@router.get(
    "/{job_id}/candidates/{candidate_id}/artifact",
    response_class=FileResponse,
    responses={
        200: {"content": {"application/zip": {}}, "description": "The model as a zip"},
        **error_responses(described={404: "No such job or candidate (or not yours), or no artifact in this format"}),
    },
)
def download_artifact(
    job_id: str,
    candidate_id: str,
    session: SessionDep,
    tenant: CurrentTenant,
    settings: SettingsDep,
    format: Annotated[ArtifactFormat, Query(description="hf: safetensors + config; onnx; onnx-int8")] = "hf",
) -> FileResponse:
    """The exported model as a zip holding one folder. `X-Content-SHA256` (hex) and `Repr-Digest`
    carry the zip's SHA-256 for checking the download."""
    candidate = _candidate(session, tenant.id, job_id, candidate_id)
    artifact = artifacts.get_artifact(session, candidate.id, format)
    path, digest = _cached_zip(session, settings.artifacts, artifact, root_name=f"{candidate.id}-{format}")
    b64 = base64.b64encode(bytes.fromhex(digest)).decode()
    return FileResponse(
        path,
        media_type="application/zip",
        filename=f"slimformer-{job_id}-{candidate.id}-{format}.zip",
        headers={"X-Content-SHA256": digest, "Repr-Digest": f"sha-256=:{b64}:", "ETag": f'"{digest}"'},
    )


def _cached_zip(session: Session, artifact_dir: Path, artifact: Artifact, root_name: str) -> tuple[str, str]:
    cache = zip_cache_path(artifact_dir, artifact.id)

    def fresh() -> bool:
        return (
            artifact.zip_sha256 is not None and cache.is_file() and cache.stat().st_size == artifact.zip_size_bytes
        )

    if not fresh():
        with build_lock(artifact.id):
            session.refresh(artifact)  # another request may have built it while we waited
            if not fresh():
                source = resolve_under(artifact_dir, artifact.path)
                artifacts.record_zip(session, artifact, *build_zip(source, cache, root_name))
                session.commit()
    assert artifact.zip_sha256 is not None
    return str(cache), artifact.zip_sha256


@router.get("/{job_id}/pareto.svg", response_class=Response,
            responses={200: {"content": {"image/svg+xml": {}}}, **_NOT_FOUND})
def pareto_svg(job_id: str, session: SessionDep, tenant: CurrentTenant) -> Response:
    """The job's task metric (accuracy or macro-F1; test where every candidate has it, else dev) against
    measured latency of the measured candidates, Pareto front highlighted, teacher and baseline marked (SVG)."""
    return _pareto_image(session, tenant.id, job_id, "svg")


@router.get("/{job_id}/pareto.png", response_class=Response,
            responses={200: {"content": {"image/png": {}}}, **_NOT_FOUND})
def pareto_png(job_id: str, session: SessionDep, tenant: CurrentTenant) -> Response:
    """The same plot as PNG."""
    return _pareto_image(session, tenant.id, job_id, "png")


def _pareto_image(session: Session, tenant_id: str, job_id: str, fmt: ImageFormat) -> Response:
    job = jobs.get_job(session, tenant_id, job_id)
    rows = candidates.measured_points(session, job.id)
    metric = job.metric or "accuracy"  # the job's task metric: accuracy, or macro-F1 (kept in `metrics`)

    def figure(row, split: str) -> float | None:
        if metric == "accuracy":
            return row.test_accuracy if split == "test" else row.dev_accuracy
        return (row.metrics or {}).get(f"{split}_{metric}")

    # One split for every point: test where all candidates have it, else dev for all.
    split = "test" if rows and all(figure(r, "test") is not None for r in rows) else "dev"
    points = [PlotPoint(r.id, r.measured_latency_ms, figure(r, split), r.pareto)
              for r in rows if figure(r, split) is not None]
    key = f"{split}_{metric}"
    # The teacher and the TF-IDF baseline, on the same figure as the candidates.
    references = [ReferencePoint(label, point["latency_ms"], point[key], marker)
                  for label, point, marker in (("teacher", job.teacher, "*"), ("TF-IDF + LR", job.baseline, "s"))
                  if point and point.get(key) is not None and point.get("latency_ms") is not None]
    label = f"{split} {'macro-F1' if metric == 'macro_f1' else 'accuracy'}"
    image = render_pareto(points, fmt, title=job.name or f"job {job.id}", accuracy_label=label,
                          references=references)
    return Response(image, media_type=MEDIA_TYPES[fmt], headers={"Cache-Control": "no-cache"})


def _candidate(session: Session, tenant_id: str, job_id: str, candidate_id: str) -> Candidate:
    job = jobs.get_job(session, tenant_id, job_id)  # the tenant's job first: another's reads as missing
    return candidates.get_candidate(session, job.id, candidate_id)
