"""SlimformerClient as a library: typed results, the requests it sends, its errors and downloads.

Offline: an httpx.MockTransport stands in for the server, answering what the /v1 API answers.
The same client against a real `slimformer serve` is exercised by tests/test_cli_client.py.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from datetime import datetime

import httpx
import pytest

from slimformer.client import Candidate, ClientError, Job, SlimformerClient

NOW = "2025-01-02T03:04:05.123456Z"
JOB = {"id": "01JOB", "name": "n", "status": "running", "stage": "blocks", "progress": 0.5, "eta_seconds": 30.0,
       "cancel_requested": False, "attempts": 1, "error": None, "dataset_id": None, "spec": {"preset": "tiny"},
       "created_at": NOW, "updated_at": NOW, "started_at": NOW, "finished_at": None, "future_field": 1}
EVENT = {"id": 7, "at": NOW, "level": "info", "stage": "blocks", "message": "stage blocks started", "data": None}
CANDIDATE = {"id": "01CAND", "job_id": "01JOB", "arch_hash": "abc", "arch": {}, "state": "exported", "pareto": True,
             "proxy": 0.1, "predicted_latency_ms": 1.0, "measured_latency_ms": 1.1, "params": 1000, "memory_mb": 2.0,
             "dev_accuracy": 0.9, "test_accuracy": 0.8, "metrics": {}, "formats": ["hf", "onnx"],
             "created_at": NOW, "updated_at": NOW}


def model_zip(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buffer.getvalue()


def client_for(handler) -> tuple[SlimformerClient, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return handler(request)

    return SlimformerClient("http://server/", "sf_key", transport=httpx.MockTransport(record)), seen


def test_jobs_come_back_typed_and_requests_carry_the_key():
    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return httpx.Response(201, json=JOB, headers={"Idempotent-Replayed": "true"})
        if request.url.path == "/v1/jobs":
            return httpx.Response(200, json={"items": [JOB], "total": 3, "limit": 1, "offset": 0})
        return httpx.Response(200, json={**JOB, "events": [EVENT]})

    client, seen = client_for(handler)
    with client:
        job = client.submit_job({"preset": "tiny"}, idempotency_key="k1")
        assert isinstance(job, Job) and job.replayed and job.id == "01JOB" and not job.finished
        assert seen[-1].headers["Idempotency-Key"] == "k1" and seen[-1].headers["Authorization"] == "Bearer sf_key"
        assert json.loads(seen[-1].content) == {"preset": "tiny"}

        page = client.list_jobs(status="running", limit=1)
        assert page.total == 3 and [j.id for j in page.items] == ["01JOB"]
        assert dict(seen[-1].url.params) == {"limit": "1", "status": "running"}

        detail = client.get_job("01JOB")
        assert detail.events[0].message == "stage blocks started" and isinstance(detail.events[0].at, datetime)
        assert detail.created_at.strftime("%Y-%m-%d %H:%M:%S") == "2025-01-02 03:04:05"
        assert detail.raw["future_field"] == 1  # unknown fields are kept, not refused


def test_candidates_ask_for_the_front():
    client, seen = client_for(lambda r: httpx.Response(200, json={"items": [CANDIDATE], "total": 1, "limit": 50}))
    page = client.candidates("01JOB", pareto=True, sort="measured_latency_ms")
    assert isinstance(page.items[0], Candidate) and page.items[0].formats == ("hf", "onnx")
    assert dict(seen[-1].url.params) == {"pareto": "true", "sort": "measured_latency_ms"}
    assert seen[-1].url.path == "/v1/jobs/01JOB/candidates"


def test_iterators_follow_next_cursor_to_the_last_page():
    pages = {None: (["j1", "j2"], "c1"), "c1": (["j3", "j4"], "c2"), "c2": (["j5"], None)}

    def handler(request: httpx.Request) -> httpx.Response:
        ids, after = pages[request.url.params.get("cursor")]
        return httpx.Response(200, json={"items": [{**JOB, "id": i} for i in ids], "total": 5, "limit": 2,
                                         "offset": 0, "next_cursor": after})

    client, seen = client_for(handler)
    assert [j.id for j in client.iter_jobs(status="queued", page_size=2)] == ["j1", "j2", "j3", "j4", "j5"]
    assert [dict(r.url.params) for r in seen] == [
        {"limit": "2", "status": "queued"}, {"limit": "2", "status": "queued", "cursor": "c1"},
        {"limit": "2", "status": "queued", "cursor": "c2"},
    ]
    assert client.list_jobs(limit=2).next_cursor == "c1"
    # A server without cursors (no `next_cursor` in its pages) ends the walk after one page.
    old, _ = client_for(lambda r: httpx.Response(200, json={"items": [JOB], "total": 9, "limit": 1}))
    assert [j.id for j in old.iter_jobs()] == ["01JOB"]


def test_an_http_error_is_a_client_error_with_the_api_s_detail():
    client, _ = client_for(lambda r: httpx.Response(401, json={"detail": "invalid API key"}))
    with pytest.raises(ClientError, match=r"HTTP 401 Unauthorized \(check --key.*\): invalid API key") as info:
        client.get_job("01JOB")
    assert info.value.status_code == 401

    detail = [{"loc": ["body", "budgets", "latency_ms"], "msg": "Input should be greater than 0"}]
    client, _ = client_for(lambda r: httpx.Response(422, json={"detail": detail}))
    with pytest.raises(ClientError, match="HTTP 422 Unprocessable Entity: budgets.latency_ms: Input should be"):
        client.submit_job({"budgets": {"latency_ms": -1}})


def test_download_checks_the_digest_and_unpacks_the_model_folder(tmp_path):
    body = model_zip({"model/config.json": b"{}", "model/onnx/model.onnx": b"weights"})

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.params["format"] == "onnx"
        return httpx.Response(200, content=body, headers={"X-Content-SHA256": hashlib.sha256(body).hexdigest()})

    client, _ = client_for(handler)
    out = client.download("01JOB", "01CAND", "onnx", tmp_path / "m")
    assert (out / "config.json").read_bytes() == b"{}" and (out / "onnx" / "model.onnx").read_bytes() == b"weights"
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "onnx"]  # no temporary folder left


def test_download_refuses_a_corrupted_or_escaping_zip(tmp_path):
    body = model_zip({"model/config.json": b"{}"})
    client, _ = client_for(lambda r: httpx.Response(200, content=body, headers={"X-Content-SHA256": "0" * 64}))
    with pytest.raises(ClientError, match="download corrupted"):
        client.download("01JOB", "01CAND", "hf", tmp_path / "a")

    evil = model_zip({"model/../../evil.txt": b"x"})
    client, _ = client_for(lambda r: httpx.Response(200, content=evil))
    with pytest.raises(ClientError, match="would land outside"):
        client.download("01JOB", "01CAND", "hf", tmp_path / "b")
    assert not (tmp_path / "evil.txt").exists()
