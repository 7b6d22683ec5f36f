"""Uploaded teachers: upload (a zip, tar or tar.gz of a Hugging Face model folder), list, read, delete.

An upload is unpacked into a folder of its own (`teacher_archive.unpack`: traversal, links,
devices and archive bombs refused), checked as the CLI and the worker check a teacher folder
(`supernet.teacher_folder.resolve_teacher`: config.json and model type, readable weights,
tokenizer files), and only then recorded; any refusal removes the folder, so it leaves no row and
no file. A job names the upload by its `id` as its `teacher`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, BinaryIO

from fastapi import APIRouter, Form, Response, UploadFile, status

from slimformer.contracts.teacher_files import folder_digest
from slimformer.errors import TeacherError
from slimformer.service.auth import CurrentTenant
from slimformer.service.deps import PageDep, SessionDep, SettingsDep
from slimformer.service.errors import InvalidRequest, PayloadTooLarge
from slimformer.service.openapi import PROTECTED, error_responses
from slimformer.service.rate_limit import RateLimit
from slimformer.service.schemas import NO_NUL, Page, TeacherOut
from slimformer.service.teacher_archive import ArchiveLimits, remove_tree, unpack
from slimformer.store import teachers
from slimformer.store.models import new_id

router = APIRouter(prefix="/v1/teachers", tags=["teachers"], responses=PROTECTED)

_NOT_FOUND = {404: "No such teacher (or not yours)"}


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    dependencies=[RateLimit],
    responses=error_responses(400, 429, described={
        413: "The archive is over the upload limit, or it unpacks to more bytes or members than the server allows",
        422: "Not a zip/tar/tar.gz archive, a member refused (absolute or `..` path, link, device, encrypted), "
             "or not a usable model folder (config.json, model type, weights, tokenizer files)",
    }),
)
def upload_teacher(
    file: UploadFile,
    session: SessionDep,
    tenant: CurrentTenant,
    settings: SettingsDep,
    name: Annotated[str | None, Form(max_length=200, description="defaults to the archive's name",
                                     json_schema_extra={"pattern": NO_NUL})] = None,
) -> TeacherOut:
    """Upload a teacher: a zip, tar or tar.gz of a Hugging Face model folder.

    The folder (at the archive's root, or its one top folder) holds config.json, model.safetensors
    or pytorch_model.bin, and tokenizer files (tokenizer.json or vocab.txt). It is unpacked and
    checked in full before it is kept: a refused archive answers 413 or 422 and leaves nothing
    behind. Use the returned `id` as a job's `teacher`. Counts against the API key's rate limit
    (429 with `Retry-After` over it).
    """
    if name is not None and "\x00" in name:
        raise InvalidRequest.at(["body", "name"], "name should not contain NUL (\\x00) characters", "string_nul")
    # The client's file name is only a label (and the default name): a NUL in it is dropped.
    label = PurePosixPath((file.filename or "").replace("\\", "/").replace("\x00", "")).name or "upload"
    size = _size(file.file)
    if size > settings.max_teacher_upload_bytes:
        raise PayloadTooLarge(f"uploaded file is over the limit of {settings.max_teacher_upload_bytes} bytes")
    teacher_id = new_id()
    final = settings.artifacts / teachers.teacher_dir(tenant.id, teacher_id)
    staging = final.with_name(f".{teacher_id}.partial")
    try:
        limits = ArchiveLimits(settings.max_teacher_unpacked_bytes, settings.max_teacher_files)
        written = unpack(file.file, staging, limits, label)
        root = _content_root(staging)
        folder, config = _checked_folder(root, staging, label)
        files = [(p.relative_to(root).as_posix(), p) for p in root.rglob("*") if p.is_file()]
        digest = folder_digest(files)
        os.replace(staging, final)
        architectures = config.get("architectures")
        teacher = teachers.add_teacher(
            session, id=teacher_id, tenant_id=tenant.id, name=(name or _stem(label))[:200],
            path=(final / folder.relative_to(staging)).relative_to(settings.artifacts).as_posix(),
            model_type=str(config.get("model_type"))[:40],
            architectures=[str(a) for a in architectures] if isinstance(architectures, list) else [],
            files=len(files), sha256=digest, size_bytes=written,
        )
        session.commit()
    except BaseException:
        remove_tree(staging)  # no row, no file: a refused or failed upload leaves nothing
        remove_tree(final)
        raise
    return TeacherOut.model_validate(teacher)


def _size(source: BinaryIO) -> int:
    source.seek(0, os.SEEK_END)
    size = source.tell()
    source.seek(0)
    return size


def _stem(label: str) -> str:
    for suffix in (".tar.gz", ".tgz", ".tar", ".zip"):
        if label.lower().endswith(suffix) and len(label) > len(suffix):
            return label[: -len(suffix)]
    return label


def _content_root(unpacked: Path) -> Path:
    """The model folder of an archive: its root, or its one top folder (`zip -r m.zip my-model/`)."""
    if (unpacked / "config.json").is_file() or (unpacked / "modules.json").is_file():
        return unpacked
    entries = [p for p in unpacked.iterdir() if p.name != "__MACOSX"]
    return entries[0] if len(entries) == 1 and entries[0].is_dir() else unpacked


def _checked_folder(root: Path, staging: Path, label: str) -> tuple[Path, dict[str, Any]]:
    """The checked transformer folder under `root` and its config, as the CLI and worker check one.

    Raises:
        InvalidRequest: the teacher check's message, with the server's folder replaced by `label`.
    """
    # Imported here: the check reads the weights with torch, which the API loads only for uploads.
    from slimformer.supernet.teacher_folder import resolve_teacher

    inside = staging.resolve()
    try:
        folder = resolve_teacher(str(root.resolve()))
        if not folder.is_relative_to(inside):  # a modules.json that names a folder outside the upload
            raise TeacherError(f"{folder}: modules.json names a folder outside the archive")
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except TeacherError as exc:
        message = str(exc).replace(str(inside), label).replace(str(staging), label)
        raise InvalidRequest.at(["body", "file"], message, "invalid_teacher") from None
    return staging / folder.relative_to(inside), config


@router.get("", responses=error_responses(described={
    422: "Invalid query; also a malformed cursor, one of another list, or a cursor with an offset",
}))
def list_teachers(session: SessionDep, tenant: CurrentTenant, page: PageDep) -> Page[TeacherOut]:
    """The tenant's uploaded teachers, newest first. Page with `cursor` (each page's `next_cursor`), or `offset`."""
    found = teachers.list_teachers(session, tenant.id, page.limit, page.offset, page.cursor)
    return Page[TeacherOut](items=[TeacherOut.model_validate(t) for t in found.rows], total=found.total,
                            limit=page.limit, offset=page.offset, next_cursor=found.next_cursor)


@router.get("/{teacher_id}", responses=error_responses(described=_NOT_FOUND))
def get_teacher(teacher_id: str, session: SessionDep, tenant: CurrentTenant) -> TeacherOut:
    """One uploaded teacher."""
    return TeacherOut.model_validate(teachers.get_teacher(session, tenant.id, teacher_id))


@router.delete(
    "/{teacher_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=error_responses(413, described={
        **_NOT_FOUND, 409: "A queued or running job uses the teacher; cancel it or wait until it finishes",
    }),
)
def delete_teacher(teacher_id: str, session: SessionDep, tenant: CurrentTenant, settings: SettingsDep) -> Response:
    """Delete an uploaded teacher and its files. Finished jobs made from it keep their results."""
    relative = teachers.delete_teacher(session, tenant.id, teacher_id)
    session.commit()
    remove_tree(settings.artifacts / relative)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
