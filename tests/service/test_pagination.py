"""Cursor pages of jobs, candidates, data sets and teachers over real HTTP, on SQLite and PostgreSQL.

A walk by cursor must see every row that exists throughout exactly once, also while rows are added
between its pages (a walk by offset would repeat rows then); a cursor that is not one of this
list's is a 422, never a 500; callers that send no cursor get the pages they got before.
"""

from __future__ import annotations

import base64
import json

import httpx

from slimformer.client import SlimformerClient
from slimformer.store.candidates import upsert_candidate
from slimformer.store.pages import encode_cursor


def walk(client: httpx.Client, url: str, between=None, **params) -> tuple[list[str], list[dict]]:
    """Every id along `next_cursor`, calling `between()` after each page; and the pages themselves."""
    ids, pages, cursor = [], [], None
    while True:
        r = client.get(url, params={**params, **({"cursor": cursor} if cursor else {})})
        assert r.status_code == 200, r.text
        page = r.json()
        pages.append(page)
        ids += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            return ids, pages
        assert len(pages) < 100, "the walk does not end"
        if between:
            between()


def submit(client: httpx.Client, name: str) -> str:
    r = client.post("/v1/jobs", json={"name": name})
    assert r.status_code == 201, r.text
    return r.json()["id"]


def test_jobs_walk_sees_each_job_once_while_new_ones_arrive(api):
    client = api.tenant_client()
    before = [submit(client, f"j{i}") for i in range(7)]
    added = []
    ids, pages = walk(client, "/v1/jobs", between=lambda: added.append(submit(client, "late")), limit=3)

    # Newest first, so the jobs added during the walk sort before the cursor: the walk is exactly the
    # jobs there were, in order. By offset, each added job would have pushed one already seen onto
    # the next page.
    assert ids == before[::-1]
    assert [len(p["items"]) for p in pages] == [3, 3, 1] and len(added) == 2
    assert all(p["total"] == 7 + i and p["offset"] == 0 for i, p in enumerate(pages))
    assert pages[-1]["next_cursor"] is None

    # The same walk by offset repeats a job for every one added in between: what cursors fix.
    first = client.get("/v1/jobs", params={"limit": 3}).json()
    submit(client, "later")
    second = client.get("/v1/jobs", params={"limit": 3, "offset": 3}).json()
    assert first["items"][-1]["id"] == second["items"][0]["id"]


def test_a_status_filter_is_kept_along_the_walk(api):
    client = api.tenant_client()
    ids = [submit(client, f"j{i}") for i in range(5)]
    for job_id in ids[:3]:
        assert client.post(f"/v1/jobs/{job_id}/cancel").status_code == 200
    walked, _ = walk(client, "/v1/jobs", limit=2, status="cancelled")
    assert walked == ids[:3][::-1]


def test_candidates_walk_in_every_sort_with_missing_values_last(api, seed_job):
    client = api.tenant_client()
    seeded = seed_job(api, client, candidates=7)  # the last one has no measurements
    url = f"/v1/jobs/{seeded.job_id}/candidates"
    for sort in ("created_at", "measured_latency_ms", "-measured_latency_ms", "params", "-dev_accuracy"):
        one_page = client.get(url, params={"sort": sort, "limit": 50}).json()
        assert one_page["next_cursor"] is None and len(one_page["items"]) == 7
        walked, pages = walk(client, url, sort=sort, limit=2)
        assert walked == [c["id"] for c in one_page["items"]], sort
        assert len(pages) == 4
    # Descending: the unmeasured candidate is still last, after the cursor's NULL-free pages.
    walked, _ = walk(client, url, sort="-dev_accuracy", limit=3)
    assert walked[-1] == seeded.candidate_ids[-1]

    walked, _ = walk(client, url, pareto="true", limit=1)
    assert walked == [seeded.candidate_ids[0], seeded.candidate_ids[2]]


def test_candidates_with_equal_values_are_told_apart_by_id(api, seed_job):
    client = api.tenant_client()
    seeded = seed_job(api, client, candidates=2)  # latency 2.5, and one never measured
    with api.session() as session:  # five candidates with one and the same latency
        same = sorted(upsert_candidate(session, seeded.job_id, f"same{i}", {"hidden": 64}, measured_latency_ms=7.0)
                      for i in range(5))
    walked, _ = walk(client, f"/v1/jobs/{seeded.job_id}/candidates", sort="measured_latency_ms", limit=2)
    assert walked == [seeded.candidate_ids[0], *same, seeded.candidate_ids[1]]


def test_datasets_walk_and_the_client_iterates_every_page(api, make_csv):
    key = api.new_key()
    client = api.client(key)
    uploaded = []
    for i in range(5):
        r = client.post("/v1/datasets", files={"file": (f"d{i}.csv", make_csv(rows=20 + i))})
        assert r.status_code == 201, r.text
        uploaded.append(r.json()["id"])
    walked, pages = walk(client, "/v1/datasets", limit=2)
    assert walked == uploaded[::-1] and len(pages) == 3

    with SlimformerClient(api.server.url, key) as typed:
        assert [d.id for d in typed.iter_datasets(page_size=2)] == uploaded[::-1]
        first = typed.list_datasets(limit=4)
        assert first.next_cursor and len(first.items) == 4
        assert [d.id for d in typed.list_datasets(limit=4, cursor=first.next_cursor).items] == uploaded[:1]
        assert [j.id for j in typed.iter_jobs(page_size=1)] == []
        job = typed.submit_job({"name": "one", "dataset": uploaded[0]})
        assert [j.id for j in typed.iter_jobs(page_size=1)] == [job.id]


def test_teachers_walk_by_cursor_and_the_client_iterates_every_page(api, tiny_classifier_dir, archive_of):
    key = api.new_key()
    client = api.client(key)
    uploaded = []
    for i in range(3):
        r = client.post("/v1/teachers", files={"file": (f"t{i}.zip", archive_of(tiny_classifier_dir))})
        assert r.status_code == 201, r.text
        uploaded.append(r.json()["id"])
    walked, pages = walk(client, "/v1/teachers", limit=2)
    assert walked == uploaded[::-1] and len(pages) == 2 and all(p["total"] == 3 for p in pages)

    with SlimformerClient(api.server.url, key) as typed:
        assert [t.id for t in typed.iter_teachers(page_size=1)] == uploaded[::-1]
        first = typed.list_teachers(limit=2)
        assert [t.id for t in typed.list_teachers(limit=2, cursor=first.next_cursor).items] == uploaded[:1]

    # A cursor is one list's: a teachers cursor is no data sets cursor, and no one else's teachers cursor.
    cursor = pages[0]["next_cursor"]
    for url, other in (("/v1/datasets", client), ("/v1/teachers", api.tenant_client())):
        r = other.get(url, params={"cursor": cursor})
        assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["query", "cursor"], r.text


def _cursor(doc: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(doc).encode()).decode().rstrip("=")


def test_a_malformed_or_foreign_cursor_is_a_422(api, seed_job):
    client = api.tenant_client()
    seeded = seed_job(api, client, candidates=3)
    submit(client, "a")
    submit(client, "b")
    jobs_cursor = client.get("/v1/jobs", params={"limit": 1}).json()["next_cursor"]
    candidates_url = f"/v1/jobs/{seeded.job_id}/candidates"
    candidates_cursor = client.get(candidates_url, params={"limit": 1}).json()["next_cursor"]
    other_tenant = api.tenant_client()
    submit(other_tenant, "c")
    submit(other_tenant, "d")
    their_cursor = other_tenant.get("/v1/jobs", params={"limit": 1}).json()["next_cursor"]

    scope_digest = json.loads(base64.urlsafe_b64decode(jobs_cursor + "=" * (-len(jobs_cursor) % 4)))["s"]
    refused = {
        "not base64": ("/v1/jobs", {"cursor": "abc"}),
        "not JSON": ("/v1/jobs", {"cursor": _cursor("x")[:-2] + "AA"}),
        "a list": ("/v1/jobs", {"cursor": _cursor([1, 2])}),
        "a candidates cursor for jobs": ("/v1/jobs", {"cursor": candidates_cursor}),
        "a jobs cursor for data sets": ("/v1/datasets", {"cursor": jobs_cursor}),
        "another tenant's": ("/v1/jobs", {"cursor": their_cursor}),
        "another filter's": ("/v1/jobs", {"cursor": jobs_cursor, "status": "queued"}),
        "another sort's": (candidates_url, {"cursor": candidates_cursor, "sort": "-params"}),
        "wrong key types": ("/v1/jobs", {"cursor": _cursor({"v": 1, "s": scope_digest, "k": [True, None]})}),
        "a naive time": ("/v1/jobs", {"cursor": _cursor({"v": 1, "s": scope_digest, "k": ["2025-01-01T00:00", "x"]})}),
        "too many keys": ("/v1/jobs", {"cursor": _cursor({"v": 1, "s": scope_digest, "k": [1, 2, 3]})}),
        "an id with NUL": ("/v1/jobs", {"cursor": _cursor(
            {"v": 1, "s": scope_digest, "k": ["2025-01-01T00:00:00+00:00", "a\x00b"]})}),
        "an unknown version": ("/v1/jobs", {"cursor": _cursor({"v": 2, "s": scope_digest, "k": []})}),
    }
    for why, (url, params) in refused.items():
        r = client.get(url, params=params)
        assert r.status_code == 422, (why, r.text)
        error = r.json()["detail"][0]
        assert error["loc"] == ["query", "cursor"] and "cursor" in error["msg"], (why, error)
    assert "another list" in client.get("/v1/jobs", params={"cursor": their_cursor}).json()["detail"][0]["msg"]

    # The schema's bounds: characters outside base64url, and over 512 characters.
    for cursor in ("a b", "a\x00", "x" * 513):
        r = client.get("/v1/jobs", params={"cursor": cursor})
        assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["query", "cursor"], r.text
    r = client.get("/v1/jobs", params={"cursor": jobs_cursor, "offset": 1})
    assert r.status_code == 422 and r.json()["detail"][0]["type"] == "cursor_with_offset"


def test_a_cursor_with_extreme_values_is_refused_or_served_never_a_500(api, seed_job):
    client = api.tenant_client()
    seeded = seed_job(api, client, candidates=2)
    url = f"/v1/jobs/{seeded.job_id}/candidates"
    real = client.get(url, params={"limit": 1, "sort": "params"}).json()["next_cursor"]
    digest = json.loads(base64.urlsafe_b64decode(real + "=" * (-len(real) % 4)))["s"]
    for values, status in (([2**63, "x"], 422), ([1e308, "x"], 422), ([-(2**63), "x"], 200), ([None, ""], 200)):
        r = client.get(url, params={"sort": "params", "cursor": _cursor({"v": 1, "s": digest, "k": values})})
        assert r.status_code == status, (values, r.text)


def test_no_cursor_keeps_offset_pages_and_says_where_the_next_page_starts(api):
    client = api.tenant_client()
    ids = [submit(client, f"j{i}") for i in range(3)]
    page = client.get("/v1/jobs", params={"limit": 2, "offset": 1}).json()
    assert [j["id"] for j in page["items"]] == ids[::-1][1:] and page["offset"] == 1
    assert page["next_cursor"] is None  # nothing after the last job
    page = client.get("/v1/jobs", params={"limit": 1, "offset": 1}).json()
    after = client.get("/v1/jobs", params={"limit": 5, "cursor": page["next_cursor"]}).json()
    assert [j["id"] for j in after["items"]] == [ids[0]]
    assert set(client.get("/v1/jobs").json()) == {"items", "total", "limit", "offset", "next_cursor"}


def test_the_jobs_command_lists_every_page_with_all(api, capsys, monkeypatch):
    from slimformer.cli import main

    for name in ("SLIMFORMER_URL", "SLIMFORMER_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    key = api.new_key()
    client = api.client(key)
    ids = [submit(client, f"cli-{i}") for i in range(api.settings.default_page_size + 2)]
    assert main(["jobs", "--url", api.server.url, "--key", key, "--limit", "3"]) == 0
    shown = capsys.readouterr().out
    assert sum(job_id in shown for job_id in ids) == 3 and f"(3 of {len(ids)} jobs; --all for every one)" in shown
    assert main(["jobs", "--all", "--url", api.server.url, "--key", key]) == 0
    shown = capsys.readouterr().out
    assert all(shown.count(job_id) == 1 for job_id in ids) and "--all for every one" not in shown


def test_encoded_cursors_hold_no_server_paths_or_secrets():
    cursor = encode_cursor("jobs|tenant|", ["2025-01-01T00:00:00+00:00", "01ABC"])
    doc = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    assert doc["k"] == ["2025-01-01T00:00:00+00:00", "01ABC"] and "tenant" not in json.dumps(doc)
