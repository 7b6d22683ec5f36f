"""A whole `slimformer serve` (API, embedded worker, local Ray) SIGKILLed in the middle of a job and
restarted on the same home: the job completes, every candidate is there once, and the front is the
one an uninterrupted run of the same spec and seed gives.

Two servers, each on a home of its own (SQLite database, artifacts, Ray's HOME): the reference runs
the job to its end; the second gets the same job, is killed as a whole process group while the job is
in the chosen stage (found by polling the job's stage through the API), and is started again on the
same home. Its latency table and task teacher come from the reference's cache: latency is measured on
the machine (wall-clock), and the search steers by it, so two runs compare only with the same
measurements; what is tested is that an interruption changes nothing else.

The restarted embedded worker runs under the same stable name (one live holder at a time, by a lock
in the home), so it takes its dead predecessor's job back at once instead of waiting out the lease.

Killed in `blocks` (some blocks trained, some checkpointed, as Ray tasks), in `search` (mid-way through
the Optuna study in the service database) and in `finalize` (finalists fine-tuning as Ray tasks).
Slow (about three and a half minutes on two cores): four tiny jobs on a real Ray.
"""

from __future__ import annotations

import shutil
import sqlite3
import time
from collections import Counter
from pathlib import Path

import pytest

from slimformer.client import SlimformerClient
from slimformer.workers.pipeline import STAGE_NAMES

from same_front import duplicates, front_differences, job_candidates
from serve_process import ServeProcess, tagged_processes

pytestmark = pytest.mark.slow

SEED = 7
JOB_TIMEOUT_S = 600


def job_spec(client: SlimformerClient, teacher_dir: Path, task_csv: Path) -> dict:
    teacher, _ = client.ensure_teacher(teacher_dir)
    dataset, _ = client.ensure_dataset(task_csv)
    # nsga2 (the default) on the task-aware supernet: the Optuna study lives in the service database
    # and resumes from it; few-shot regions, block checkpoints and finalists all run as Ray tasks.
    return {"name": "crash", "teacher": teacher.id, "dataset": dataset.id, "corpus": None, "preset": "tiny",
            "seed": SEED, "search": {"trials": 12, "finalists": 2}, "latency": {"seq_len": 32}}


def wait_for(client: SlimformerClient, job_id: str, server: ServeProcess, done, what: str,
             timeout: float = JOB_TIMEOUT_S):
    """Poll the job through the API until `done(job)`; the job then. Fails if the server dies or the job ends."""
    deadline = time.monotonic() + timeout
    while True:
        job = client.get_job(job_id)
        if done(job):
            return job
        assert not job.finished, f"job ended {job.status} ({job.error}) before {what}\n{server.tail()}"
        assert server.process.poll() is None, f"the server died before {what}\n{server.tail()}"
        assert time.monotonic() < deadline, f"timed out waiting for {what} (job at {job.stage})\n{server.tail()}"
        time.sleep(0.1)


def db_rows(home: Path, sql: str, *args) -> list[tuple]:
    with sqlite3.connect(home / "slimformer.db") as conn:
        return conn.execute(sql, args).fetchall()


@pytest.fixture(scope="module")
def reference(tmp_path_factory, tiny_teacher_dir, task_csv):
    """The uninterrupted run: (its home, its candidates)."""
    home = tmp_path_factory.mktemp("reference-home")
    with ServeProcess(home) as server, SlimformerClient(server.url, server.key) as client:
        job = client.submit_job(job_spec(client, tiny_teacher_dir, task_csv))
        done = wait_for(client, job.id, server, lambda j: j.status == "succeeded", "the reference job's end")
        assert done.attempts == 1
        yield home, job_candidates(client, job.id)


@pytest.mark.parametrize("stage", ["blocks", "search", "finalize"])
def test_a_killed_server_resumes_its_job_to_the_same_front(stage, reference, tmp_path, tiny_teacher_dir, task_csv):
    ref_home, ref_candidates = reference
    home = tmp_path / "home"
    shutil.copytree(ref_home / "cache", home / "cache")  # the same latency table and task teacher
    server = ServeProcess(home)
    started = time.monotonic()
    try:
        server.start()
        with SlimformerClient(server.url, server.key) as client:
            job_id = client.submit_job(job_spec(client, tiny_teacher_dir, task_csv)).id
            # Into the stage: once its progress moved past the stage's start (a block trained, trials told).
            entered = wait_for(client, job_id, server, lambda j: j.stage == stage, f"stage {stage}")
            wait_for(client, job_id, server, lambda j: j.stage != stage or j.progress > entered.progress,
                     f"progress in stage {stage}")
            killed = client.get_job(job_id)
        server.kill_group()
        assert not tagged_processes(server.tag)
        assert killed.stage == stage, f"the job had left {stage} ({killed.stage}) before the kill"

        server.start()
        restarted = time.monotonic()
        with SlimformerClient(server.url, server.key) as client:
            done = wait_for(client, job_id, server, lambda j: j.finished, "the resumed job's end")
            assert done.status == "succeeded", f"{done.error}\n{server.tail()}"
            assert done.attempts == 2
            resumed = job_candidates(client, job_id)
        resumed_s = time.monotonic() - restarted
    finally:
        server.stop()
    print(f"\n[{stage}] killed at {killed.stage} {killed.progress:.2f}; resumed in {resumed_s:.0f} s, "
          f"whole test {time.monotonic() - started:.0f} s; killed outside the group: {server.escaped}")

    assert not duplicates(resumed)
    assert {c["arch_hash"] for c in resumed} == {c["arch_hash"] for c in ref_candidates}
    # Each stage finished once, and each finalist's download formats once each.
    messages = [m for (m,) in db_rows(home, "SELECT message FROM job_events WHERE job_id = ? ORDER BY id", job_id)]
    # Taken back by the restarted worker under its own name, not by a stranger after the lease.
    assert any(m.startswith(f"job reclaimed after its worker restarted (attempt 2, resuming after {stage})")
               for m in messages), messages
    done_events = Counter(m for m in messages if m.startswith("stage ") and " done in " in m)
    stages_done = Counter(m.split()[1] for m in done_events.elements())
    assert stages_done == Counter(STAGE_NAMES), stages_done
    artifacts = db_rows(home, "SELECT a.candidate_id, a.format, COUNT(*) FROM artifacts a JOIN candidates c "
                              "ON c.id = a.candidate_id WHERE c.job_id = ? GROUP BY a.candidate_id, a.format", job_id)
    assert artifacts and all(n == 1 for _, _, n in artifacts)
    assert front_differences(resumed, ref_candidates) == []
