"""Jobs that name a teacher over HTTP: an own upload (found by the worker), and no window onto the server.

`teacher` accepts a built-in name, one of the caller's uploaded teacher ids, or a folder under the
operator's `teacher_roots`; a server path elsewhere, another tenant's id, or the artifact folder
gets the very same 422 as an unknown name. Runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from slimformer.cli import main
from slimformer.client import SlimformerClient
from slimformer.contracts.teacher_files import folder_digest, upload_files
from slimformer.store.errors import NotFound
from slimformer.store.jobs import job_inputs
from slimformer.store.models import Job


def _upload(client, folder, archive_of) -> str:
    r = client.post("/v1/teachers", files={"file": ("m.zip", archive_of(folder))})
    assert r.status_code == 201, r.text
    return r.json()["id"]


def test_a_job_names_its_uploaded_teacher_and_the_worker_finds_the_folder(api, tiny_classifier_dir, archive_of):
    client = api.tenant_client()
    teacher_id = _upload(client, tiny_classifier_dir, archive_of)
    r = client.post("/v1/jobs", json={"teacher": teacher_id, "preset": "tiny"})
    assert r.status_code == 201, r.text
    job = r.json()
    assert job["teacher_id"] == teacher_id and job["spec"]["teacher"] == teacher_id

    # The worker's side: the claimed job's spec names the stored folder, which the teacher check accepts.
    from slimformer.supernet.teacher_folder import resolve_teacher

    with api.session() as session:
        spec, _ = job_inputs(session, session.get(Job, job["id"]), api.settings.artifacts)
    stored = api.settings.artifacts / "teachers"
    assert spec.teacher.startswith(str(stored)) and teacher_id in spec.teacher
    assert resolve_teacher(spec.teacher) == Path(spec.teacher).resolve()
    assert (resolve_teacher(spec.teacher) / "model.safetensors").read_bytes() == \
        (tiny_classifier_dir / "model.safetensors").read_bytes()

    # In use by a queued job: not deleted; once the job is over, it can be.
    r = client.delete(f"/v1/teachers/{teacher_id}")
    assert r.status_code == 409 and job["id"] in r.json()["detail"]
    assert client.post(f"/v1/jobs/{job['id']}/cancel").status_code == 200
    assert client.delete(f"/v1/teachers/{teacher_id}").status_code == 204
    with api.session() as session, pytest.raises(NotFound, match="no longer exists"):
        job_inputs(session, session.get(Job, job["id"]), api.settings.artifacts)


def _teacher_error(response) -> dict:
    assert response.status_code == 422, response.text
    (error,) = [e for e in response.json()["detail"] if e["loc"] == ["body", "teacher"]]
    return error


def _shape(error: dict, name: str) -> dict:
    """The error with the name it echoes taken out: what must be equal for every refused name."""
    return {**error, "msg": error["msg"].replace(repr(name), "NAME")}


def test_server_paths_and_other_tenants_teachers_read_as_unknown(api, tiny_classifier_dir, archive_of, tmp_path,
                                                                 write_teacher):
    owner = api.tenant_client()
    theirs = _upload(owner, tiny_classifier_dir, archive_of)
    caller = api.tenant_client()
    mine = _upload(caller, tiny_classifier_dir, archive_of)
    unknown = _shape(_teacher_error(caller.post("/v1/jobs", json={"teacher": "no-such-teacher"})), "no-such-teacher")
    assert unknown["type"] == "unknown_teacher" and unknown["ctx"]["valid"] == ["minilm-l6", mine]

    a_teacher_folder = write_teacher(tmp_path / "server-teacher")
    names = [
        theirs,  # another tenant's upload
        "/etc", "/", "/etc/passwd", "/nonexistent", "../../etc", "~", str(tmp_path),
        str(a_teacher_folder),  # a good model folder, but no operator listed it
        str(api.settings.artifacts / "teachers"),  # the uploads themselves
        *[str(p.parent) for p in (api.settings.artifacts / "teachers").glob(f"*/{theirs}/config.json")],
    ]
    for name in names:
        error = _teacher_error(caller.post("/v1/jobs", json={"teacher": name}))
        assert _shape(error, name) == unknown, name
        assert "config.json" not in error["msg"] and "directory" not in error["msg"]


def test_server_folders_only_under_the_operators_teacher_roots(database_url, tmp_path, make_settings, start_server,
                                                               api_of, write_teacher, tiny_classifier_dir, archive_of):
    allowed = tmp_path / "allowed"
    home = allowed / "home"  # the operator put the service's own home under a root: its files stay private
    server = start_server(make_settings(home, database_url, teacher_roots=[allowed]))
    api = api_of(server)
    client = api.tenant_client()
    good = write_teacher(allowed / "good")
    r = client.post("/v1/jobs", json={"teacher": str(good)})
    assert r.status_code == 201 and r.json()["teacher_id"] is None
    assert client.post("/v1/jobs", json={"teacher": str(allowed / "x" / ".." / "good")}).status_code == 201

    # Inside a root, the operator's folder may say what is wrong with it.
    gpt2 = write_teacher(allowed / "gpt2", model_type="gpt2")
    error = _teacher_error(client.post("/v1/jobs", json={"teacher": str(gpt2)}))
    assert error["type"] == "invalid_teacher" and "model_type 'gpt2'" in error["msg"]
    (allowed / "empty").mkdir()
    assert _teacher_error(client.post("/v1/jobs", json={"teacher": str(allowed / "empty")}))["type"] == \
        "invalid_teacher"

    # Outside every root, through a link out of one, or in the service's own folders: unknown.
    outside = write_teacher(tmp_path / "outside")
    (allowed / "link").symlink_to(outside)
    other = api.tenant_client()
    uploaded = _upload(other, tiny_classifier_dir, archive_of)
    (stored,) = (home / "artifacts" / "teachers").glob(f"*/{uploaded}")
    cached = write_teacher(home / "cache" / "teachers" / "abc")
    for name in (str(outside), str(allowed / "link"), str(stored), str(cached), str(allowed / "missing")):
        error = _teacher_error(client.post("/v1/jobs", json={"teacher": name}))
        assert error["type"] == "unknown_teacher", name
        assert re.fullmatch(r"unknown teacher '.*': not a built-in teacher and not one of your uploaded "
                            r"teachers \(upload one with POST /v1/teachers\)", error["msg"])


def test_client_uploads_a_folder_once_and_cli_submit_uploads_a_local_teacher(api, tiny_classifier_dir, capsys):
    key = api.new_key()
    with SlimformerClient(api.server.url, key) as client:
        teacher, reused = client.ensure_teacher(tiny_classifier_dir)
        assert not reused and teacher.architectures == ("BertForSequenceClassification",)
        assert teacher.sha256 == folder_digest((p.name, p) for p in upload_files(tiny_classifier_dir))
        again, reused = client.ensure_teacher(tiny_classifier_dir)
        assert reused and again.id == teacher.id
        assert [t.id for t in client.list_teachers().items] == [teacher.id]

    flags = ["--url", api.server.url, "--key", key, "--dataset", "rotten-tomatoes", "--preset", "tiny"]
    assert main(["submit", *flags, "--teacher", str(tiny_classifier_dir), "--idempotency-key", "t1"]) == 0
    out = capsys.readouterr()
    job_id = out.out.strip()
    assert f"using teacher {teacher.id}, an earlier upload of {tiny_classifier_dir.name}" in out.err
    # The retry reuses the upload, so it is the same request: the same job, not a 409.
    assert main(["submit", *flags, "--teacher", str(tiny_classifier_dir), "--idempotency-key", "t1"]) == 0
    assert capsys.readouterr().out.strip() == job_id
    with SlimformerClient(api.server.url, key) as client:
        job = client.get_job(job_id)
        assert job.teacher_id == teacher.id and job.spec["teacher"] == teacher.id
        assert json.dumps(job.raw).count(str(tiny_classifier_dir)) == 0  # no local path reached the server
