"""The CLI against a live `slimformer serve` (embedded default: SQLite, credentials.json, one worker).

The server runs as a real process group (tests/serve_process.py; its worker with --no-ray, to keep
the suite light); the client commands run in-process through `slimformer.cli.main`, as a user's
shell would call them.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from slimformer.cli import main

from serve_process import ServeProcess, free_port


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Iterator[ServeProcess]:
    with ServeProcess(tmp_path_factory.mktemp("serve-home"), ray=False) as server:
        yield server


@pytest.fixture(scope="module")
def submit_flags(tiny_teacher_dir, task_csv) -> list[str]:
    return ["--teacher", str(tiny_teacher_dir), "--dataset", str(task_csv), "--corpus", "none", "--preset", "tiny",
            "--strategy", "sample", "--finalists", "2", "--seq-len", "32"]


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_serve_stores_a_working_key_readable_only_by_its_owner(served, capsys, monkeypatch):
    path = served.home / "credentials.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    doc = json.loads(path.read_text())
    assert doc["url"] == served.url and doc["tenant"] == "local" and doc["api_key"].startswith("sf_")
    # No flags and no environment: the client finds the server and key in SLIMFORMER_HOME.
    for name in ("SLIMFORMER_URL", "SLIMFORMER_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SLIMFORMER_HOME", str(served.home))
    code, out, err = run(capsys, "jobs")
    assert code == 0, err
    assert out.splitlines()[0].split() == ["id", "name", "status", "stage", "progress", "eta", "created"]


def test_submit_watch_pareto_and_download_a_model(served, submit_flags, task_csv, capsys, tmp_path):
    code, out, err = run(capsys, "submit", *served.flags(), *submit_flags, "--name", "cli", "--idempotency-key", "k1")
    assert code == 0, err
    job_id = out.strip()
    assert f"uploaded {task_csv.name}" in err and "teacher" in err
    # A retry with the same key and request gives the same job, not a second one.
    code, out, err = run(capsys, "submit", *served.flags(), *submit_flags, "--name", "cli", "--idempotency-key", "k1")
    assert code == 0 and out.strip() == job_id and "already submitted" in err

    code, out, _ = run(capsys, "jobs", *served.flags())
    assert code == 0 and job_id in out

    code, out, err = run(capsys, "status", *served.flags(), job_id, "--watch", "--interval", "0.5")
    assert code == 0, err + served.log.read_text()[-3000:]
    assert "succeeded" in out and "[" + "#" * 30 + "] 100%" in out and "stage finalize started" in out

    code, out, err = run(capsys, "pareto", *served.flags(), job_id, "--plot", str(tmp_path / "front.png"))
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["candidate", "hash", "params"]
    front = [line.split() for line in lines[2:lines.index("")]]
    assert front and all(row[-1] == "hf,onnx,onnx-int8" for row in front)
    # Then the reference points: the teacher and TF-IDF + logistic regression, measured the same way.
    assert "task metric: accuracy" in out  # a balanced task
    references = out[out.index("compared with:"):].splitlines()
    assert references[1].split()[:3] == ["reference", "params", "latency"]
    assert references[3].startswith("teacher") and references[4].startswith("TF-IDF + LR")
    assert (tmp_path / "front.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    code, out, _ = run(capsys, "pareto", *served.flags(), job_id, "--json")
    assert code == 0 and [c["id"] for c in json.loads(out)] == [row[0] for row in front]
    code, out, _ = run(capsys, "status", *served.flags(), job_id)
    assert code == 0 and out.startswith(f"{job_id}  succeeded  stage report  100%")

    candidate = front[0][0]
    code, out, err = run(capsys, "download", *served.flags(), job_id, candidate, "--format", "hf",
                         "-o", str(tmp_path / "model"))
    assert code == 0, err
    assert {"model.safetensors", "config.json", "tokenizer.json", "README.md"} <= {
        p.name for p in (tmp_path / "model").iterdir()}
    import slimformer

    labels = slimformer.load(tmp_path / "model").predict(["what a lovely film", "the room was dull"])
    assert len(labels) == 2 and set(labels) <= {"negative", "positive"}


def test_cancel_ends_a_job_cancelled(served, submit_flags, capsys):
    code, out, err = run(capsys, "submit", *served.flags(), *submit_flags)
    assert code == 0, err
    job_id = out.strip()
    code, out, err = run(capsys, "cancel", *served.flags(), job_id)
    assert code == 0 and job_id in out, err
    code, out, err = run(capsys, "status", *served.flags(), job_id, "--watch", "--interval", "0.5")
    assert code == 1 and "cancelled" in out and "was cancelled" in err


def assert_one_line_error(code: int, err: str, *expected: str) -> None:
    """A user's error: exit code 2 and one `error: ...` line on stderr, no traceback."""
    assert code == 2, err
    lines = err.strip().splitlines()
    assert "Traceback" not in err and len(lines) == 1 and lines[0].startswith("error: "), err
    for text in expected:
        assert text in lines[0], lines[0]


def test_errors_are_reported_with_the_api_s_detail(served, capsys, tmp_path):
    code, _, err = run(capsys, "jobs", "--url", served.url, "--key", "sf_not-a-real-key")
    assert_one_line_error(code, err, "HTTP 401", "invalid API key", "check --key")

    code, _, err = run(capsys, "status", *served.flags(), "01NOSUCHJOB0000000000000000")
    assert_one_line_error(code, err, "HTTP 404", "not found")

    code, _, err = run(capsys, "submit", *served.flags(), "--teacher", str(tmp_path / "missing"), "--dataset",
                       "rotten-tomatoes")
    assert_one_line_error(code, err, "HTTP 422", "teacher: unknown teacher")

    url = f"http://127.0.0.1:{free_port()}"
    code, _, err = run(capsys, "jobs", "--url", url, "--key", served.key)
    assert_one_line_error(code, err, f"error: cannot reach {url}: connection refused", "is `slimformer serve` running?")


def test_a_missing_api_key_is_one_line(served, capsys, monkeypatch, tmp_path):
    # No --key, no SLIMFORMER_API_KEY, and a SLIMFORMER_HOME without credentials.json.
    monkeypatch.delenv("SLIMFORMER_API_KEY", raising=False)
    monkeypatch.setenv("SLIMFORMER_HOME", str(tmp_path))
    code, _, err = run(capsys, "jobs", "--url", served.url)
    assert_one_line_error(code, err, "HTTP 401", "missing API key")


def test_bad_budgets_are_one_line(served, tiny_teacher_dir, capsys):
    from slimformer.client import SlimformerClient

    with SlimformerClient(served.url, served.key) as client:  # uploaded first, so stderr holds only the error
        teacher, _ = client.ensure_teacher(tiny_teacher_dir)
    common = [*served.flags(), "--teacher", teacher.id, "--dataset", "rotten-tomatoes", "--corpus", "none"]
    code, _, err = run(capsys, "submit", *common, "--latency-ms", "-1")
    assert_one_line_error(code, err, "HTTP 422", "budgets.latency_ms: Input should be greater than 0")
    # Well formed but below the smallest model the space holds: refused at submission, not at run time.
    code, _, err = run(capsys, "submit", *common, "--params-m", "0.00001")
    assert_one_line_error(code, err, "HTTP 422", "params_m", "smallest")
    code, _, err = run(capsys, "submit", *common, "--embedding-twins", "4")
    assert_one_line_error(code, err, "HTTP 422", "search.embedding_twins: Input should be less than or equal to 3")


def test_a_bad_key_through_the_script_prints_no_traceback(served, tmp_path):
    script = Path(sys.executable).with_name("slimformer")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "slimformer.cli"]
    env = {**os.environ, "SLIMFORMER_HOME": str(tmp_path)}
    result = subprocess.run(command + ["jobs", "--url", served.url, "--key", "sf_wrong"], env=env,
                            capture_output=True, text=True, timeout=120)
    assert_one_line_error(result.returncode, result.stderr, "HTTP 401")


def test_keys_and_db_commands(served, capsys, monkeypatch):
    monkeypatch.setenv("SLIMFORMER_HOME", str(served.home))
    monkeypatch.delenv("SLIMFORMER_DATABASE_URL", raising=False)
    code, out, err = run(capsys, "keys", "create", "--tenant", "ci", "--name", "pipeline")
    assert code == 0 and "shown only this once" in err
    key = out.strip()
    assert run(capsys, "jobs", "--url", served.url, "--key", key)[0] == 0
    code, out, _ = run(capsys, "keys", "revoke", key[:11])
    assert code == 0 and "revoked 1 key" in out
    code, _, err = run(capsys, "jobs", "--url", served.url, "--key", key)
    assert_one_line_error(code, err, "HTTP 401")
    code, _, err = run(capsys, "keys", "revoke", key[:11])
    assert_one_line_error(code, err, "no live API key")

    code, out, _ = run(capsys, "db", "current")
    assert code == 0 and out.strip() not in ("", "none")
    code, out, _ = run(capsys, "db", "check")
    assert code == 0 and "up to date" in out


def test_the_client_does_not_import_torch():
    code = "import sys, slimformer.cli, slimformer.client; slimformer.cli.build_parser(); print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() == "False", result.stderr


def test_sigterm_hands_the_running_job_back(served, submit_flags, capsys):
    """Stopping `slimformer serve` stops its worker, which releases its job for another worker."""
    code, out, err = run(capsys, "submit", *served.flags(), *submit_flags)
    assert code == 0, err
    job_id = out.strip()
    deadline = time.monotonic() + 300
    headers = {"Authorization": f"Bearer {served.key}"}
    while (job := httpx.get(f"{served.url}/v1/jobs/{job_id}", headers=headers).json())["stage"] is None:
        assert time.monotonic() < deadline and job["status"] in ("queued", "running"), job
        time.sleep(0.1)
    served.process.send_signal(signal.SIGTERM)
    assert served.process.wait(timeout=60) == 0
    with sqlite3.connect(served.home / "slimformer.db") as db:
        status, attempts, owner = db.execute(
            "SELECT status, attempts, lease_owner FROM jobs WHERE id = ?", (job_id,)).fetchone()
        messages = [m for (m,) in db.execute("SELECT message FROM job_events WHERE job_id = ?", (job_id,))]
    assert (status, attempts, owner) == ("queued", 0, None), messages
    assert "job released: worker shutting down" in messages
