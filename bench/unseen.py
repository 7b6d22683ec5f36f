"""What a default job gives on a task unlike the one it was tuned on, against the simple alternatives.

Reads a finished job's folder (run with `slimformer run` on a CSV from `bench/unseen_tasks.py`) and
writes one results file: the task's facts, the teacher, TF-IDF + logistic regression and every
finalist on the job's metric (macro-F1 on an imbalanced task) and accuracy, on the whole test split,
with the question a user asks answered per finalist: does it beat TF-IDF, and at what latency.
It also says how many of the search's own picks were picked on Rotten Tomatoes too (the quality
benchmark's front), since "the same few architectures whatever the task" would mean the search is
not looking at the task.

    python bench/unseen.py --run-dir /work/runs/unseen/news-topics --out bench/results/unseen_news_topics.json \
        --earlier-run /work/runs/unseen/news-topics-3epochs

`--previous` keeps an earlier results file's job beside the new one (what a recipe change did to the
same task's finalists), and carries its earlier runs over, so a re-run needs none of the old folders.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
CUT = "layer_dropped"  # the origin of the teacher's plain cuts


def _figures(point: dict[str, Any]) -> dict[str, Any]:
    keys = ("dev_accuracy", "test_accuracy", "dev_macro_f1", "test_macro_f1", "latency_ms", "params")
    return {k: point.get(k) for k in keys if k in point}


def _results(run_dir: Path) -> dict[str, Any]:
    """The job's results.json; for a job still running, what its finished stages wrote (no finalists yet)."""
    from slimformer.workers.context import read_json
    from slimformer.workers.references import reference_points

    if (run_dir / "results.json").exists():
        return read_json(run_dir / "results.json") | {"finished": True}
    refs, teacher = reference_points(run_dir), read_json(run_dir / "teacher.json")
    stages = {p.stem: read_json(p).get("seconds") for p in sorted((run_dir / "stages").glob("*.json"))}
    return {"spec": read_json(run_dir / "spec.json"), "metric": refs["metric"], "task": teacher["task"],
            "teacher": {**teacher["teacher"], **(refs["teacher"] or {})}, "baseline": refs["baseline"],
            "finalists": [], "stage_seconds": stages, "finished": False}


def earlier_run(run_dir: Path) -> dict[str, Any]:
    """An earlier job's teacher (with its training history) and TF-IDF point on the same task."""
    results = _results(run_dir)
    teacher = results["teacher"]
    return {"run_dir": str(run_dir), "teacher": _figures(teacher) | {
        k: teacher.get(k) for k in ("train_seconds", "epochs_run", "dev_history")},
        "tfidf_lr": _figures(results["baseline"] or {})}


def summarise(run_dir: Path, quality_file: Path) -> dict[str, Any]:
    from slimformer.data.registry import load_task
    from slimformer.metrics import metric_value, smallest_class_share

    results = _results(run_dir)
    spec, metric = results["spec"], results["metric"]
    task = load_task(spec["dataset"], seed=spec["seed"])
    counts = [sum(e.label == i for e in task.train + task.dev + task.test) for i in range(len(task.labels))]
    teacher, baseline = results["teacher"], results["baseline"]
    tfidf_test = metric_value(baseline, metric, "test")
    finalists = []
    for r in sorted(results["finalists"], key=lambda r: r["latency_ms"]):
        test = metric_value(r, metric, "test")
        finalists.append({
            "arch": r["short"], "origin": r.get("origin"), "pareto": r.get("pareto", False),
            **_figures(r), "speedup": round(teacher["latency_ms"] / r["latency_ms"], 2),
            "beats_tfidf_on_test": test is not None and tfidf_test is not None and test > tfidf_test,
            "share_of_teacher_test": round(test / metric_value(teacher, metric, "test"), 4) if test else None,
        })
    front = [f for f in finalists if f["pareto"]]
    # The teacher's plain cuts are finalists of every job by design (the user's own alternative); the
    # question is whether the search's own picks follow the task.
    quality_picks = {f["arch"] for f in json.loads(quality_file.read_text())["found"] if f.get("origin") != CUT}
    picks = [f for f in finalists if f["origin"] != CUT]
    best = max(finalists, key=lambda f: metric_value(f, metric, "dev")) if finalists else None
    return {
        "task": {
            "dataset": Path(spec["dataset"]).name, "labels": list(task.labels), "documents": sum(counts),
            "per_label": dict(zip(task.labels, counts, strict=True)),
            "smallest_class_share": round(smallest_class_share([e.label for e in task.train], len(task.labels)), 4),
            "median_chars": statistics.median(len(e.text) for e in task.train),
            "train": len(task.train), "dev": len(task.dev), "test": len(task.test),
            "max_length": results["task"].get("max_length", teacher.get("max_length")),
        },
        "metric": metric,
        "spec": {k: spec[k] for k in ("teacher", "corpus", "preset", "latency", "seed")},
        "teacher": _figures(teacher) | {k: teacher.get(k) for k in ("train_seconds", "epochs_run", "dev_history")},
        "baselines": {"tfidf_lr": _figures(baseline)},
        "finalists": finalists,
        "answers": {
            "job_finished": results["finished"],
            "teacher_test": metric_value(teacher, metric, "test"),
            "tfidf_test": tfidf_test,
            "teacher_beats_tfidf_on_test": metric_value(teacher, metric, "test") > tfidf_test,
            "best_by_dev": best and best["arch"],
            "best_test": best and metric_value(best, metric, "test"),
            "best_beats_tfidf_on_test": best and best["beats_tfidf_on_test"],
            "front_models_beating_tfidf": sum(f["beats_tfidf_on_test"] for f in front),
            "front_models": len(front),
            "search_picks": len(picks),
            "search_picks_also_picked_on_rotten_tomatoes": sum(f["arch"] in quality_picks for f in picks),
        },
        "job_seconds": results["stage_seconds"],
    }


def previous_job(previous: dict[str, Any], label: str, doc: dict[str, Any]) -> dict[str, Any]:
    """An earlier results file's job on the same task (an older recipe), beside this one: its figures,
    and for each arch both jobs fine-tuned (the teacher's cuts always are), the test metric in each."""
    from slimformer.metrics import metric_value

    metric = doc["metric"]
    now = {f["arch"]: f for f in doc["finalists"]}
    same_arch = [{"arch": f["arch"], "origin": f.get("origin"), "latency_ms": now[f["arch"]].get("latency_ms"),
                  "previous_test": metric_value(f, metric, "test"),
                  "test": metric_value(now[f["arch"]], metric, "test")}
                 for f in previous["finalists"] if f["arch"] in now]
    return {"label": label, **{k: previous.get(k) for k in ("teacher", "baselines", "finalists", "answers",
                                                             "job_seconds", "command")},
            "same_arch": same_arch}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run-dir", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--quality", type=Path, default=HERE / "results" / "quality.json")
    parser.add_argument("--earlier-run", type=Path, action="append", default=[],
                        help="another job's folder on the same task (another teacher recipe, say): its teacher "
                             "and TF-IDF figures are recorded beside this run's; repeatable")
    parser.add_argument("--previous", type=Path,
                        help="an earlier results file of this benchmark on the same task (it may be --out): its "
                             "job is kept under `previous_job`, with each arch both jobs trained compared, and "
                             "its earlier runs are carried over")
    parser.add_argument("--previous-label", default="the previous job",
                        help="what changed since the --previous job, for the reader")
    args = parser.parse_args()
    previous = json.loads(args.previous.read_text()) if args.previous else None
    doc = summarise(args.run_dir, args.quality)
    doc["earlier_runs"] = (previous or {}).get("earlier_runs", []) + [earlier_run(run) for run in args.earlier_run]
    extra = "".join(f" --earlier-run {run}" for run in args.earlier_run)
    if previous:
        doc["previous_job"] = previous_job(previous, args.previous_label, doc)
        extra += f" --previous {args.previous} --previous-label '{args.previous_label}'"
    doc["command"] = f"python bench/unseen.py --run-dir {args.run_dir} --out {args.out}{extra}"
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    print(json.dumps(doc["answers"], indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
