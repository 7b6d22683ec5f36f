"""The reference points a job's results are compared with: its task teacher and the TF-IDF + logistic
regression baseline, read from what the `prepare` and `baseline` stages wrote to the run folder.

One place builds them, so the API (through the database reporter), results.json, the plot and the
model cards show the same figures. Each point is None until its stage has run (or when the
baseline could not be fitted).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from slimformer.workers.context import read_json

TEACHER_FILE = "teacher.json"
BASELINE_FILE = "baseline.json"
TEACHER_METRICS_FILE = "teacher_metrics.json"
METRIC_FILE = "metric.json"
BASELINE_NAME = "TF-IDF + logistic regression"
# Beside accuracy, each point carries macro-F1 and per-class precision/recall where measured.
CLASS_FIELDS = ("dev_macro_f1", "test_macro_f1", "dev_per_class", "test_per_class")


def _value(path: Path) -> dict[str, Any] | None:
    return read_json(path).get("value") if path.exists() else None


def teacher_point(run_dir: Path) -> dict[str, Any] | None:
    """The task teacher: dev/test accuracy, latency (measured like the finalists'), parameters."""
    path = Path(run_dir) / TEACHER_FILE
    if not path.exists():
        return None
    t = read_json(path)["teacher"]
    scores = _value(Path(run_dir) / TEACHER_METRICS_FILE) or {}
    # "given": the user's own classifier, used unchanged; "fine_tuned": slimformer fine-tuned a head;
    # "head": a folder already holding slimformer's mean-pooling head, only evaluated.
    return {"name": t["name"], "dev_accuracy": t["dev_accuracy"], "test_accuracy": t["test_accuracy"],
            "latency_ms": t["latency_ms"], "params": t["params"], "source": t.get("source", "fine_tuned"),
            **{k: scores.get(k) for k in CLASS_FIELDS}}


def baseline_point(run_dir: Path) -> dict[str, Any] | None:
    """TF-IDF + logistic regression: dev/test accuracy on the finalists' rows and one example's latency."""
    b = _value(Path(run_dir) / BASELINE_FILE)
    if b is None:
        return None
    return {"name": BASELINE_NAME, "dev_accuracy": b["dev_accuracy"], "test_accuracy": b["test_accuracy"],
            "latency_ms": b["latency_ms"], "fit_seconds": b["fit_seconds"], "train_examples": b["train_examples"],
            "features": b["features"], "threads": b["threads"], **{k: b.get(k) for k in CLASS_FIELDS}}


def job_metric(run_dir: Path) -> str | None:
    """The task metric the job optimises ("accuracy" or "macro_f1"), once the baseline stage resolved it."""
    path = Path(run_dir) / METRIC_FILE
    return read_json(path)["metric"] if path.exists() else None


def reference_points(run_dir: Path) -> dict[str, Any]:
    """{"teacher": point or None, "baseline": point or None, "metric": the job's metric or None}."""
    return {"teacher": teacher_point(run_dir), "baseline": baseline_point(run_dir), "metric": job_metric(run_dir)}


def card_rows(run_dir: Path, record: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows of a finalist's "Compared with" table: the teacher, the baseline (where fitted), this model."""
    refs = reference_points(run_dir)
    rows = []
    if refs["teacher"] is not None:
        how = {"given": "as given", "head": "its own head"}.get(refs["teacher"]["source"], "fine-tuned by slimformer")
        rows.append({**refs["teacher"], "name": f"teacher ({refs['teacher']['name']}, {how})"})
    if refs["baseline"] is not None:
        rows.append({**refs["baseline"], "params": None})
    rows.append({"name": f"this model ({record['hash']})", "params": record.get("params"),
                 "latency_ms": record.get("latency_ms"), "dev_accuracy": record.get("dev_accuracy"),
                 "test_accuracy": record.get("test_accuracy"), "dev_macro_f1": record.get("dev_macro_f1"),
                 "test_macro_f1": record.get("test_macro_f1")})
    return rows


def write_card_comparison(run_dir: Path, record: dict[str, Any], threads: int) -> None:
    """Add the "Compared with" table to an exported finalist's model card (README.md) and its size."""
    from slimformer.supernet.model_card import CARD_FILE, add_comparison

    folder = Path(record["folder"])
    if not (folder / CARD_FILE).exists():
        return
    metric = job_metric(run_dir) or "accuracy"
    note = (f"The job optimised {'macro-F1' if metric == 'macro_f1' else 'accuracy'}. Measured on the same "
            f"dev/test rows; latency is the median over repeated runs at {threads} thread(s): the transformers "
            "at the job's latency shape, TF-IDF + logistic regression on one text (tokenizing included).")
    path = add_comparison(folder, card_rows(run_dir, record), note, metric)
    if isinstance(record.get("size_bytes"), dict):
        record["size_bytes"][CARD_FILE] = path.stat().st_size
