"""Jobs over real HTTP (uvicorn), on SQLite and PostgreSQL: submit, validate, idempotency, list, cancel."""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import update

from slimformer.search.budgets import smallest_achievable
from slimformer.search_space import TeacherFacts, count_params, estimate_memory
from slimformer.search_space.latency import LatencySetting, LatencyTable
from slimformer.search_space.space import space_for_teacher
from slimformer.service.validation import BUILTIN_TEACHER_MODULES, builtin_teacher_folder
from slimformer.store import latency_tables
from slimformer.store.jobs import job_inputs
from slimformer.store.models import Job, utcnow

# Checks that never reach the database's own behaviour run on one backend only, to keep the suite quick.
sqlite_only = pytest.mark.parametrize("api", ["sqlite"], indirect=True)


def _ids(errors: list[dict]) -> dict[str, dict]:
    return {e["loc"][-1]: e for e in errors}


def test_submit_returns_the_job_and_its_events(api):
    client = api.tenant_client()
    r = client.post("/v1/jobs", json={"name": "first", "preset": "tiny", "budgets": {"params_m": 10}})
    assert r.status_code == 201, r.text
    job = r.json()
    assert job["status"] == "queued" and job["progress"] == 0 and job["name"] == "first"
    assert job["spec"]["budgets"]["params_m"] == 10 and job["spec"]["preset"] == "tiny"
    assert r.headers["location"] == f"/v1/jobs/{job['id']}"
    assert len(job["id"]) == 26 and job["created_at"].endswith("Z")

    detail = client.get(f"/v1/jobs/{job['id']}").json()
    assert detail["id"] == job["id"] and detail["stage"] is None and detail["eta_seconds"] is None
    assert [e["message"] for e in detail["events"]] == ["job queued"]


@sqlite_only
def test_unknown_teacher_is_422_listing_valid_ones(api):
    r = api.tenant_client().post("/v1/jobs", json={"teacher": "no-such-teacher"})
    assert r.status_code == 422
    error = _ids(r.json()["detail"])["teacher"]
    assert error["type"] == "unknown_teacher" and "no-such-teacher" in error["msg"]
    assert "minilm-l6" in error["ctx"]["valid"]


def test_unknown_dataset_is_422_listing_builtins_and_own_uploads(api, make_csv):
    mine, theirs = api.tenant_client(), api.tenant_client()
    own = mine.post("/v1/datasets", files={"file": ("mine.csv", make_csv())}).json()["id"]
    other = theirs.post("/v1/datasets", files={"file": ("theirs.csv", make_csv())}).json()["id"]

    r = mine.post("/v1/jobs", json={"dataset": "imdb"})
    assert r.status_code == 422
    error = _ids(r.json()["detail"])["dataset"]
    assert error["type"] == "unknown_dataset"
    assert error["ctx"]["valid"] == ["rotten-tomatoes", own]

    # Another tenant's upload is as unknown as a made-up name.
    r = mine.post("/v1/jobs", json={"dataset": other})
    assert r.status_code == 422 and _ids(r.json()["detail"])["dataset"]["type"] == "unknown_dataset"

    r = mine.post("/v1/jobs", json={"dataset": own})
    assert r.status_code == 201 and r.json()["dataset_id"] == own
    with api.session() as session:  # what the worker will read
        spec, path = job_inputs(session, session.get(Job, r.json()["id"]), api.settings.artifacts)
        assert spec.dataset == own and path.read_bytes() == make_csv()


@sqlite_only
def test_every_unknown_name_is_reported_at_once(api):
    r = api.tenant_client().post("/v1/jobs", json={"teacher": "x", "dataset": "y", "corpus": "z"})
    assert r.status_code == 422
    assert set(_ids(r.json()["detail"])) == {"teacher", "dataset", "corpus"}


def _facts(num_labels: int = 2) -> TeacherFacts:
    """The built-in teacher's facts, read from its config.json as the API does."""
    import json

    config = json.loads((builtin_teacher_folder("minilm-l6") / "config.json").read_text())
    return TeacherFacts(
        hidden_size=config["hidden_size"], num_layers=config["num_hidden_layers"],
        num_heads=config["num_attention_heads"], intermediate_size=config["intermediate_size"],
        vocab_size=config["vocab_size"], max_position=config["max_position_embeddings"],
        type_vocab_size=config["type_vocab_size"], num_labels=num_labels,
    )


def _smallest(num_labels: int = 2, batch: int = 1, seq_len: int = 128, trim: bool = True) -> tuple[float, float]:
    from slimformer.supernet.vocab import minimal_vocab_size

    # A trimmed student keeps at least the specials and characters (~2k of MiniLM's 30,522 rows).
    student_vocab = minimal_vocab_size(builtin_teacher_folder("minilm-l6")) if trim else None
    space = space_for_teacher(_facts(num_labels), student_vocab=student_vocab)
    arch = space.smallest()
    return count_params(arch, space) / 1e6, estimate_memory(arch, space, batch, seq_len).total_mb


@sqlite_only
@pytest.mark.parametrize("axis", ["params_m", "memory_mb"])
def test_budget_below_the_smallest_architecture_is_422_with_smallest_values(api, axis):
    params_m, memory_mb = _smallest(batch=4, seq_len=64)
    client = api.tenant_client()
    body = {"budgets": {axis: 0.1}, "latency": {"batch": 4, "seq_len": 64}}
    r = client.post("/v1/jobs", json=body)
    assert r.status_code == 422, r.text
    error = r.json()["detail"][0]
    assert error["type"] == "budget_infeasible" and error["loc"] == ["body", "budgets"]
    assert axis in error["msg"] and "smallest achievable" in error["msg"]
    smallest = error["ctx"]["smallest"]
    assert smallest["params_m"] == pytest.approx(params_m, rel=1e-12)
    assert smallest["memory_mb"] == pytest.approx(memory_mb, rel=1e-12)
    assert "latency_ms" not in smallest  # no cached latency table yet: unknown, not guessed

    # Exactly the smallest value is achievable; the value shown in the message (rounded up) too.
    exact = {"params_m": params_m, "memory_mb": memory_mb}[axis]
    body["budgets"][axis] = exact
    assert client.post("/v1/jobs", json=body).status_code == 201
    body["budgets"][axis] = math.ceil(exact * 1000) / 1000
    assert client.post("/v1/jobs", json=body).status_code == 201


@sqlite_only
def test_without_vocabulary_trimming_the_smallest_student_embeds_the_whole_vocabulary(api):
    trimmed, _ = _smallest()
    full, _ = _smallest(trim=False)
    # Millions: most of the 30,522 x 32 lookup of the narrowest rank (factorised, r = 32 at H = 128).
    assert full - trimmed > 0.8
    client = api.tenant_client()
    for trim, expected in ((True, trimmed), (False, full)):
        r = client.post("/v1/jobs", json={"budgets": {"params_m": 0.1}, "trim_vocab": trim})
        assert r.json()["detail"][0]["ctx"]["smallest"]["params_m"] == pytest.approx(expected, rel=1e-12)
    assert client.post("/v1/jobs", json={"budgets": {"params_m": (trimmed + full) / 2}}).status_code == 201
    r = client.post("/v1/jobs", json={"budgets": {"params_m": (trimmed + full) / 2}, "trim_vocab": False})
    assert r.status_code == 422


@sqlite_only
def test_smallest_params_count_the_data_sets_labels(api, make_csv):
    client = api.tenant_client()
    five = client.post("/v1/datasets", files={"file": ("five.csv", make_csv(50, ("a", "b", "c", "d", "e")))})
    assert five.status_code == 201 and len(five.json()["labels"]) == 5
    r = client.post("/v1/jobs", json={"dataset": five.json()["id"], "budgets": {"params_m": 0.1}})
    assert r.json()["detail"][0]["ctx"]["smallest"]["params_m"] == pytest.approx(_smallest(num_labels=5)[0])


def _made_up_table(space, seq_len: int, factor: float, cpu: str) -> dict:
    """A latency table document covering `space`, every entry `factor` times a size-based guess."""
    table = LatencyTable(setting=LatencySetting(seq_len=seq_len), hardware={"cpu": cpu}, torch_version="2.13.0")
    for h in space.hidden_sizes:
        for op in space.slot_ops():
            if op.kind != "id":
                table.ops[(str(op), h)] = factor * (0.1 + 0.001 * op.size * h / 64)
        table.embeddings[h], table.head[h] = factor * 0.05, factor * 0.01
        for r in space.ranks_at(h)[1:]:  # factorised lookups: an r x H matmul more
            table.factorised[(h, r)] = factor * (0.05 + 0.0001 * r * h / 64)
    table.overhead_ms = factor * 0.2
    return table.to_dict()


def test_a_latency_budget_is_checked_against_the_tables_workers_recorded(api):
    client = api.tenant_client()
    body = {"budgets": {"latency_ms": 0.5}, "latency": {"seq_len": 96}}  # a shape no other test records
    # No worker has measured this shape yet: the budget cannot be judged here and is left to the search.
    first = client.post("/v1/jobs", json=body)
    assert first.status_code == 201, first.text

    space = space_for_teacher(_facts())
    slow, fast = _made_up_table(space, 96, 2.0, "slow cpu"), _made_up_table(space, 96, 1.0, "fast cpu")
    with api.session() as session:
        latency_tables.record_table(session, "slow-machine", slow, space)
        latency_tables.record_table(session, "fast-machine", _made_up_table(space, 96, 9.0, "fast cpu"), space)
    with api.session() as session:  # a worker measuring again replaces its row
        latency_tables.record_table(session, "fast-machine", fast, space)
        assert len(latency_tables.tables_for(session, space, LatencySetting(seq_len=96))) == 2
    fastest = smallest_achievable(space, LatencyTable.from_dict(fast))["latency_ms"]
    assert fastest < smallest_achievable(space, LatencyTable.from_dict(slow))["latency_ms"]

    refused = client.post("/v1/jobs", json={**body, "budgets": {"latency_ms": fastest * 0.9}})
    assert refused.status_code == 422, refused.text
    error = refused.json()["detail"][0]
    assert error["type"] == "budget_infeasible" and "latency_ms" in error["msg"]
    assert error["ctx"]["smallest"]["latency_ms"] == pytest.approx(fastest)  # the fastest machine decides
    ok = client.post("/v1/jobs", json={**body, "budgets": {"latency_ms": fastest * 1.01}})
    assert ok.status_code == 201, ok.text
    other_shape = client.post("/v1/jobs", json={**body, "latency": {"seq_len": 97}})
    assert other_shape.status_code == 201  # tables of one shape say nothing about another


@pytest.mark.parametrize(
    "body",
    [
        {"budgets": {"params_m": -1}},
        {"budgets": {"memory_mb": 0}},
        {"search": {"trials": 5001}},
        {"search": {"finalists": 21}},
        {"latency": {"batch": 0}},
        {"name": "x" * 201},
        {"unknown_field": 1},
    ],
)
@sqlite_only
def test_out_of_bounds_fields_are_422(api, body):
    r = api.tenant_client().post("/v1/jobs", json=body)
    assert r.status_code == 422, r.text


@sqlite_only
def test_non_finite_budget_is_422(api):
    # Python's JSON reader turns 1e999 into inf and accepts NaN: the spec must refuse both, and the
    # error (which echoes the input) must still be valid JSON.
    client = api.tenant_client(headers={"content-type": "application/json"})
    for raw in (b"1e999", b"-1e999", b"NaN"):
        r = client.post("/v1/jobs", content=b'{"budgets": {"latency_ms": ' + raw + b"}}")
        assert r.status_code == 422, r.text
        assert r.json()["detail"][0]["loc"] == ["body", "budgets", "latency_ms"]


@sqlite_only
@pytest.mark.parametrize(("body", "loc", "kind"), [
    ({"budgets": {"latency_ms": True}}, ["body", "budgets", "latency_ms"], "number"),
    ({"budgets": {"params_m": False}}, ["body", "budgets", "params_m"], "number"),
    ({"seed": True}, ["body", "seed"], "integer"),
    ({"latency": {"batch": True}}, ["body", "latency", "batch"], "integer"),
    ({"search": {"trials": True}}, ["body", "search", "trials"], "integer"),
])
def test_booleans_for_numbers_are_422(api, body, loc, kind):
    # Lax pydantic would read true as 1: the contract (JobSpec) refuses it, so does the API.
    r = api.tenant_client().post("/v1/jobs", json=body)
    assert r.status_code == 422, r.text
    error = r.json()["detail"][0]
    assert error["loc"] == loc and error["msg"] == f"Input should be a valid {kind}, not a boolean"


@sqlite_only
def test_body_over_the_limit_is_413(api):
    client = api.tenant_client()
    limit = api.settings.max_body_bytes
    big = b'{"name": "' + b"x" * limit + b'"}'
    r = client.post("/v1/jobs", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413

    # Chunked: no Content-Length, so the limit must be counted as the body streams in.
    def chunks():
        yield b'{"name": "'
        for _ in range(limit // 1024 + 2):
            yield b"x" * 1024
        yield b'"}'

    r = client.post("/v1/jobs", content=chunks(), headers={"content-type": "application/json"})
    assert "content-length" not in r.request.headers
    assert r.status_code == 413
    assert api.tenant_client().post("/v1/jobs", json={"name": "small"}).status_code == 201


def test_idempotency_key_replays_the_same_job(api):
    client, other = api.tenant_client(), api.tenant_client()
    headers = {"Idempotency-Key": "order-42"}
    first = client.post("/v1/jobs", json={"name": "a"}, headers=headers)
    again = client.post("/v1/jobs", json={"name": "a"}, headers=headers)
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["id"] == again.json()["id"]
    assert again.headers["idempotent-replayed"] == "true"

    # The same key with another body is a client bug, not a retry.
    r = client.post("/v1/jobs", json={"name": "b"}, headers=headers)
    assert r.status_code == 409 and "Idempotency-Key" in r.json()["detail"]

    # Keys are per tenant.
    theirs = other.post("/v1/jobs", json={"name": "a"}, headers=headers)
    assert theirs.status_code == 201 and theirs.json()["id"] != first.json()["id"]


def test_concurrent_submissions_make_one_job_per_key(api):
    client = api.tenant_client(limits=httpx.Limits(max_connections=60))

    def submit(key: str):
        r = client.post("/v1/jobs", json={"name": "burst"}, headers={"Idempotency-Key": key})
        return r.status_code, r.json()["id"]

    with ThreadPoolExecutor(max_workers=50) as pool:
        distinct = list(pool.map(submit, [f"k-{i}" for i in range(50)]))
        same = list(pool.map(submit, ["same-key"] * 10))

    assert [code for code, _ in distinct] == [201] * 50
    assert len({job_id for _, job_id in distinct}) == 50
    assert len({job_id for _, job_id in same}) == 1
    assert sorted(code for code, _ in same) == [200] * 9 + [201]
    assert client.get("/v1/jobs").json()["total"] == 51


def test_list_jobs_pages_and_filters(api):
    client = api.tenant_client()
    ids = [client.post("/v1/jobs", json={"name": f"j{i}"}).json()["id"] for i in range(5)]
    client.post(f"/v1/jobs/{ids[0]}/cancel")

    page = client.get("/v1/jobs", params={"limit": 2, "offset": 1}).json()
    assert page["total"] == 5 and page["limit"] == 2 and page["offset"] == 1
    assert [j["id"] for j in page["items"]] == ids[::-1][1:3]  # newest first
    assert client.get("/v1/jobs").json()["limit"] == api.settings.default_page_size

    cancelled = client.get("/v1/jobs", params={"status": "cancelled"}).json()
    assert [j["id"] for j in cancelled["items"]] == [ids[0]]
    assert client.get("/v1/jobs", params={"status": "bogus"}).status_code == 422

    r = client.get("/v1/jobs", params={"limit": api.settings.max_page_size + 1})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["query", "limit"]


def test_cancel_queued_running_and_finished_jobs(api):
    client = api.tenant_client()
    queued = client.post("/v1/jobs", json={}).json()["id"]
    r = client.post(f"/v1/jobs/{queued}/cancel")
    assert r.status_code == 200 and r.json()["status"] == "cancelled" and r.json()["finished_at"]
    assert client.post(f"/v1/jobs/{queued}/cancel").status_code == 409

    running = client.post("/v1/jobs", json={}).json()["id"]
    with api.session() as session:  # as a worker would have left it
        session.execute(
            update(Job).where(Job.id == running)
            .values(status="running", lease_owner="w1", lease_expires_at=utcnow() + timedelta(minutes=5))
        )
    for _ in range(2):  # asking twice is harmless
        r = client.post(f"/v1/jobs/{running}/cancel")
        assert r.status_code == 200
        assert r.json()["status"] == "running" and r.json()["cancel_requested"] is True
    events = [e["message"] for e in client.get(f"/v1/jobs/{running}").json()["events"]]
    assert sum("cancellation requested" in m for m in events) == 1

    with api.session() as session:
        session.execute(update(Job).where(Job.id == running).values(status="succeeded"))
    r = client.post(f"/v1/jobs/{running}/cancel")
    assert r.status_code == 409 and "succeeded" in r.json()["detail"]


def test_job_detail_keeps_the_last_20_events(api):
    from slimformer.store.events import add_event

    client = api.tenant_client()
    job_id = client.post("/v1/jobs", json={}).json()["id"]
    with api.session() as session:
        for i in range(30):
            add_event(session, job_id, f"event {i}")
    events = client.get(f"/v1/jobs/{job_id}").json()["events"]
    assert [e["message"] for e in events] == [f"event {i}" for i in range(10, 30)]


def test_builtin_teachers_match_the_supernet_list():
    from slimformer.supernet.teacher import BUILTIN_TEACHERS

    assert set(BUILTIN_TEACHER_MODULES) == set(BUILTIN_TEACHERS)
    for name, (module, subdir) in BUILTIN_TEACHER_MODULES.items():
        assert (BUILTIN_TEACHERS[name].module, BUILTIN_TEACHERS[name].subdir) == (module, subdir)


@sqlite_only
def test_openapi_is_served(api):
    doc = api.client().get("/v1/openapi.json").json()
    assert {"/v1/jobs", "/v1/jobs/{job_id}", "/v1/jobs/{job_id}/cancel", "/v1/datasets", "/v1/health",
            "/v1/jobs/{job_id}/candidates/{candidate_id}/artifact", "/v1/jobs/{job_id}/pareto.svg"} <= set(doc["paths"])
    assert any("HTTPBearer" in s for s in doc["components"]["securitySchemes"])


@sqlite_only
def test_a_1_5m_params_budget_on_minilm_is_accepted_and_searched_within(api):
    """Issue 9's budget: 1.5M parameters on MiniLM-L6 (22.7M; its word table alone is 11.7M).

    Accepted over HTTP, and a search on the same space with the job's kept vocabulary (16,023 rows
    at the quick preset on Rotten Tomatoes + news, bench/results/compact.json) returns only models
    within it: every one factorised, since a plain 16k x 128 table alone is over 2M.
    """
    from slimformer.search import Budgets, run_search

    client = api.tenant_client()
    assert client.post("/v1/jobs", json={"teacher": "minilm-l6", "budgets": {"params_m": 1.5}}).status_code == 201
    space = space_for_teacher(_facts(), student_vocab=16_023)
    budgets = Budgets(params_m=1.5)
    table = LatencyTable.from_dict(_made_up_table(space, 128, 1.0, "test"))
    scored = []

    def smaller_is_worse(arch):  # a made-up score that pulls the search towards the budget's edge
        scored.append(arch)
        return count_params(arch, space) / 1e6

    result = run_search(space, smaller_is_worse, budgets, table, table.setting, strategy="nsga2", trials=10, seed=0,
                        seed_archs=[space.smallest()])
    assert result.pareto and scored
    for arch in scored + [space.parse(r.arch) for r in result.pareto]:
        assert count_params(arch, space) <= 1_500_000 and arch.embedding_rank is not None, arch.short()
