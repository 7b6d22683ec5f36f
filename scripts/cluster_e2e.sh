#!/usr/bin/env bash
# Cluster mode without Docker: the docker-compose stack's parts as plain processes on this machine.
#
#   1. a fresh PostgreSQL database, `slimformer db upgrade`, `slimformer keys create --tenant cluster`
#   2. `ray start --head` and a second node `ray start --address` (one CPU each)
#   3. `slimformer worker` with RAY_ADDRESS (claims jobs, runs their Ray tasks on the cluster)
#   4. `slimformer serve --no-worker` on the same database and artifact folder
#   5. one tiny job through the client: submit, status --watch, pareto, download --format onnx
#   6. checks: the job succeeded, both Ray nodes stayed alive, and both ran tasks of the job
#
# Everything it starts is stopped on exit (also on failure or Ctrl-C), by process id: never
# `ray stop`, which stops every Ray on the machine, other people's included. The database it
# created is dropped. On failure the logs are printed.
#
# Usage: scripts/cluster_e2e.sh             (from anywhere; runs in the repository root)
# Environment:
#   SLIMFORMER_DATABASE_URL   use this (empty or migrated) PostgreSQL database, kept afterwards;
#                             default: a fresh database slimformer_cluster_<random>, dropped afterwards
#   SLIMFORMER_TEST_PG_URL    the server to create that database on (as the service tests use it;
#                             default postgresql+psycopg://postgres@127.0.0.1:5432/test)
#   SLIMFORMER_BIN            folder holding python, slimformer and ray (default ./.venv/bin)
#   CLUSTER_E2E_TEACHER       a teacher folder (default: a tiny random BERT made here)
#   CLUSTER_E2E_DATASET       a labelled .csv (default: the tests' tiny two-class task)
#   CLUSTER_E2E_JOB_TIMEOUT   seconds the job may take (default 360)
#   CLUSTER_E2E_KEEP=1        keep the work folder (logs, model) instead of deleting it
set -euo pipefail

# Given inputs are named relative to the caller's folder, not the repository's.
TEACHER="${CLUSTER_E2E_TEACHER:+$(realpath -e "$CLUSTER_E2E_TEACHER")}"
DATASET="${CLUSTER_E2E_DATASET:+$(realpath -e "$CLUSTER_E2E_DATASET")}"
cd "$(dirname "$0")/.."
REPO="$PWD"
BIN="${SLIMFORMER_BIN:-$REPO/.venv/bin}"
for tool in python slimformer ray; do
    if [ ! -x "$BIN/$tool" ]; then
        echo "cluster-e2e: $BIN/$tool not found (run \`make install\`, or set SLIMFORMER_BIN)" >&2
        exit 2
    fi
done
JOB_TIMEOUT="${CLUSTER_E2E_JOB_TIMEOUT:-360}"
PG_ADMIN_URL="${SLIMFORMER_TEST_PG_URL:-postgresql+psycopg://postgres@127.0.0.1:5432/test}"

# A short path: Ray puts unix sockets under its temp dir, and a socket path has ~107 bytes at most.
WORK="$(mktemp -d /tmp/sfc-XXXXXX)"
LOGS="$WORK/logs"
mkdir -p "$LOGS"
echo "cluster-e2e: work folder $WORK"

# Ray's processes read ~/ray_bootstrap_config.yaml: with a provider type in it they never ask cloud
# metadata addresses at start. HOME is ours for the whole run, so every Ray process (raylets'
# workers included) inherits it. The one other thing read from HOME, libpq's password file, stays
# where it was.
export PGPASSFILE="${PGPASSFILE:-${HOME:-}/.pgpass}"
export HOME="$WORK/home"
mkdir -p "$HOME"
printf 'provider:\n  type: local\n  head_ip: 127.0.0.1\n' >"$HOME/ray_bootstrap_config.yaml"
export RAY_USAGE_STATS_ENABLED=0
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
# The API and the worker share one artifact folder, as the compose stack shares a volume.
export SLIMFORMER_HOME="$WORK/slimformer"
unset RAY_ADDRESS SLIMFORMER_RAY_ADDRESS SLIMFORMER_URL SLIMFORMER_API_KEY SLIMFORMER_AUTO_MIGRATE

# Seconds since the start on every step, so a slow run shows where its time went.
step() { printf '\n==> [%4ds] %s\n' "$SECONDS" "$*"; }
fail() {
    echo "cluster-e2e: FAILED: $*" >&2
    exit 1
}
free_port() {
    "$BIN/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# --- teardown --------------------------------------------------------------------------------------

CREATED_DB=""
SERVE_PID="" WORKER_PID="" HEAD_PID="" NODE_PID="" SAMPLER_PID="" WATCH_PID=""

# SIGTERM, then SIGKILL if the process has not ended within $2 seconds. Only our own children.
stop_pid() {
    local pid="$1" grace="$2" i
    [ -n "$pid" ] || return 0
    kill -TERM "$pid" 2>/dev/null || return 0
    for ((i = 0; i < grace * 5; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.2
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

print_logs() {
    local f
    for f in "$LOGS"/*.log; do
        [ -f "$f" ] || continue
        printf '\n----- %s (last 60 lines) -----\n' "$(basename "$f")" >&2
        tail -n 60 "$f" >&2 || true
    done
    # Ray's own logs, where a raylet or worker died.
    for f in "$WORK"/ray-*/session_latest/logs/raylet.err "$WORK"/ray-*/session_latest/logs/gcs_server.err; do
        [ -s "$f" ] || continue
        printf '\n----- %s (last 20 lines) -----\n' "${f#"$WORK"/}" >&2
        tail -n 20 "$f" >&2 || true
    done
}

cleanup() {
    local status=$?
    trap - EXIT INT TERM
    set +e
    [ "$status" -ne 0 ] && print_logs
    echo "==> stopping what this run started"
    stop_pid "$WATCH_PID" 5
    stop_pid "$SAMPLER_PID" 5
    stop_pid "$SERVE_PID" 30
    # SIGTERM hands a running job back; the worker then disconnects from Ray.
    stop_pid "$WORKER_PID" 40
    # `ray start --block` takes its node's processes (raylet, GCS, agents) down with it.
    stop_pid "$NODE_PID" 30
    stop_pid "$HEAD_PID" 30
    # Anything of ours that outlived its node (a Ray worker process, say) names our unique temp dir
    # on its command line; nobody else's process can.
    local leftovers
    leftovers="$(pgrep -f -- "$WORK/ray-" || true)"
    if [ -n "$leftovers" ]; then
        echo "killing leftover Ray processes of this run: $(echo $leftovers)"
        # shellcheck disable=SC2086  # one pid per word
        kill -KILL $leftovers 2>/dev/null
    fi
    if [ -n "$CREATED_DB" ]; then
        "$BIN/python" - "$PG_ADMIN_URL" "$CREATED_DB" <<'PY' || echo "could not drop database $CREATED_DB" >&2
import sys

from sqlalchemy import create_engine, text

engine = create_engine(sys.argv[1], isolation_level="AUTOCOMMIT")
with engine.connect() as conn:
    # FORCE: a connection the pool of a killed process left behind must not keep the database.
    conn.execute(text(f'DROP DATABASE IF EXISTS "{sys.argv[2]}" WITH (FORCE)'))
engine.dispose()
print(f"dropped database {sys.argv[2]}")
PY
    fi
    if [ "${CLUSTER_E2E_KEEP:-0}" = "1" ]; then
        echo "work folder kept: $WORK"
    else
        rm -rf "$WORK"
    fi
    [ "$status" -eq 0 ] || echo "cluster-e2e: exit $status" >&2
    exit "$status"
}
trap cleanup EXIT
# The trap above runs on these too: bash only reacts between commands, so waits are in `wait`.
trap 'exit 130' INT
trap 'exit 143' TERM

# Run "$@" until it succeeds, at most $1 seconds; a dead $2 (pid) fails at once. The last try's
# output is shown on failure (it says why, e.g. a probe that cannot reach the GCS).
wait_until() {
    local seconds="$1" pid="$2" what="$3"
    shift 3
    local deadline=$((SECONDS + seconds)) out="$WORK/wait.out"
    until "$@" >"$out" 2>&1; do
        if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
            fail "$what: the process exited"
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            tail -n 20 "$out" >&2
            fail "$what: not ready within ${seconds}s"
        fi
        sleep 1
    done
}

# --- database --------------------------------------------------------------------------------------

if [ -n "${SLIMFORMER_DATABASE_URL:-}" ]; then
    step "using the database from SLIMFORMER_DATABASE_URL"
    [[ "$SLIMFORMER_DATABASE_URL" == postgresql* ]] || fail "SLIMFORMER_DATABASE_URL must be a postgresql:// URL"
else
    DB_NAME="slimformer_cluster_$(od -An -N4 -tx4 /dev/urandom | tr -d ' \n')"
    step "creating database $DB_NAME"
    export SLIMFORMER_DATABASE_URL
    SLIMFORMER_DATABASE_URL="$("$BIN/python" - "$PG_ADMIN_URL" "$DB_NAME" <<'PY'
import sys

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

admin_url, name = sys.argv[1:]
engine = create_engine(admin_url, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 5})
try:
    with engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
except Exception as exc:  # any failure means the same: no PostgreSQL to run the cluster on
    url = make_url(admin_url).render_as_string(hide_password=True)
    sys.exit(f"cluster-e2e: PostgreSQL at {url} is unusable: {type(exc).__name__}: {str(exc).strip()[:300]}")
finally:
    engine.dispose()
print(make_url(admin_url).set(database=name).render_as_string(hide_password=False))
PY
)" || fail "no database"
    CREATED_DB="$DB_NAME"
fi
"$BIN/slimformer" db upgrade
API_KEY="$("$BIN/slimformer" keys create --tenant cluster --name cluster-e2e)"
[[ "$API_KEY" == sf_* ]] || fail "keys create printed no key"

# --- inputs ----------------------------------------------------------------------------------------

if [ -z "$TEACHER" ] || [ -z "$DATASET" ]; then
    step "making a tiny teacher and data set"
    "$BIN/python" - "$WORK/inputs" <<'PY'
import csv
import importlib.util
import sys
from pathlib import Path

from slimformer.supernet.tiny import make_tiny_teacher

out = Path(sys.argv[1])
make_tiny_teacher(out / "teacher")
# The tests' tiny task: every word is in the tiny teacher's vocabulary. Loaded by path, since a
# top-level `tests` package of some installed distribution could shadow the repository's.
spec = importlib.util.spec_from_file_location("slimformer_tests_conftest", "tests/conftest.py")
conftest = importlib.util.module_from_spec(spec)
spec.loader.exec_module(conftest)
task = conftest.make_tiny_task()
with open(out / "reviews.csv", "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(["text", "label"])
    for split in (task.train, task.dev, task.test):
        writer.writerows([ex.text, task.labels[ex.label]] for ex in split)
PY
    TEACHER="${TEACHER:-$WORK/inputs/teacher}"
    DATASET="${DATASET:-$WORK/inputs/reviews.csv}"
fi

# --- Ray cluster -----------------------------------------------------------------------------------

GCS_PORT="$(free_port)"
CLUSTER_ADDRESS="127.0.0.1:$GCS_PORT"
# Flags of both nodes: one CPU each, so a job's parallel tasks must use both; a small object store
# (the tasks pass files, not objects); usage stats off. Each node has its own temp dir (Ray
# allows it per node), so its logs and sockets are its own.
NODE_FLAGS=(--block --num-cpus 1 --num-gpus 0 --object-store-memory 100000000 --disable-usage-stats)
# Ray's client server (only with ray[client] installed) defaults to port 10001 for every head on
# the machine: name a free port instead, so another Ray here cannot collide with ours.
HEAD_FLAGS=(--head --port "$GCS_PORT" --include-dashboard=false)
if "$BIN/python" -c 'import sys; from ray._private.utils import get_ray_client_dependency_error as e; sys.exit(e() is not None)' \
    2>/dev/null; then
    HEAD_FLAGS+=(--ray-client-server-port "$(free_port)")
fi

step "starting the Ray head on $CLUSTER_ADDRESS"
# --block: the command stays in the foreground of its node, so its pid is ours to stop, and its
# node's processes die with it.
"$BIN/ray" start "${HEAD_FLAGS[@]}" "${NODE_FLAGS[@]}" --temp-dir "$WORK/ray-head" >"$LOGS/ray-head.log" 2>&1 &
HEAD_PID=$!

# The probe reads the cluster's state from its GCS, as `ray status` does, without joining as a driver.
PROBE="$WORK/cluster_probe.py"
cat >"$PROBE" <<'PY'
"""alive ADDRESS N: exit 0 once N nodes are alive. sample ADDRESS FILE: record per-node CPU use until SIGTERM."""
import json
import os
import signal
import sys
import time

from ray.autoscaler.v2.sdk import get_cluster_status


def nodes(address):
    status = get_cluster_status(address)
    return {n.node_id: n for n in status.active_nodes + status.idle_nodes}


def cpu_used(node):
    return sum(u.used for u in (node.resource_usage.usage if node.resource_usage else []) if u.resource_name == "CPU")


command, address = sys.argv[1], sys.argv[2]
if command == "alive":
    sys.exit(0 if len(nodes(address)) >= int(sys.argv[3]) else 1)

out = sys.argv[3]
stopping = []
signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))
record = {"samples": 0, "min_alive": None, "max_cpu_used": {}, "all_busy_samples": 0}
while not stopping:
    try:
        alive = nodes(address)
    except Exception as exc:  # a failed poll counts as no node alive: the check below then fails
        print(f"probe: {exc}", file=sys.stderr)
        alive = {}
    record["samples"] += 1
    record["min_alive"] = len(alive) if record["min_alive"] is None else min(record["min_alive"], len(alive))
    for node_id, node in alive.items():
        record["max_cpu_used"][node_id] = max(record["max_cpu_used"].get(node_id, 0.0), cpu_used(node))
    if alive and all(cpu_used(node) > 0 for node in alive.values()):
        record["all_busy_samples"] += 1
    with open(out + ".tmp", "w") as f:
        json.dump(record, f)
    os.replace(out + ".tmp", out)
    time.sleep(0.5)
PY
wait_until 120 "$HEAD_PID" "Ray head" "$BIN/python" "$PROBE" alive "$CLUSTER_ADDRESS" 1

step "starting a second Ray node joining $CLUSTER_ADDRESS"
"$BIN/ray" start --address "$CLUSTER_ADDRESS" "${NODE_FLAGS[@]}" --temp-dir "$WORK/ray-node" \
    >"$LOGS/ray-node.log" 2>&1 &
NODE_PID=$!
wait_until 120 "$NODE_PID" "second Ray node" "$BIN/python" "$PROBE" alive "$CLUSTER_ADDRESS" 2

# `ray status` shows the autoscaler's view, which its monitor refreshes every few seconds: it can
# lag the GCS's node table the probe reads, so it is asked again until it catches up.
ray_status_nodes() {
    "$BIN/ray" status --address "$CLUSTER_ADDRESS" >"$LOGS/ray-status.log" 2>&1 || return 1
    [ "$(grep -cE '^ *1 node_[0-9a-f]+' "$LOGS/ray-status.log")" -eq 2 ]
}
wait_until 60 "" "ray status showing 2 nodes" ray_status_nodes
cat "$LOGS/ray-status.log"
echo "ray status: 2 nodes"

"$BIN/python" "$PROBE" sample "$CLUSTER_ADDRESS" "$WORK/cluster-usage.json" 2>"$LOGS/probe.log" &
SAMPLER_PID=$!

# --- worker and API --------------------------------------------------------------------------------

step "starting slimformer worker on the cluster (RAY_ADDRESS=$CLUSTER_ADDRESS)"
RAY_ADDRESS="$CLUSTER_ADDRESS" "$BIN/slimformer" worker --poll 0.5 >"$LOGS/worker.log" 2>&1 &
WORKER_PID=$!

API_PORT="$(free_port)"
export SLIMFORMER_URL="http://127.0.0.1:$API_PORT" SLIMFORMER_API_KEY="$API_KEY"
step "starting slimformer serve --no-worker on $SLIMFORMER_URL"
"$BIN/slimformer" serve --no-worker --port "$API_PORT" --log-level warning >"$LOGS/serve.log" 2>&1 &
SERVE_PID=$!
wait_until 90 "$SERVE_PID" "slimformer serve" "$BIN/python" -c \
    "import httpx, sys; sys.exit(httpx.get('$SLIMFORMER_URL/v1/health', timeout=2).status_code != 200)"
kill -0 "$WORKER_PID" 2>/dev/null || fail "slimformer worker exited during start"

# --- one job ---------------------------------------------------------------------------------------

step "submitting a tiny job (teacher $TEACHER, data set $DATASET)"
JOB_ID="$("$BIN/slimformer" submit --name cluster-e2e --teacher "$TEACHER" --dataset "$DATASET" --corpus none \
    --preset tiny --strategy nsga2 --trials 8 --finalists 2 --seq-len 32 --idempotency-key "cluster-e2e-$$")"
echo "job $JOB_ID"

step "watching job $JOB_ID (at most ${JOB_TIMEOUT}s)"
STARTED=$SECONDS
# In the background and waited for, so a signal stops the run at once (see the traps above).
timeout "$JOB_TIMEOUT" "$BIN/slimformer" status "$JOB_ID" --watch --interval 1 &
WATCH_PID=$!
WATCH_STATUS=0
wait "$WATCH_PID" || WATCH_STATUS=$?
WATCH_PID=""
[ "$WATCH_STATUS" -ne 124 ] || fail "job $JOB_ID did not finish within ${JOB_TIMEOUT}s"
[ "$WATCH_STATUS" -eq 0 ] || fail "job $JOB_ID did not succeed (status --watch exit $WATCH_STATUS)"
echo "job took $((SECONDS - STARTED))s"
# Whole output, then its first line: `| head -n 1` would close the pipe on the client (pipefail).
STATUS_LINE="$("$BIN/slimformer" status "$JOB_ID")"
STATUS_LINE="${STATUS_LINE%%$'\n'*}"
[[ "$STATUS_LINE" == "$JOB_ID  succeeded"* ]] || fail "unexpected status: $STATUS_LINE"
echo "status: $STATUS_LINE"

step "Pareto-optimal candidates"
"$BIN/slimformer" pareto "$JOB_ID"
CANDIDATE="$("$BIN/slimformer" pareto "$JOB_ID" --json | "$BIN/python" -c '
import json, sys
front = json.load(sys.stdin)
print(front[0]["id"] if front else "")')"
[ -n "$CANDIDATE" ] || fail "the job has no Pareto candidates"

step "downloading candidate $CANDIDATE as ONNX"
"$BIN/slimformer" download "$JOB_ID" "$CANDIDATE" --format onnx -o "$WORK/model"
[ -s "$WORK/model/model.onnx" ] || fail "the download has no model.onnx: $(ls "$WORK/model")"
echo "downloaded model.onnx ($(wc -c <"$WORK/model/model.onnx") bytes)"

# --- cluster checks --------------------------------------------------------------------------------

step "checking the cluster ran the job"
stop_pid "$SAMPLER_PID" 5
SAMPLER_PID=""
"$BIN/python" - "$WORK/cluster-usage.json" <<'PY' || fail "the job did not run on both Ray nodes"
import json
import sys

record = json.load(open(sys.argv[1]))
busy = {node[:12]: used for node, used in record["max_cpu_used"].items()}
print(f"{record['samples']} samples; fewest nodes alive: {record['min_alive']}; peak CPU used per node: {busy}; "
      f"samples with every node busy: {record['all_busy_samples']}")
if record["min_alive"] != 2 or len(busy) != 2:
    sys.exit("a Ray node was not alive for the whole run")
if not all(used > 0 for used in busy.values()):
    sys.exit("a Ray node never ran a task of the job")
print("both Ray nodes alive throughout and both ran tasks")
PY
grep -q "job $JOB_ID claimed" "$LOGS/worker.log" || fail "the worker log does not show it claimed job $JOB_ID"
grep -q "job $JOB_ID succeeded" "$LOGS/worker.log" || fail "the worker log does not show job $JOB_ID succeeded"
kill -0 "$SERVE_PID" 2>/dev/null || fail "slimformer serve died"
kill -0 "$WORKER_PID" 2>/dev/null || fail "slimformer worker died"

echo
echo "cluster-e2e: OK (job $JOB_ID succeeded on a 2-node Ray cluster, PostgreSQL, API without worker)"
