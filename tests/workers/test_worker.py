"""The worker loop against a live API: run to success, SIGKILL takeover, cancel, lost lease, Ray.

Jobs are the tiny preset on the tiny teacher (a few seconds of training each), uploaded over HTTP
(`POST /v1/teachers`) and named by its id, so the worker runs from the stored folder; the task
teacher is fine-tuned once per module and cached under the shared SLIMFORMER_HOME.
"""

from __future__ import annotations

import hashlib
import io
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, select, text, update
from sqlalchemy.engine import make_url

from slimformer.contracts.settings import Settings
from slimformer.service.app import create_app
from slimformer.service.auth import create_api_key
from slimformer.store import leases
from slimformer.store.db import session_scope
from slimformer.store.models import Job, JobEvent, LatencyTableRecord
from slimformer.workers.stages.report import measured_front
from slimformer.workers.worker import Worker, study_name_for

from live_server import LiveServer as SharedLiveServer  # tests/live_server.py

PG_URL = os.environ.get("SLIMFORMER_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


class LiveServer(SharedLiveServer):
    """The service tests' live server (tests/live_server.py: uvicorn signals its start-up, nothing is
    polled) on `settings`, as a context manager, with sessions and fresh-tenant clients."""

    def __init__(self, settings: Settings):
        super().__init__(create_app(settings))

    def __enter__(self) -> LiveServer:
        assert self.start(), "the API did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @contextmanager
    def session(self):
        with session_scope(self.app.state.session_factory) as session:
            yield session

    def client(self) -> httpx.Client:
        with self.session() as session:
            key = create_api_key(session, f"tenant-{uuid.uuid4().hex[:8]}")
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {key}"}, timeout=60)


@contextmanager
def pg_schema() -> Iterator[str]:
    """A URL of a fresh PostgreSQL schema, dropped afterwards (skips when PostgreSQL is unreachable)."""
    admin = create_engine(PG_URL, connect_args={"connect_timeout": 3})
    schema = f"sf_worker_{uuid.uuid4().hex[:10]}"
    try:
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    except Exception as exc:  # any failure means no PostgreSQL here
        admin.dispose()
        if os.environ.get("SLIMFORMER_REQUIRE_PG") == "1" or os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"PostgreSQL unreachable: {exc}")
        pytest.skip(f"PostgreSQL unreachable: {type(exc).__name__}")
    try:
        yield make_url(PG_URL).update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(
            hide_password=False
        )
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("home")


@pytest.fixture(scope="module")
def settings(home) -> Settings:
    return Settings(home=home, database_url=f"sqlite:///{home / 'slimformer.db'}", auto_migrate=True)


@pytest.fixture(scope="module")
def server(settings) -> Iterator[LiveServer]:
    with LiveServer(settings) as live:
        yield live


@pytest.fixture(scope="module")
def client(server) -> Iterator[httpx.Client]:
    with server.client() as c:
        yield c


def upload_teacher(client: httpx.Client, folder: Path) -> str:
    """Upload a model folder as a zip; its teacher id."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for file in sorted(folder.iterdir()):
            archive.write(file, file.name)
    response = client.post("/v1/teachers", files={"file": ("tiny-teacher.zip", buffer.getvalue())})
    assert response.status_code == 201, response.text
    return response.json()["id"]


@pytest.fixture(scope="module")
def job_spec(client, task_csv, tiny_teacher_dir) -> dict:
    with task_csv.open("rb") as f:
        dataset = client.post("/v1/datasets", files={"file": ("tiny.csv", f)})
    assert dataset.status_code == 201, dataset.text
    return {"name": "tiny", "teacher": upload_teacher(client, tiny_teacher_dir), "dataset": dataset.json()["id"],
            "corpus": None, "preset": "tiny", "search": {"strategy": "sample", "finalists": 2},
            "latency": {"seq_len": 32}, "budgets": {"params_m": 1000}}  # counts size: a trimmed vocabulary


def submit(client: httpx.Client, spec: dict) -> str:
    response = client.post("/v1/jobs", json=spec)
    assert response.status_code == 201, response.text
    return response.json()["id"]


def events(server: LiveServer, job_id: str) -> list[str]:
    with server.session() as session:
        return list(session.scalars(select(JobEvent.message).where(JobEvent.job_id == job_id).order_by(JobEvent.id)))


def candidates(client: httpx.Client, job_id: str) -> list[dict]:
    page = client.get(f"/v1/jobs/{job_id}/candidates", params={"limit": 50}).json()
    return page["items"]


@pytest.fixture(scope="module")
def finished_job(server, client, settings, job_spec) -> str:
    """A job submitted over HTTP and run to the end by an in-process worker (no Ray)."""
    job_id = submit(client, job_spec)
    worker = Worker(settings, owner="first", lease_seconds=10, use_ray=False)
    try:
        assert worker.run_once() == job_id
        assert worker.run_once() is None  # nothing else queued
    finally:
        worker.close()
    return job_id


def test_worker_runs_a_submitted_job_and_its_model_downloads(finished_job, client, tmp_path):
    job = client.get(f"/v1/jobs/{finished_job}").json()
    assert job["status"] == "succeeded", job["error"]
    assert job["progress"] == 1.0 and job["stage"] == "report" and job["attempts"] == 1
    found = candidates(client, finished_job)
    assert len(found) == 2 and len({c["arch_hash"] for c in found}) == 2
    for c in found:
        assert c["state"] == "exported" and c["measured_latency_ms"] > 0 and c["predicted_latency_ms"] > 0
        assert c["params"] > 0 and c["memory_mb"] > 0 and 0 <= c["dev_accuracy"] <= 1
        assert c["formats"] == ["hf", "onnx", "onnx-int8"]
        assert c["metrics"]["latency_onnx_ms"] > 0 and "folder" not in c["metrics"]  # no server paths
        int8 = c["metrics"]["variants"]["int8"]  # the int8 variant's own figures, in candidates.metrics
        assert int8["format"] == "onnx-int8" and 0 <= int8["test_accuracy"] <= 1 and int8["latency_ms"] > 0
        assert c["metrics"]["vocab_size"] < c["metrics"]["vocab"]["teacher_vocab_size"] and "oov_rate" in c["metrics"]
    assert any(c["pareto"] for c in found)

    best = next(c for c in found if c["pareto"])
    response = client.get(f"/v1/jobs/{finished_job}/candidates/{best['id']}/artifact", params={"format": "onnx"})
    assert response.status_code == 200
    assert hashlib.sha256(response.content).hexdigest() == response.headers["X-Content-SHA256"]
    with zipfile.ZipFile(io.BytesIO(response.content)) as zf:
        names = {Path(n).name for n in zf.namelist()}
        zf.extractall(tmp_path)
    assert {"model.onnx", "config.json", "tokenizer.json", "README.md", "metrics.json"} <= names
    assert not names & {"model.safetensors", "model.int8.onnx"}  # the onnx zip carries only its own weights

    import slimformer

    model = slimformer.load(tmp_path / f"{best['id']}-onnx", backend="onnx")
    labels = model.predict(["the movie was great", "the food was awful"])
    assert len(labels) == 2 and set(labels) <= {"negative", "positive"}
    assert "## Variants" in (tmp_path / f"{best['id']}-onnx" / "README.md").read_text()


def test_a_finished_job_shows_the_teacher_and_the_baseline_as_reference_points(finished_job, client, tmp_path):
    job = client.get(f"/v1/jobs/{finished_job}").json()
    teacher, baseline = job["teacher"], job["baseline"]
    assert teacher["params"] > 0 and teacher["latency_ms"] > 0 and 0 <= teacher["dev_accuracy"] <= 1
    assert baseline["name"] == "TF-IDF + logistic regression" and baseline["latency_ms"] > 0
    assert 0.5 < baseline["dev_accuracy"] <= 1 and 0 <= baseline["test_accuracy"] <= 1  # words tell the classes apart
    assert baseline["threads"] == 1 and baseline["train_examples"] > 0
    listed = client.get("/v1/jobs").json()["items"]
    assert next(j for j in listed if j["id"] == finished_job)["baseline"] == baseline
    # The plot marks both, and every model card compares its model with them.
    assert b"TF-IDF + LR" in client.get(f"/v1/jobs/{finished_job}/pareto.svg").content
    found = candidates(client, finished_job)
    response = client.get(f"/v1/jobs/{finished_job}/candidates/{found[0]['id']}/artifact", params={"format": "hf"})
    with zipfile.ZipFile(io.BytesIO(response.content)) as zf:
        card = next(zf.read(n) for n in zf.namelist() if n.endswith("README.md")).decode()
    assert "## Compared with" in card and "| TF-IDF + logistic regression |" in card


def test_an_imbalanced_job_optimises_macro_f1_and_the_api_shows_it(server, client, settings, job_spec, tiny_task):
    """13% positives and no metric in the spec: the job resolves macro-F1, and the API shows it with the
    teacher's, the baseline's and every finalist's macro-F1 and per-class precision/recall."""
    rows = tiny_task.train + tiny_task.dev + tiny_task.test
    negatives, positives = [e for e in rows if e.label == 0], [e for e in rows if e.label == 1]
    kept = negatives + positives[: round(len(negatives) * 0.15)]  # 60 + 9: 13% positives
    lines = ["text,label"] + [f"{e.text},{tiny_task.labels[e.label]}" for e in kept]
    dataset = client.post("/v1/datasets", files={"file": ("skewed.csv", "\n".join(lines).encode())}).json()["id"]
    job_id = submit(client, {**job_spec, "name": "skewed", "dataset": dataset,
                             "search": {"strategy": "sample", "finalists": 1}})
    worker = Worker(settings, owner="skewed", lease_seconds=10, use_ray=False)
    try:
        assert worker.run_once() == job_id
    finally:
        worker.close()
    job = client.get(f"/v1/jobs/{job_id}").json()
    assert job["status"] == "succeeded", job["error"]
    assert job["spec"]["metric"] is None and job["metric"] == "macro_f1"
    for point in (job["teacher"], job["baseline"]):
        assert 0 <= point["dev_macro_f1"] <= 1 and 0 <= point["test_macro_f1"] <= 1
        assert set(point["dev_per_class"]) == {"negative", "positive"}
        assert point["dev_per_class"]["positive"]["support"] < point["dev_per_class"]["negative"]["support"]
    [finalist] = candidates(client, job_id)
    metrics = finalist["metrics"]
    assert finalist["pareto"] and 0 <= metrics["dev_macro_f1"] <= 1 and 0 <= metrics["test_macro_f1"] <= 1
    assert set(metrics["test_per_class"]["positive"]) == {"precision", "recall", "f1", "support"}
    assert "macro-F1" in client.get(f"/v1/jobs/{job_id}/pareto.svg").text
    # The model card's comparison shows the metric the job optimised.
    response = client.get(f"/v1/jobs/{job_id}/candidates/{finalist['id']}/artifact", params={"format": "hf"})
    with zipfile.ZipFile(io.BytesIO(response.content)) as zf:
        card = next(zf.read(n) for n in zf.namelist() if n.endswith("README.md")).decode()
    assert "The job optimised macro-F1" in card and "| dev macro-F1 | test macro-F1 |" in card


def test_a_job_s_optuna_study_lives_in_the_service_database(server, client, settings, job_spec):
    import optuna

    job_id = submit(client, {**job_spec, "name": "study", "search": {"strategy": "nsga2", "trials": 6,
                                                                     "finalists": 1}})
    worker = Worker(settings, owner="study", lease_seconds=10, use_ray=False)
    try:
        assert worker.run_once() == job_id
    finally:
        worker.close()
    assert client.get(f"/v1/jobs/{job_id}").json()["status"] == "succeeded"
    storage = optuna.storages.RDBStorage(settings.database_url)
    try:
        study = optuna.load_study(study_name=study_name_for(job_id), storage=storage)
        assert len(study.trials) == 6  # every trial of the job, in the database the service uses
    finally:
        storage.engine.dispose()
    assert not list(settings.home.rglob("study.db"))  # and no study file on the worker's disk


def test_the_worker_records_its_latency_table_and_latency_budgets_are_then_checked_at_submission(
    finished_job, server, client, job_spec
):
    with server.session() as session:
        rows = session.scalars(select(LatencyTableRecord)).all()
        assert [(r.batch, r.seq_len, r.threads, r.runtime) for r in rows] == [(1, 32, 1, "torch")]
        assert rows[0].table["format"] == "slimformer-latency-table" and rows[0].hardware["cores"] > 0
    # The tiny space's fastest arch takes well over a microsecond on any machine: refused at once.
    refused = client.post("/v1/jobs", json={**job_spec, "budgets": {"latency_ms": 0.001}})
    assert refused.status_code == 422, refused.text
    assert refused.json()["detail"][0]["ctx"]["smallest"]["latency_ms"] > 0.001


def test_a_killed_worker_s_job_is_taken_over_and_gives_the_same_front(
    finished_job, server, client, settings, job_spec, home, tmp_path, monkeypatch
):
    """SIGKILL a worker mid-job; a second worker, on a real local Ray, resumes it after the lease.

    The second worker is this suite's one Ray test: it trains the remaining blocks and the
    finalists as Ray tasks (Ray's processes get a HOME holding ray_bootstrap_config.yaml, so
    nothing probes cloud metadata).

    The front is compared with the uninterrupted `finished_job` (same spec and seed). Dev
    accuracies are deterministic (seeded training, resumed blocks restart from checkpoints with
    per-step seeds), but measured latencies are wall-clock figures on a shared machine, so two
    runs can order two close candidates differently. Hence: the flagged front must be exactly the
    front of the job's own measurements; accuracies must match per architecture; the front on a
    deterministic latency stand-in (parameters) must match; and wherever both runs order the
    candidates' latencies the same, the flagged fronts themselves must be equal.
    """
    job_id = submit(client, job_spec)
    env = {**os.environ, "SLIMFORMER_HOME": str(home), "SLIMFORMER_DATABASE_URL": settings.database_url,
           "SLIMFORMER_TORCH_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    log = (tmp_path / "victim.log").open("w")
    victim = subprocess.Popen(
        [sys.executable, "-m", "slimformer.workers.worker", "--lease", "3", "--poll", "0.2", "--no-ray",
         "--owner", "victim"], env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        stage = wait_for_stage(server, job_id, {"blocks", "fewshot", "search", "finalize", "report"}, victim)
        time.sleep(0.4 if stage == "blocks" else 0)  # into the stage: some blocks trained, some checkpointed
    finally:
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait()
        log.close()
    with server.session() as session:
        killed = session.get(Job, job_id)
        assert killed.status == "running" and killed.lease_owner == "victim", (tmp_path / "victim.log").read_text()

    monkeypatch.setenv("SLIMFORMER_HOME", str(home))
    # In-process and without Ray: a second local Ray start inside the same pytest process (after
    # test_pipeline's) timed out waiting for its GCS in full-suite runs. Ray itself is covered by
    # test_pipeline (blocks as Ray tasks) and test_cluster (a two-node cluster running a job).
    rescuer = Worker(settings, owner="rescuer", lease_seconds=3, poll_seconds=0.2, use_ray=False)
    try:
        deadline = time.monotonic() + 300
        while (claimed := rescuer.run_once()) is None:  # claimable once the victim's lease runs out
            assert time.monotonic() < deadline, "the abandoned job was never taken over"
            time.sleep(0.2)
    finally:
        rescuer.close()
    assert claimed == job_id

    job = client.get(f"/v1/jobs/{job_id}").json()
    assert job["status"] == "succeeded" and job["attempts"] == 2, job["error"]
    history = events(server, job_id)
    assert "job claimed by victim" in history
    assert any(m.startswith("job taken over (attempt 2, resuming after") and m.endswith("by rescuer") for m in history)

    resumed, reference = candidates(client, job_id), candidates(client, finished_job)
    assert len(resumed) == len({c["arch_hash"] for c in resumed}) == len(reference)
    by_hash = {c["arch_hash"]: c for c in reference}
    assert set(by_hash) == {c["arch_hash"] for c in resumed}
    for c in resumed:
        assert c["dev_accuracy"] == by_hash[c["arch_hash"]]["dev_accuracy"], c["arch_hash"]
        assert c["test_accuracy"] == by_hash[c["arch_hash"]]["test_accuracy"], c["arch_hash"]

    def flagged(cands: list[dict]) -> set[str]:
        return {c["arch_hash"] for c in cands if c["pareto"]}

    def front(cands: list[dict], latency: str) -> set[str]:
        return set(measured_front([{"hash": c["arch_hash"], "dev_accuracy": c["dev_accuracy"],
                                    "latency_ms": c[latency]} for c in cands]))

    assert flagged(resumed) == front(resumed, "measured_latency_ms")
    assert flagged(reference) == front(reference, "measured_latency_ms")
    assert front(resumed, "params") == front(reference, "params")
    order = [sorted(by_hash, key=lambda h, cs=cs: {c["arch_hash"]: c for c in cs}[h]["measured_latency_ms"])
             for cs in (resumed, reference)]
    if order[0] == order[1]:
        assert flagged(resumed) == flagged(reference)


def wait_for_stage(server: LiveServer, job_id: str, stages: set[str], process: subprocess.Popen,
                   timeout: float = 300) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "the worker process died"
        with server.session() as session:
            stage = session.scalar(select(Job.stage).where(Job.id == job_id))
        if stage in stages:
            return stage
        time.sleep(0.02)
    raise AssertionError(f"job {job_id} never reached {stages}")


def run_in_thread(worker: Worker) -> tuple[threading.Thread, list]:
    result: list = []
    thread = threading.Thread(target=lambda: result.append(worker.run_once()), daemon=True)
    thread.start()
    return thread, result


def wait_until(predicate, timeout: float = 300, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_cancelling_a_running_job_ends_it_cancelled(backend, finished_job, job_spec, task_csv, tiny_teacher_dir, home,
                                                     tmp_path):
    with pg_schema() if backend == "postgresql" else nullcontext(f"sqlite:///{tmp_path / 'c.db'}") as url:
        # Its own database (and artifacts), the module's home: the task teacher is already cached.
        settings = Settings(home=home, database_url=url, auto_migrate=True, artifact_dir=tmp_path / "artifacts")
        with LiveServer(settings) as server, server.client() as client:
            with task_csv.open("rb") as f:
                dataset = client.post("/v1/datasets", files={"file": ("tiny.csv", f)}).json()["id"]
            teacher = upload_teacher(client, tiny_teacher_dir)  # its own database: its own upload
            job_id = submit(client, {**job_spec, "dataset": dataset, "teacher": teacher})
            worker = Worker(settings, owner="w", lease_seconds=10, use_ray=False)
            thread, result = run_in_thread(worker)
            try:
                wait_until(lambda: training(client, job_id), what="the job to train")
                assert client.post(f"/v1/jobs/{job_id}/cancel").json()["cancel_requested"] is True
                thread.join(timeout=300)
            finally:
                worker.stop()
                thread.join(timeout=300)
                worker.close()
            assert result == [job_id]
            job = client.get(f"/v1/jobs/{job_id}").json()
            assert job["status"] == "cancelled" and job["finished_at"] is not None
            assert "job cancelled" in events(server, job_id)
            assert candidates(client, job_id) == []


def training(client: httpx.Client, job_id: str) -> bool:
    """Whether the job is running past its first stage and not yet in its last."""
    job = client.get(f"/v1/jobs/{job_id}").json()
    return job["status"] == "running" and job["stage"] not in (None, "prepare", "report")


def test_a_worker_that_lost_its_lease_stops_without_writing(server, client, settings, job_spec):
    job_id = submit(client, job_spec)
    worker = Worker(settings, owner="loser", lease_seconds=10, use_ray=False)
    thread, result = run_in_thread(worker)
    try:
        wait_until(lambda: training(client, job_id), what="the job to train")
        with server.session() as session:  # another worker takes the job over
            session.execute(update(Job).where(Job.id == job_id).values(lease_owner="thief"))
        thread.join(timeout=300)
    finally:
        worker.stop()
        thread.join(timeout=300)
        worker.close()
    assert result == [job_id]
    job = client.get(f"/v1/jobs/{job_id}").json()
    assert job["status"] == "running" and job["error"] is None  # the loser neither failed nor finished it
    with server.session() as session:
        assert session.get(Job, job_id).lease_owner == "thief"
        leases.fail_job(session, job_id, "thief", "test over")  # keep the queue empty for later tests
