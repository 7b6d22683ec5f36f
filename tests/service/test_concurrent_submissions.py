"""100 submissions at once on PostgreSQL, over real HTTP: exactly 100 jobs, none twice, no 500.

A server of its own, so its rate limit can be raised for this test alone (through Settings): one
API key sending 100 jobs at once is what this test is about, not what the limit is for.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from threading import Barrier

import httpx
import pytest
from sqlalchemy import func, select

from slimformer.service.auth import create_api_key
from slimformer.store.db import session_scope
from slimformer.store.models import Job, JobEvent

SUBMISSIONS = 100


@pytest.mark.postgres
def test_100_concurrent_submissions_make_exactly_100_jobs(tmp_path, pg_database_url, make_settings, start_server):
    server = start_server(make_settings(tmp_path, pg_database_url, rate_limit_per_minute=2 * SUBMISSIONS))
    with session_scope(server.app.state.session_factory) as session:
        key = create_api_key(session, "burst")
    start = Barrier(SUBMISSIONS)  # every thread sends at the same moment, not as the pool warms up

    def submit(i: int) -> httpx.Response:
        start.wait(timeout=60)
        return client.post("/v1/jobs", json={"name": f"burst-{i}", "preset": "tiny"},
                           headers={"Idempotency-Key": f"burst-{i}"})

    limits = httpx.Limits(max_connections=SUBMISSIONS, max_keepalive_connections=SUBMISSIONS)
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=120,
                      limits=limits) as client:
        with ThreadPoolExecutor(max_workers=SUBMISSIONS) as pool:
            answers = list(pool.map(submit, range(SUBMISSIONS)))

        assert sorted({r.status_code for r in answers}) == [201], [r.text for r in answers if r.status_code != 201][:3]
        jobs = [r.json() for r in answers]
        assert sorted(j["name"] for j in jobs) == sorted(f"burst-{i}" for i in range(SUBMISSIONS))
        assert len({j["id"] for j in jobs}) == SUBMISSIONS

        # The API's own list, walked by cursor, holds each job once and no other.
        listed, cursor = [], None
        while True:
            page = client.get("/v1/jobs", params={"limit": 50, **({"cursor": cursor} if cursor else {})}).json()
            listed += [j["id"] for j in page["items"]]
            if not (cursor := page["next_cursor"]):
                break
        assert sorted(listed) == sorted(j["id"] for j in jobs) and page["total"] == SUBMISSIONS

    with session_scope(server.app.state.session_factory) as session:
        assert session.scalar(select(func.count()).select_from(Job)) == SUBMISSIONS
        assert session.scalar(select(func.count(func.distinct(Job.name)))) == SUBMISSIONS
        queued = session.scalar(select(func.count()).select_from(JobEvent).where(JobEvent.message == "job queued"))
        assert queued == SUBMISSIONS
