"""The per-API-key rate limit on submissions and uploads, and what the OpenAPI schema promises.

The limiter runs on an injected clock, so recovering after the window takes no sleeping.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest

from slimformer.service.auth import create_api_key
from slimformer.service.rate_limit import TokenBucketLimiter
from slimformer.store.db import session_scope

JOB = {"name": "limited", "preset": "tiny"}


class FakeClock:
    """Monotonic seconds that move only when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# --- the limiter -----------------------------------------------------------------------------------


def test_bucket_allows_a_burst_then_says_how_long_to_wait():
    clock = FakeClock()
    limiter = TokenBucketLimiter(3, window_s=60, clock=clock)
    assert [limiter.acquire("a") for _ in range(3)] == [None, None, None]
    assert limiter.acquire("a") == 20  # one request per 20 s refills
    clock.now += 19.5
    assert limiter.acquire("a") == 1  # half a second left, rounded up to a whole second
    clock.now += 0.5
    assert limiter.acquire("a") is None
    assert limiter.acquire("a") == 20


def test_buckets_are_per_key_and_refill_no_further_than_full():
    clock = FakeClock()
    limiter = TokenBucketLimiter(2, window_s=10, clock=clock)
    assert limiter.acquire("a") is None and limiter.acquire("a") is None and limiter.acquire("a") == 5
    assert limiter.acquire("b") is None  # another key has its own bucket
    clock.now += 3600  # an idle hour gives back the burst, not 720 requests
    assert [limiter.acquire("a") for _ in range(3)] == [None, None, 5]


def test_a_clock_stepping_back_takes_nothing_away():
    clock = FakeClock()
    limiter = TokenBucketLimiter(1, window_s=60, clock=clock)
    assert limiter.acquire("a") is None
    clock.now -= 100
    assert limiter.acquire("a") == 60


def test_zero_disables_and_bad_arguments_are_refused():
    limiter = TokenBucketLimiter(0)
    assert not limiter.enabled and all(limiter.acquire("a") is None for _ in range(1000))
    with pytest.raises(ValueError):
        TokenBucketLimiter(-1)
    with pytest.raises(ValueError):
        TokenBucketLimiter(1, window_s=0)


# --- over HTTP -------------------------------------------------------------------------------------


class Limited:
    """A live server limited to 2 requests per minute per key, its fake clock, and clients of it."""

    def __init__(self, server, clock: FakeClock):
        self.server, self.clock = server, clock
        self.clients: list[httpx.Client] = []

    def new_key(self, tenant: str | None = None) -> str:
        with session_scope(self.server.app.state.session_factory) as session:
            return create_api_key(session, tenant or f"tenant-{uuid.uuid4().hex[:10]}")

    def client(self, key: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.clients.append(httpx.Client(base_url=self.server.url, headers=headers, timeout=60))
        return self.clients[-1]


@pytest.fixture
def limited(tmp_path, make_settings, start_server) -> Iterator[Limited]:
    server = start_server(make_settings(tmp_path, f"sqlite:///{tmp_path / 'api.db'}", rate_limit_per_minute=2))
    clock = FakeClock()
    server.app.state.rate_limiter = TokenBucketLimiter(2, window_s=60, clock=clock)
    api = Limited(server, clock)
    yield api
    for client in api.clients:
        client.close()


def _assert_429(response, retry_after: int) -> None:
    assert response.status_code == 429, response.text
    assert response.headers["retry-after"] == str(retry_after)
    detail = response.json()["detail"]
    assert isinstance(detail, str) and "too many requests" in detail


def test_submissions_and_uploads_share_a_bucket_per_key(limited, make_csv):
    api, clock = limited, limited.clock
    client = api.client(api.new_key())
    assert client.post("/v1/jobs", json=JOB).status_code == 201
    upload = client.post("/v1/datasets", files={"file": ("d.csv", make_csv())})
    assert upload.status_code == 201, upload.text
    _assert_429(client.post("/v1/jobs", json=JOB), 30)  # 2 per 60 s: one more every 30 s
    _assert_429(client.post("/v1/datasets", files={"file": ("d.csv", make_csv())}), 30)
    assert client.get("/v1/jobs").status_code == 200  # reads are not limited

    clock.now += 29
    _assert_429(client.post("/v1/jobs", json=JOB), 1)
    clock.now += 1  # exactly what Retry-After said
    assert client.post("/v1/jobs", json=JOB).status_code == 201
    _assert_429(client.post("/v1/jobs", json=JOB), 30)


def test_another_key_is_not_affected(limited):
    api = limited
    tenant = f"shared-{uuid.uuid4().hex[:8]}"
    first, second = api.client(api.new_key(tenant)), api.client(api.new_key(tenant))
    for _ in range(2):
        assert first.post("/v1/jobs", json=JOB).status_code == 201
    _assert_429(first.post("/v1/jobs", json=JOB), 30)
    # Another key, even of the same tenant, and another tenant's key each have their own bucket.
    assert second.post("/v1/jobs", json=JOB).status_code == 201
    assert api.client(api.new_key()).post("/v1/jobs", json=JOB).status_code == 201


def test_requests_without_a_valid_key_are_401_and_count_against_nothing(limited):
    api = limited
    anonymous = api.client()
    bad = api.client("sf_" + "x" * 43)
    for _ in range(5):
        assert anonymous.post("/v1/jobs", json=JOB).status_code == 401
        assert bad.post("/v1/jobs", json=JOB).status_code == 401


def test_the_default_limit_comes_from_the_settings(tmp_path, make_settings, start_server):
    server = start_server(make_settings(tmp_path, f"sqlite:///{tmp_path / 'api.db'}"))
    limiter = server.app.state.rate_limiter
    assert limiter.rate == 60 and limiter.window_s == 60
    off = start_server(make_settings(tmp_path / "off", f"sqlite:///{tmp_path / 'off.db'}", rate_limit_per_minute=0))
    assert not off.app.state.rate_limiter.enabled


# --- the schema ------------------------------------------------------------------------------------


def test_openapi_documents_every_status_and_bound(tmp_path, make_settings):
    from slimformer.service.app import create_app

    schema = create_app(make_settings(tmp_path, f"sqlite:///{tmp_path / 'api.db'}", max_page_size=37)).openapi()
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            if path == "/v1/health":
                assert "401" not in responses and "Retry-After" in responses["503"]["headers"]
                continue
            assert {"401", "503"} <= set(responses), (method, path)
            error_ref = {"$ref": "#/components/schemas/ErrorOut"}
            assert responses["401"]["content"]["application/json"]["schema"] == error_ref
            assert "WWW-Authenticate" in responses["401"]["headers"]
            if method == "post":
                assert "413" in responses, path
            for parameter in operation.get("parameters", []):
                if parameter["name"] == "limit":
                    assert parameter["schema"]["anyOf"][0]["maximum"] == 37
    for path in ("/v1/jobs", "/v1/datasets"):
        limited = schema["paths"][path]["post"]["responses"]["429"]
        assert limited["headers"]["Retry-After"]["schema"] == {"type": "integer", "minimum": 1}
        assert {"400", "422"} <= set(schema["paths"][path]["post"]["responses"])
    assert schema["components"]["schemas"]["Page_JobOut_"]["properties"]["items"]["maxItems"] == 37
    for path in ("/v1/jobs", "/v1/datasets", "/v1/teachers", "/v1/jobs/{job_id}/candidates"):
        listing = schema["paths"][path]["get"]
        cursor = next(p for p in listing["parameters"] if p["name"] == "cursor")["schema"]["anyOf"][0]
        assert (cursor["maxLength"], cursor["pattern"]) == (512, "^[A-Za-z0-9_-]+$"), path
        assert "cursor" in listing["responses"]["422"]["description"], path
        page = listing["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].split("/")[-1]
        assert "next_cursor" in schema["components"]["schemas"][page]["properties"], path
    assert schema["components"]["schemas"]["JobDetail"]["properties"]["events"]["maxItems"] == 20
