"""Data set uploads over real HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import json

import pytest
from sqlalchemy import select

from slimformer.store.models import Dataset

# Checks that never reach the database's own behaviour run on one backend only, to keep the suite quick.
sqlite_only = pytest.mark.parametrize("api", ["sqlite"], indirect=True)


def test_upload_csv_and_jsonl(api, make_csv):
    client = api.tenant_client()
    data = make_csv(rows=30)
    r = client.post("/v1/datasets", files={"file": ("reviews.csv", data)})
    assert r.status_code == 201, r.text
    ds = r.json()
    assert ds["name"] == "reviews" and ds["format"] == "csv" and ds["rows"] == 30
    assert ds["labels"] == ["neg", "pos"] and ds["sha256"] == hashlib.sha256(data).hexdigest()
    assert "path" not in ds  # server paths never go out

    lines = "\n".join(json.dumps({"text": f"item {i}", "label": i % 3}) for i in range(30)).encode()
    r = client.post("/v1/datasets", files={"file": ("items.jsonl", lines)}, data={"name": "three classes"})
    assert r.status_code == 201 and r.json()["labels"] == ["0", "1", "2"] and r.json()["name"] == "three classes"

    listed = client.get("/v1/datasets").json()
    assert listed["total"] == 2 and [d["name"] for d in listed["items"]] == ["three classes", "reviews"]
    with api.session() as session:
        stored = session.get(Dataset, ds["id"])
        assert (api.settings.artifacts / stored.path).read_bytes() == data


@sqlite_only
def test_bad_data_is_422_naming_the_line(api, make_csv):
    client = api.tenant_client()
    cases = {
        "empty.csv": (b"text,label\nfine,1\n   ,0\n", "empty.csv line 3: empty text"),
        "cols.csv": (b"text,lbl\na,1\n", "cols.csv line 1: missing column 'label'"),
        "bad.jsonl": (b'{"text": "a", "label": 1}\n{"text": "b", "label": 0\n', "bad.jsonl line 2: invalid JSON"),
        "one.csv": (b"text,label\na,1\nb,1\n", "only one class"),
        "notes.txt": (b"text,label\na,1\n", "unknown extension '.txt'"),
    }
    for name, (content, message) in cases.items():
        r = client.post("/v1/datasets", files={"file": (name, content)})
        assert r.status_code == 422, (name, r.text)
        assert message in r.json()["detail"][0]["msg"], (name, r.json())
    assert client.get("/v1/datasets").json()["total"] == 0
    _assert_every_file_has_a_row(api)


def _assert_every_file_has_a_row(api):
    # Refused uploads leave no file behind.
    files = {p.relative_to(api.settings.artifacts).as_posix()
             for p in (api.settings.artifacts / "datasets").rglob("*") if p.is_file()}
    with api.session() as session:
        assert files == set(session.scalars(select(Dataset.path)))


@sqlite_only
def test_upload_over_the_limit_is_413(api, make_csv):
    client = api.tenant_client()
    limit = api.settings.max_upload_bytes
    big = make_csv(rows=limit // 20)
    assert len(big) > limit
    r = client.post("/v1/datasets", files={"file": ("big.csv", big)})
    assert r.status_code == 413 and "over the limit" in r.json()["detail"]
    # Far over: refused by the body limit before the upload is parsed at all.
    r = client.post("/v1/datasets", files={"file": ("huge.csv", big * 3)})
    assert r.status_code == 413
    assert client.get("/v1/datasets").json()["total"] == 0
    _assert_every_file_has_a_row(api)
    assert client.post("/v1/datasets", files={"file": ("ok.csv", make_csv())}).status_code == 201
