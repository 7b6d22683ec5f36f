"""POST/GET/DELETE /v1/teachers: uploads of model folders, and every archive that must be refused.

A refused upload answers a clear 413 or 422 and leaves nothing behind: no row, no file. Runs on
SQLite and PostgreSQL (the `api` and `database_url` fixtures).
"""

from __future__ import annotations

import io
import os
import struct
import tarfile
import uuid
import zipfile
from pathlib import Path

import pytest
from sqlalchemy import select

from slimformer.contracts.teacher_files import folder_digest
from slimformer.store.models import Teacher, Tenant


def _tenant(api):
    """A new tenant: (client, tenant id)."""
    name = f"tenant-{uuid.uuid4().hex[:10]}"
    client = api.client(api.new_key(name))
    with api.session() as session:
        return client, session.scalar(select(Tenant.id).where(Tenant.name == name))


def _upload(client, data: bytes, filename: str = "model.zip", **form):
    return client.post("/v1/teachers", files={"file": (filename, data)}, data=form)


def _left_behind(api, tenant_id: str) -> tuple[int, list[Path]]:
    """(teacher rows, files under the tenant's teacher folder): both must be empty after a refusal."""
    with api.session() as session:
        rows = len(session.scalars(select(Teacher.id).where(Teacher.tenant_id == tenant_id)).all())
    folder = api.settings.artifacts / "teachers" / tenant_id
    return rows, sorted(p for p in folder.rglob("*") if not p.is_dir()) if folder.exists() else []


def test_upload_list_read_and_delete(api, tiny_classifier_dir, archive_of):
    client, tenant_id = _tenant(api)
    r = _upload(client, archive_of(tiny_classifier_dir), "my-model.zip")
    assert r.status_code == 201, r.text
    teacher = r.json()
    assert teacher["name"] == "my-model" and teacher["model_type"] == "bert"
    assert teacher["architectures"] == ["BertForSequenceClassification"]
    local = sorted(p for p in tiny_classifier_dir.iterdir() if p.is_file())
    assert teacher["files"] == len(local)
    assert teacher["sha256"] == folder_digest((p.name, p) for p in local)
    stored = api.settings.artifacts / "teachers" / tenant_id / teacher["id"]
    assert (stored / "config.json").read_bytes() == (tiny_classifier_dir / "config.json").read_bytes()
    assert str(api.settings.artifacts) not in r.text  # no server path in any answer

    page = client.get("/v1/teachers").json()
    assert page["total"] == 1 and [t["id"] for t in page["items"]] == [teacher["id"]]
    assert client.get(f"/v1/teachers/{teacher['id']}").json() == teacher

    other = api.tenant_client()  # another tenant sees nothing of it
    assert other.get(f"/v1/teachers/{teacher['id']}").status_code == 404
    assert other.delete(f"/v1/teachers/{teacher['id']}").status_code == 404
    assert other.get("/v1/teachers").json()["total"] == 0

    assert client.delete(f"/v1/teachers/{teacher['id']}").status_code == 204
    assert client.get(f"/v1/teachers/{teacher['id']}").status_code == 404
    assert not stored.exists() and _left_behind(api, tenant_id) == (0, [])


@pytest.mark.parametrize("kind", ["tar", "tar.gz"])
def test_a_tar_with_one_top_folder_is_accepted(api, tiny_classifier_dir, archive_of, kind):
    client, _ = _tenant(api)
    r = _upload(client, archive_of(tiny_classifier_dir, kind, prefix="my-model/"), f"x.{kind}", name="mine")
    assert r.status_code == 201, r.text
    assert r.json()["name"] == "mine" and r.json()["architectures"] == ["BertForSequenceClassification"]


# --- archives that must be refused -------------------------------------------------------------


def _zip(members: dict[str, bytes], symlinks: dict[str, str] | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
        for name, target in (symlinks or {}).items():
            info = zipfile.ZipInfo(name)
            info.create_system = 3  # unix, so the mode below is read
            info.external_attr = (0o120777 << 16)  # S_IFLNK
            archive.writestr(info, target)
    return buffer.getvalue()


def _tar(folder: Path, extra: list[tarfile.TarInfo]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for file in sorted(folder.iterdir()):
            archive.add(file, file.name)
        for info in extra:
            archive.addfile(info)
    return buffer.getvalue()


def _link(name: str, kind: bytes, target: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


def _declaring(data: bytes, name: str, size: int) -> bytes:
    """A zip whose member `name` declares `size` bytes (central directory and local header patched)."""
    out = bytearray(data)
    for signature, offset in ((b"PK\x01\x02", 24), (b"PK\x03\x04", 22)):
        at = out.find(signature)
        while at >= 0:
            name_at = at + (46 if signature == b"PK\x01\x02" else 30)
            if out[name_at:name_at + len(name)] == name.encode():
                out[at + offset:at + offset + 4] = struct.pack("<I", size)
            at = out.find(signature, at + 4)
    return bytes(out)


def _files(folder: Path, skip: tuple[str, ...] = ()) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file() and p.name not in skip}


def _refusals(folder: Path) -> dict[str, tuple[bytes, int, str]]:
    """name -> (archive bytes, status, a phrase the message must hold)."""
    good = _files(folder)
    gpt2 = {**good, "config.json": good["config.json"].replace(b'"bert"', b'"gpt2"')}
    return {
        "dotdot": (_zip({**good, "../x": b"evil"}), 422, "outside the archive"),
        "dotdot-inside": (_zip({**good, "a/../../x": b"evil"}), 422, "outside the archive"),
        "absolute": (_zip({**good, "/tmp/x": b"evil"}), 422, "absolute path"),
        "backslash": (_zip({**good, "..\\x": b"evil"}), 422, "backslash"),
        "zip-symlink": (_zip(good, symlinks={"vocab2.txt": "/etc/passwd"}), 422, "symbolic link"),
        "tar-symlink": (_tar(folder, [_link("x", tarfile.SYMTYPE, "/etc/passwd")]), 422, "symbolic link"),
        "tar-hardlink": (_tar(folder, [_link("x", tarfile.LNKTYPE, "config.json")]), 422, "hard link"),
        "tar-device": (_tar(folder, [_link("x", tarfile.CHRTYPE)]), 422, "not a regular file"),
        "tar-fifo": (_tar(folder, [_link("x", tarfile.FIFOTYPE)]), 422, "not a regular file"),
        "declares-4gb": (_declaring(_zip({**good, "big.bin": b"x" * 100}), "big.bin", 4_000_000_000), 413,
                         "declares 4000000000 bytes"),
        "no-weights": (_zip(_files(folder, skip=("model.safetensors",))), 422, "no weights"),
        "no-config": (_zip(_files(folder, skip=("config.json",))), 422, "config.json is missing"),
        "no-tokenizer": (_zip(_files(folder, skip=("vocab.txt", "tokenizer.json"))), 422, "tokenizer files"),
        "bad-weights": (_zip({**good, "model.safetensors": b"\0" * 64}), 422, "cannot be read"),
        "gpt2": (_zip(gpt2), 422, "not supported"),
        "twice": (_zip({**good, "a/x": b"1", "a//x": b"2"}), 422, "appears twice"),
        "not-an-archive": (b"config.json is not an archive", 422, "not a zip, tar or tar.gz"),
        "truncated-zip": (_zip(good)[:-30], 422, "damaged zip"),
        "truncated-tar": (_tar(folder, [])[:300], 422, "damaged tar"),
    }


CASES = [
    "dotdot", "dotdot-inside", "absolute", "backslash", "zip-symlink", "tar-symlink", "tar-hardlink", "tar-device",
    "tar-fifo", "declares-4gb", "no-weights", "no-config", "no-tokenizer", "bad-weights", "gpt2", "twice",
    "not-an-archive", "truncated-zip", "truncated-tar",
]


@pytest.mark.parametrize("case", CASES)
def test_refused_archives_leave_nothing_behind(api, tiny_classifier_dir, case):
    data, status, phrase = _refusals(tiny_classifier_dir)[case]
    client, tenant_id = _tenant(api)
    r = _upload(client, data, "evil.tar.gz" if case.startswith("tar") else "evil.zip")
    assert r.status_code == status, r.text
    detail = r.json()["detail"]
    message = detail if isinstance(detail, str) else detail[0]["msg"]
    assert phrase in message, message
    assert str(api.settings.artifacts) not in r.text and "partial" not in r.text
    assert _left_behind(api, tenant_id) == (0, [])
    assert client.get("/v1/teachers").json()["total"] == 0


def test_limits_on_bytes_and_members(database_url, tmp_path, make_settings, start_server, api_of,
                                     tiny_classifier_dir, archive_of):
    model = archive_of(tiny_classifier_dir)
    limit = len(model) + 4096
    unpacked = sum(p.stat().st_size for p in tiny_classifier_dir.iterdir()) + 4096
    server = start_server(make_settings(tmp_path, database_url, max_teacher_upload_bytes=limit,
                                        max_teacher_unpacked_bytes=unpacked, max_teacher_files=12))
    api = api_of(server)
    client, tenant_id = _tenant(api)
    assert _upload(client, model).status_code == 201  # the folder itself fits

    other, other_id = _tenant(api)
    too_big = _zip({**_files(tiny_classifier_dir), "pad.bin": os.urandom(limit)})
    r = _upload(other, too_big)
    assert r.status_code == 413 and "limit" in r.json()["detail"]
    # A gzip bomb: a small archive whose one member unpacks past the limit.
    bomb = io.BytesIO()
    with tarfile.open(fileobj=bomb, mode="w:gz") as archive:
        info = tarfile.TarInfo("zeros.bin")
        info.size = 50 * unpacked
        archive.addfile(info, io.BytesIO(b"\0" * info.size))
    assert len(bomb.getvalue()) < limit
    r = _upload(other, bomb.getvalue(), "bomb.tar.gz")
    assert r.status_code == 413 and "unpacks to more than the limit" in r.json()["detail"]
    many = _zip({f"extra/{i}.txt": b"x" for i in range(13)})
    r = _upload(other, many)
    assert r.status_code == 413 and "more than 12 members" in r.json()["detail"]
    assert _left_behind(api, other_id) == (0, [])
