"""Candidates, artifact downloads and Pareto plots over real HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import hashlib
import io
import zipfile

import pytest

from slimformer.service.downloads import zip_cache_path
from slimformer.store import artifacts
from slimformer.store.models import Artifact

# Checks that never reach the database's own behaviour run on one backend only, to keep the suite quick.
sqlite_only = pytest.mark.parametrize("api", ["sqlite"], indirect=True)


def test_candidates_list_filters_sorts_and_pages(api, seed_job):
    client = api.tenant_client()
    seeded = seed_job(api, client)
    url = f"/v1/jobs/{seeded.job_id}/candidates"

    page = client.get(url).json()
    assert page["total"] == 4 and [c["id"] for c in page["items"]] == seeded.candidate_ids
    first = page["items"][0]
    assert first["formats"] == ["hf", "onnx"] and first["arch"]["hidden"] == 128 and first["metrics"] == {"rank": 0}
    assert page["items"][1]["formats"] == []

    front = client.get(url, params={"pareto": "true"}).json()
    assert [c["id"] for c in front["items"]] == [seeded.candidate_ids[0], seeded.candidate_ids[2]]
    assert client.get(url, params={"pareto": "false"}).json()["total"] == 2

    # Descending by accuracy; the unmeasured candidate comes last, not first.
    by_acc = client.get(url, params={"sort": "-dev_accuracy"}).json()["items"]
    assert [c["id"] for c in by_acc] == [seeded.candidate_ids[i] for i in (2, 1, 0, 3)]
    by_latency = client.get(url, params={"sort": "measured_latency_ms", "limit": 2, "offset": 1}).json()
    assert [c["id"] for c in by_latency["items"]] == seeded.candidate_ids[1:3]

    assert client.get(url, params={"sort": "id; DROP TABLE jobs"}).status_code == 422
    assert client.get(url, params={"limit": 10_000}).status_code == 422

    one = client.get(f"{url}/{seeded.candidate_ids[3]}").json()
    assert one["state"] == "scored" and one["measured_latency_ms"] is None
    assert client.get(f"{url}/01{'Z' * 24}").status_code == 404


def _download(client, path: str, fmt: str):
    r = client.get(path, params={"format": fmt})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/zip"
    digest = hashlib.sha256(r.content).hexdigest()
    assert r.headers["x-content-sha256"] == digest
    assert r.headers["repr-digest"] == f"sha-256=:{base64.b64encode(bytes.fromhex(digest)).decode()}:"
    return r, digest


def test_artifact_download_is_a_verified_cached_zip(api, seed_job):
    client = api.tenant_client()
    seeded = seed_job(api, client)
    cid = seeded.candidate_ids[0]
    path = f"/v1/jobs/{seeded.job_id}/candidates/{cid}/artifact"

    r, digest = _download(client, path, "hf")
    assert f"{cid}-hf.zip" in r.headers["content-disposition"]
    folder = seeded.artifact_files["hf"]
    with zipfile.ZipFile(io.BytesIO(r.content)) as zf:
        assert sorted(zf.namelist()) == [f"{cid}-hf/config.json", f"{cid}-hf/model.safetensors",
                                         f"{cid}-hf/tokenizer/vocab.txt"]
        assert zf.read(f"{cid}-hf/model.safetensors") == (folder / "model.safetensors").read_bytes()

    with api.session() as session:
        artifact = session.query(Artifact).filter_by(candidate_id=cid, format="hf").one()
        assert (artifact.zip_sha256, artifact.zip_size_bytes) == (digest, len(r.content))
        cache = zip_cache_path(api.settings.artifacts, artifact.id)
    built_at = cache.stat().st_mtime_ns
    again, digest_again = _download(client, path, "hf")
    assert digest_again == digest and cache.stat().st_mtime_ns == built_at  # served from the cache

    r, _ = _download(client, path, "onnx")
    with zipfile.ZipFile(io.BytesIO(r.content)) as zf:
        assert zf.read(f"{cid}-onnx/{cid}.onnx") == seeded.artifact_files["onnx"].read_bytes()

    # The worker exports again: the cached zip is rebuilt from the new files.
    (folder / "model.safetensors").write_bytes(b"new weights")
    with api.session() as session:
        artifacts.upsert_artifact(session, cid, "hf", folder.relative_to(api.settings.artifacts).as_posix(), 11)
    _, rebuilt = _download(client, path, "hf")
    assert rebuilt != digest

    assert client.get(path, params={"format": "onnx-int8"}).status_code == 404
    assert client.get(path, params={"format": "tar"}).status_code == 422
    other = f"/v1/jobs/{seeded.job_id}/candidates/{seeded.candidate_ids[1]}/artifact"
    assert client.get(other).status_code == 404


def test_concurrent_first_downloads_agree(api, seed_job, monkeypatch):
    from concurrent.futures import ThreadPoolExecutor

    from slimformer.service.routes import candidates as route

    builds = []

    def counted(*args, **kwargs):
        builds.append(args[0])
        return build_zip(*args, **kwargs)

    build_zip = route.build_zip
    monkeypatch.setattr(route, "build_zip", counted)  # the live server runs in this process
    client = api.tenant_client()
    seeded = seed_job(api, client)
    path = f"/v1/jobs/{seeded.job_id}/candidates/{seeded.candidate_ids[0]}/artifact"
    with ThreadPoolExecutor(4) as pool:
        digests = {d for _, d in pool.map(lambda _: _download(client, path, "hf"), range(4))}
    # One zip, built once: the others waited for it instead of building their own (agreeing digests
    # alone would pass too if each request zipped the folder itself).
    assert len(digests) == 1 and len(builds) == 1


@sqlite_only
def test_pareto_plots(api, seed_job):
    client = api.tenant_client()
    seeded = seed_job(api, client)
    svg = client.get(f"/v1/jobs/{seeded.job_id}/pareto.svg")
    assert svg.status_code == 200 and svg.headers["content-type"].startswith("image/svg+xml")
    assert b"<svg" in svg.content and b"Pareto-optimal" in svg.content and b"test accuracy" in svg.content
    png = client.get(f"/v1/jobs/{seeded.job_id}/pareto.png")
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert png.content.startswith(b"\x89PNG\r\n\x1a\n")

    # A job with nothing measured yet still has a plot, saying so.
    empty = client.post("/v1/jobs", json={}).json()["id"]
    r = client.get(f"/v1/jobs/{empty}/pareto.svg")
    assert r.status_code == 200 and b"no measured candidates yet" in r.content
