"""API keys and tenant isolation over real HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

from slimformer.store.api_keys import hash_key, revoke_api_key
from slimformer.store.models import ApiKey

PROTECTED = [
    ("GET", "/v1/jobs"),
    ("POST", "/v1/jobs"),
    ("GET", "/v1/jobs/01AAAAAAAAAAAAAAAAAAAAAAAA"),
    ("POST", "/v1/jobs/01AAAAAAAAAAAAAAAAAAAAAAAA/cancel"),
    ("GET", "/v1/jobs/01AAAAAAAAAAAAAAAAAAAAAAAA/candidates"),
    ("GET", "/v1/jobs/01AAAAAAAAAAAAAAAAAAAAAAAA/pareto.svg"),
    ("GET", "/v1/datasets"),
    ("POST", "/v1/datasets"),
]


def test_missing_or_bad_key_is_401_with_www_authenticate(api):
    anonymous = api.client()
    for method, path in PROTECTED:
        r = anonymous.request(method, path)
        assert r.status_code == 401, (method, path, r.text)
        assert r.headers["www-authenticate"].startswith("Bearer")
        assert "missing API key" in r.json()["detail"]

    for bad in ("sf_not-a-real-key", "not-even-sf-format", "sf_" + "x" * 500):
        r = api.client(bad).get("/v1/jobs")
        assert r.status_code == 401
        assert 'error="invalid_token"' in r.headers["www-authenticate"]
    r = anonymous.get("/v1/jobs", headers={"Authorization": "Basic dXNlcjpwYXNz"})
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")


def test_keys_are_stored_hashed_and_can_be_revoked(api):
    key = api.new_key()
    client = api.client(key)
    assert key.startswith("sf_") and client.get("/v1/jobs").status_code == 200
    with api.session() as session:
        row = session.query(ApiKey).filter_by(key_hash=hash_key(key)).one()
        assert key not in (row.key_hash, row.prefix) and key.startswith(row.prefix)
        revoke_api_key(session, row.prefix)
    assert client.get("/v1/jobs").status_code == 401


def test_health_needs_no_key(api):
    r = api.client().get("/v1/health")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok" and body["database"]["ok"] is True
    assert body["database"]["revision"] == body["database"]["expected_revision"]
    assert body["ray"]["initialized"] is False  # the API never starts Ray


def test_another_tenants_resources_are_404_everywhere(api, seed_job, make_csv):
    owner, stranger = api.tenant_client(), api.tenant_client()
    seeded = seed_job(api, owner)
    dataset = owner.post("/v1/datasets", files={"file": ("d.csv", make_csv())}).json()["id"]
    job, cid = seeded.job_id, seeded.candidate_ids[0]
    paths = [
        ("GET", f"/v1/jobs/{job}"),
        ("POST", f"/v1/jobs/{job}/cancel"),
        ("GET", f"/v1/jobs/{job}/candidates"),
        ("GET", f"/v1/jobs/{job}/candidates/{cid}"),
        ("GET", f"/v1/jobs/{job}/candidates/{cid}/artifact"),
        ("GET", f"/v1/jobs/{job}/candidates/{cid}/artifact?format=onnx"),
        ("GET", f"/v1/jobs/{job}/pareto.svg"),
        ("GET", f"/v1/jobs/{job}/pareto.png"),
        ("GET", f"/v1/datasets/{dataset}"),
    ]
    for method, path in paths:
        assert owner.request(method, path).status_code == 200, (method, path)
    for method, path in paths:
        theirs = stranger.request(method, path)
        missing = stranger.request(method, path.replace(job, "01" + "Z" * 24).replace(dataset, "01" + "Z" * 24))
        assert theirs.status_code == missing.status_code == 404, (method, path)
    # Lists show only one's own; the cancel above did not reach the owner's job.
    assert stranger.get("/v1/jobs").json()["total"] == 0
    assert stranger.get("/v1/datasets").json()["total"] == 0
    assert owner.get(f"/v1/jobs/{job}").json()["status"] == "cancelled"  # the owner's own cancel above


def test_a_candidate_is_reached_only_through_its_own_job(api, seed_job):
    client = api.tenant_client()
    first, second = seed_job(api, client, candidates=1), seed_job(api, client, candidates=1)
    assert client.get(f"/v1/jobs/{first.job_id}/candidates/{second.candidate_ids[0]}").status_code == 404
    assert client.get(f"/v1/jobs/{second.job_id}/candidates/{second.candidate_ids[0]}").status_code == 200
