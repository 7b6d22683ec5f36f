"""Your teacher as given, over HTTP: a user's own BERT, RoBERTa or DistilBERT classifier folder is
uploaded (POST /v1/teachers), a tiny job runs on it to a Pareto front, and its logits are the
distillation target unchanged (the stored teacher predictions equal the model's own). A head whose
labels are not the data set's is refused at submission (422 `teacher_labels`).

One live API (tests/live_server.py) on SQLite and an in-process worker (no Ray) that runs each job
when the test says so.
"""

from __future__ import annotations

import io
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import torch
from safetensors.torch import load_file

from slimformer.contracts.settings import Settings
from slimformer.data import load_task
from slimformer.data.types import encode_batch
from slimformer.service.app import create_app
from slimformer.service.auth import create_api_key
from slimformer.store.db import session_scope
from slimformer.store.jobs import job_inputs
from slimformer.store.models import Job
from slimformer.supernet.tiny import make_tiny_family_teacher
from slimformer.workers.worker import Worker

from live_server import LiveServer  # tests/live_server.py


@dataclass
class Service:
    server: LiveServer
    settings: Settings
    client: httpx.Client
    worker: Worker


@pytest.fixture(scope="module")
def service(tmp_path_factory) -> Iterator[Service]:
    home = tmp_path_factory.mktemp("given-home")
    settings = Settings(home=home, database_url=f"sqlite:///{home / 'slimformer.db'}", auto_migrate=True)
    server = LiveServer(create_app(settings))
    assert server.start(), "the API did not start"
    with session_scope(server.app.state.session_factory) as session:
        key = create_api_key(session, f"tenant-{uuid.uuid4().hex[:8]}")
    client = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=60)
    worker = Worker(settings, owner="given-worker", lease_seconds=30, use_ray=False)
    try:
        yield Service(server, settings, client, worker)
    finally:
        worker.close()
        client.close()
        server.stop()


@pytest.fixture(scope="module")
def dataset_id(service, task_csv) -> str:
    r = service.client.post("/v1/datasets", files={"file": ("tiny.csv", task_csv.read_bytes())})
    assert r.status_code == 201, r.text
    assert r.json()["labels"] == ["negative", "positive"]
    return r.json()["id"]


def _upload(client: httpx.Client, folder: Path) -> dict:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for file in sorted(folder.iterdir()):
            archive.write(file, file.name)
    r = client.post("/v1/teachers", files={"file": (f"{folder.name}.zip", buffer.getvalue())})
    assert r.status_code == 201, r.text
    return r.json()


# Label names as a user's model might carry them: the task's, reversed, and transformers' defaults.
CASES = [("bert", ["negative", "positive"], [0, 1]), ("roberta", ["positive", "negative"], [1, 0]),
         ("distilbert", None, [0, 1])]


@pytest.mark.parametrize(("family", "labels", "order"), CASES)
def test_an_uploaded_classifier_runs_to_a_front_distilling_its_own_logits(
    family, labels, order, service, dataset_id, tmp_path
):
    folder = make_tiny_family_teacher(family, tmp_path / f"my-{family}", labels)
    teacher = _upload(service.client, folder)
    assert teacher["model_type"] == family

    spec = {"teacher": teacher["id"], "dataset": dataset_id, "preset": "tiny", "latency": {"seq_len": 32},
            "search": {"strategy": "sample", "finalists": 2}}
    r = service.client.post("/v1/jobs", json=spec)
    assert r.status_code == 201, r.text
    job_id = r.json()["id"]
    assert service.worker.run_once() == job_id

    job = service.client.get(f"/v1/jobs/{job_id}").json()
    assert job["status"] == "succeeded", job["error"]
    assert job["teacher"]["source"] == "given"  # the API says the reference point is the user's own model
    assert job["teacher"]["name"] == teacher["id"]  # as the user named it, never the server folder
    card = (service.settings.artifacts / "runs" / job_id / "candidates").rglob("README.md")
    assert all(str(service.settings.artifacts) not in path.read_text() for path in card)
    found = service.client.get(f"/v1/jobs/{job_id}/candidates", params={"limit": 50}).json()["items"]
    assert found and any(c["pareto"] for c in found)
    assert all(c["state"] == "exported" and 0 <= c["dev_accuracy"] <= 1 for c in found)

    # The teacher's figures say it was used as given; its stored predictions are the model's own logits.
    run_dir = service.settings.artifacts / "runs" / job_id
    import json

    figures = json.loads((run_dir / "teacher.json").read_text())["teacher"]
    assert figures["source"] == "given" and figures["fine_tuned"] is False
    stored = load_file(str(run_dir / "teacher_logits.safetensors"))["train"]
    with session_scope(service.server.app.state.session_factory) as session:
        job_spec, dataset_path = job_inputs(session, session.get(Job, job_id), service.settings.artifacts)
    task = load_task(str(dataset_path), seed=job_spec.seed)
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    own = AutoModelForSequenceClassification.from_pretrained(folder, attn_implementation="eager").eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    batch = encode_batch(tokenizer, [ex.text for ex in task.train], max_length=figures["max_length"])
    if family == "distilbert":
        batch.pop("token_type_ids")
    with torch.no_grad():
        expected = own(**batch).logits[:, order]
    assert stored.shape == expected.shape == (len(task.train), 2)
    assert (stored - expected).abs().max().item() < 1e-5
    assert expected.std().item() > 1e-3


def test_a_head_that_does_not_predict_the_data_set_s_labels_is_refused_at_submission(
    service, dataset_id, tmp_path
):
    teacher = _upload(service.client, make_tiny_family_teacher("bert", tmp_path / "spam", ["spam", "ham"]))
    r = service.client.post("/v1/jobs", json={"teacher": teacher["id"], "dataset": dataset_id, "preset": "tiny"})
    assert r.status_code == 422, r.text
    (error,) = r.json()["detail"]
    assert error["loc"] == ["body", "teacher"] and error["type"] == "teacher_labels"
    assert "['spam', 'ham']" in error["msg"] and "['negative', 'positive']" in error["msg"]
