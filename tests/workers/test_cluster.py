"""Cluster mode without Docker: scripts/cluster_e2e.sh runs one job on a 2-node Ray cluster.

The script starts a Ray head and a second node (`ray start`), `slimformer worker` with RAY_ADDRESS,
`slimformer serve --no-worker` on a fresh PostgreSQL database, and drives one tiny job through the
client. This test runs it as CI would and checks what it reports, and that it left nothing behind:
no process of its own, no database.

PostgreSQL is the server named by SLIMFORMER_TEST_PG_URL (as in tests/service). When it is
unreachable the test skips, unless SLIMFORMER_REQUIRE_PG=1 or CI=true, where it fails.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "cluster_e2e.sh"
PG_URL = os.environ.get("SLIMFORMER_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
# The whole run takes about two minutes on two busy cores; the job itself gets most of the budget.
RUN_TIMEOUT_S = 300
JOB_TIMEOUT_S = 200
# After a timeout the script is sent SIGTERM and given this long to stop its cluster and drop its database.
CLEANUP_GRACE_S = 90

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def pg_required() -> bool:
    return os.environ.get("SLIMFORMER_REQUIRE_PG") == "1" or os.environ.get("CI", "").lower() == "true"


def need_pg() -> None:
    """Skip (or, where PostgreSQL is required, fail) when the server is unreachable."""
    engine = create_engine(PG_URL, connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return
    except Exception as exc:  # any failure means the same here: no PostgreSQL for this test
        reason = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0]}"
    finally:
        engine.dispose()
    message = f"PostgreSQL at {make_url(PG_URL).render_as_string(hide_password=True)} is unreachable ({reason})"
    if pg_required():
        pytest.fail(message + "; required because SLIMFORMER_REQUIRE_PG=1 or CI=true")
    pytest.skip(message)


def run_script() -> tuple[int, str]:
    """Run the script to its end; on timeout SIGTERM it, so its trap still stops what it started."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("SLIMFORMER_DATABASE_URL", "SLIMFORMER_HOME", "SLIMFORMER_URL", "SLIMFORMER_API_KEY",
                        "RAY_ADDRESS", "CLUSTER_E2E_TEACHER", "CLUSTER_E2E_DATASET", "CLUSTER_E2E_KEEP")}
    env.update(SLIMFORMER_BIN=str(Path(sys.executable).parent), SLIMFORMER_TEST_PG_URL=PG_URL,
               CLUSTER_E2E_JOB_TIMEOUT=str(JOB_TIMEOUT_S))
    process = subprocess.Popen(["bash", str(SCRIPT)], cwd=REPO, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    try:
        out, _ = process.communicate(timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGTERM)
        try:
            out, _ = process.communicate(timeout=CLEANUP_GRACE_S)
        except subprocess.TimeoutExpired:
            process.kill()
            out, _ = process.communicate()
        pytest.fail(f"scripts/cluster_e2e.sh ran over {RUN_TIMEOUT_S}s:\n{out[-8000:]}")
    return process.returncode, out


def processes_naming(path: str) -> list[str]:
    """Command lines of the running processes that mention `path`."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # ended meanwhile, or not ours to read
            continue
        if path in cmdline:
            found.append(f"{proc.name}: {cmdline[:200]}")
    return found


def test_one_job_runs_end_to_end_on_a_two_node_ray_cluster_with_postgresql():
    need_pg()
    code, out = run_script()
    assert code == 0, f"scripts/cluster_e2e.sh failed (exit {code}):\n{out[-12000:]}"

    assert "ray status: 2 nodes" in out
    job = re.search(r"^job (\w+)$", out, re.MULTILINE)
    assert job, out[-4000:]
    assert f"status: {job.group(1)}  succeeded  stage report  100%" in out
    assert "downloaded model.onnx" in out
    assert "both Ray nodes alive throughout and both ran tasks" in out
    assert "cluster-e2e: OK" in out

    # Everything it started is gone: its Ray nodes and processes, its database, its work folder.
    work = re.search(r"^cluster-e2e: work folder (\S+)$", out, re.MULTILINE)
    assert work, out[:2000]
    assert not processes_naming(work.group(1)), processes_naming(work.group(1))
    assert not Path(work.group(1)).exists()
    database = re.search(r"^dropped database (slimformer_cluster_\w+)$", out, re.MULTILINE)
    assert database, out[-4000:]
    engine = create_engine(PG_URL)
    try:
        with engine.connect() as conn:
            left = conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :name"),
                                {"name": database.group(1)}).first()
    finally:
        engine.dispose()
    assert left is None, f"database {database.group(1)} was not dropped"
