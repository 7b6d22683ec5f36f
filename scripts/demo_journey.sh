#!/usr/bin/env bash
# The user's journey, end to end, with the slimformer CLI:
#   start `slimformer serve` (embedded default: SQLite + one worker on local Ray) in the background,
#   submit the built-in job (MiniLM-L6 on Rotten Tomatoes), watch it, print the Pareto table,
#   download the most accurate Pareto model as ONNX, classify two sentences with onnxruntime alone
#   (no slimformer, no torch), and stop the server (also on error or Ctrl-C).
#
# Usage: scripts/demo_journey.sh            (from anywhere; runs in the repository root)
# Environment:
#   SLIMFORMER_HOME      where the database, artifacts and credentials go (default ./demo-home)
#   DEMO_PORT            the API's port (default 8765)
#   DEMO_PRESET          tiny | quick | standard (default quick: minutes on 2 CPU cores)
#   DEMO_STRATEGY        search strategy (default nsga2)
#   DEMO_TEACHER, DEMO_DATASET, DEMO_CORPUS
#                        another teacher folder, data set (name or local .csv/.jsonl) or corpus
#                        ("none": the task's own text only); defaults minilm-l6, rotten-tomatoes, news
set -euo pipefail

cd "$(dirname "$0")/.."
BIN="$PWD/.venv/bin"
export SLIMFORMER_HOME="${SLIMFORMER_HOME:-$PWD/demo-home}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
# The demo has the machine to itself: let the worker's own steps (teacher fine-tune, export) use
# two threads; Ray tasks still set one thread each.
export SLIMFORMER_TORCH_THREADS="${SLIMFORMER_TORCH_THREADS:-2}"
# The embedded default: no external database, and the client reads the URL and key that
# `slimformer serve` writes to $SLIMFORMER_HOME/credentials.json.
unset SLIMFORMER_DATABASE_URL SLIMFORMER_URL SLIMFORMER_API_KEY
PORT="${DEMO_PORT:-8765}"
URL="http://127.0.0.1:$PORT"
PRESET="${DEMO_PRESET:-quick}"
STRATEGY="${DEMO_STRATEGY:-nsga2}"
TEACHER="${DEMO_TEACHER:-minilm-l6}"
DATASET="${DEMO_DATASET:-rotten-tomatoes}"
CORPUS="${DEMO_CORPUS:-news}"
MODEL_DIR="$SLIMFORMER_HOME/best-model"
LOG="$SLIMFORMER_HOME/serve.log"
mkdir -p "$SLIMFORMER_HOME"

step() { printf '\n==> %s\n' "$*"; }

step "starting slimformer serve on $URL (log: $LOG)"
"$BIN/slimformer" serve --port "$PORT" >"$LOG" 2>&1 &
SERVER_PID=$!

WATCH_PID=""
stop_server() {
    local status=$?
    if [ -n "$WATCH_PID" ]; then
        kill -TERM "$WATCH_PID" 2>/dev/null || true
    fi
    if kill -0 "$SERVER_PID" 2>/dev/null; then
        echo "==> stopping the server"
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    if [ "$status" -ne 0 ]; then
        echo "demo failed (exit $status); the server log ends with:" >&2
        tail -n 40 "$LOG" >&2 || true
    fi
    exit "$status"
}
trap stop_server EXIT
trap 'exit 130' INT TERM

# Wait until the API answers /v1/health (database reachable and migrated).
for _ in $(seq 1 180); do
    if "$BIN/python" -c "import httpx, sys; sys.exit(httpx.get('$URL/v1/health', timeout=2).status_code != 200)" \
        2>/dev/null; then
        break
    fi
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
        echo "slimformer serve exited during start" >&2
        exit 1
    fi
    sleep 1
done
"$BIN/python" -c "import httpx; httpx.get('$URL/v1/health', timeout=2).raise_for_status()"

step "submitting a job (teacher $TEACHER, data set $DATASET, preset $PRESET)"
JOB_ID=$("$BIN/slimformer" submit --name demo --teacher "$TEACHER" --dataset "$DATASET" --corpus "$CORPUS" \
    --preset "$PRESET" --strategy "$STRATEGY" --idempotency-key "demo-$(date +%Y%m%d%H%M%S)")
echo "job $JOB_ID (also on the web dashboard: $URL/ui, log in with the key in $SLIMFORMER_HOME/credentials.json)"

step "watching job $JOB_ID"
# In the background and waited for: bash runs its traps only between commands, and `wait` is one
# that a signal interrupts, so Ctrl-C or a SIGTERM stops the demo (and the server) at once.
"$BIN/slimformer" status "$JOB_ID" --watch --interval 2 &
WATCH_PID=$!
wait "$WATCH_PID"
WATCH_PID=""

step "Pareto-optimal candidates, compared with the teacher and TF-IDF + logistic regression"
# `pareto` prints the front, then the job's reference points as the API reports them: the teacher
# (measured like the finalists) and the classical baseline fitted on the same split.
"$BIN/slimformer" pareto "$JOB_ID" --plot "$SLIMFORMER_HOME/pareto.png"

BEST_ID=$("$BIN/slimformer" pareto "$JOB_ID" --json | "$BIN/python" -c '
import json, sys
front = [c for c in json.load(sys.stdin) if c["dev_accuracy"] is not None]
print(max(front, key=lambda c: (c["dev_accuracy"], -(c["measured_latency_ms"] or 0)))["id"])')

step "downloading candidate $BEST_ID (the most accurate on the front) as ONNX into $MODEL_DIR"
rm -rf "$MODEL_DIR"
"$BIN/slimformer" download "$JOB_ID" "$BEST_ID" --format onnx -o "$MODEL_DIR"
ls -l "$MODEL_DIR"
# The model card says how the model compares with the teacher and the baseline.
sed -n '/^## Compared with/,/^## Files/p' "$MODEL_DIR/README.md" | sed '$d'

step "classifying two sentences with onnxruntime alone"
"$BIN/python" - "$MODEL_DIR" <<'PY'
import json
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

folder = Path(sys.argv[1])
config = json.loads((folder / "config.json").read_text())
tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
tokenizer.enable_truncation(int((config.get("tokenizer") or {}).get("max_length", 128)))
pad_id = int(config.get("pad_token_id", 0))
tokenizer.enable_padding(pad_id=pad_id, pad_token=tokenizer.id_to_token(pad_id) or "[PAD]")
texts = ["A warm, funny and beautifully acted film.", "A dull, lifeless mess that drags on forever."]
encoded = tokenizer.encode_batch(texts)
inputs = {
    "input_ids": np.array([e.ids for e in encoded], dtype=np.int64),
    "attention_mask": np.array([e.attention_mask for e in encoded], dtype=np.int64),
    "token_type_ids": np.array([e.type_ids for e in encoded], dtype=np.int64),
}
session = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
logits = session.run(["logits"], inputs)[0]
probs = np.exp(logits - logits.max(-1, keepdims=True))
probs /= probs.sum(-1, keepdims=True)
for text, row in zip(texts, probs):
    print(f"{config['labels'][int(row.argmax())]:>10}  ({row.max():.2f})  {text}")
assert "torch" not in sys.modules and "slimformer" not in sys.modules, "the model must load without them"
PY

step "done: the model is in $MODEL_DIR, the Pareto plot in $SLIMFORMER_HOME/pareto.png"
