"""A job as an ordered list of stages over one run folder, resumable at the first unfinished stage.

    prepare -> baseline -> states -> blocks -> fewshot -> task -> search -> finalize -> report

A stage is done when `stages/<name>.json` exists; it is written only after the stage's own
outputs, so a crash anywhere loses at most the stage in progress (and block training inside it
resumes from its checkpoints).
"""

from __future__ import annotations

import csv
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from slimformer.contracts.spec import JobSpec
from slimformer.metrics import LABELS, metric_value
from slimformer.workers.context import RunContext, read_json, write_json
from slimformer.workers.progress import Reporter
from slimformer.workers.references import reference_points
from slimformer.workers.stages.baseline import stage_baseline
from slimformer.workers.stages.blocks import stage_blocks
from slimformer.workers.stages.fewshot import stage_fewshot
from slimformer.workers.stages.finalize import stage_finalize
from slimformer.workers.stages.prepare import stage_prepare
from slimformer.workers.stages.report import stage_report
from slimformer.workers.stages.search import stage_search
from slimformer.workers.stages.states import stage_states
from slimformer.workers.stages.task import stage_task

StageFn = Callable[[RunContext], dict[str, Any]]

STAGES: list[tuple[str, StageFn]] = [
    ("prepare", stage_prepare),
    ("baseline", stage_baseline),
    ("states", stage_states),
    ("blocks", stage_blocks),
    ("fewshot", stage_fewshot),
    ("task", stage_task),
    ("search", stage_search),
    ("finalize", stage_finalize),
    ("report", stage_report),
]
STAGE_NAMES = [name for name, _ in STAGES]


def stage_marker(run_dir: Path, name: str) -> Path:
    return Path(run_dir) / "stages" / f"{name}.json"


def completed_stages(run_dir: Path) -> list[str]:
    return [name for name in STAGE_NAMES if stage_marker(run_dir, name).exists()]


def run_job(
    spec: JobSpec,
    run_dir: Path,
    reporter: Reporter | None = None,
    use_ray: bool = True,
    dataset_path: str | None = None,
    cache_dir: Path | None = None,
    optuna_storage_url: str | None = None,
    study_name: str = "search",
    teacher_name: str | None = None,
) -> dict[str, Any]:
    """Run (or resume) every stage of `spec` in `run_dir`; write results.json and candidates.csv.

    Args:
        optuna_storage_url: database for the search's Optuna study (the service passes its own);
            default a SQLite file in the run folder.
        study_name: the study's name in that database (unique per job).
        teacher_name: the teacher as the user named it (the service's uploaded-teacher id), shown in
            the results and model cards instead of `spec.teacher`, which the service points at the
            server folder it stored the upload in; default `spec.teacher`.

    Returns:
        The results document (also written to run_dir/results.json).
    """
    ctx = RunContext(spec, Path(run_dir), reporter or Reporter(), use_ray, dataset_path=dataset_path,
                     optuna_storage_url=optuna_storage_url, study_name=study_name, teacher_name=teacher_name)
    if cache_dir is not None:
        ctx.cache_dir = Path(cache_dir)
    write_json(ctx.path("spec.json"), spec.model_dump())
    for index, (name, fn) in enumerate(STAGES):
        marker = stage_marker(ctx.run_dir, name)
        if marker.exists():
            continue
        ctx.reporter.check_cancelled()
        ctx.reporter.stage_started(name, index, len(STAGES))
        started = time.perf_counter()
        summary = fn(ctx)
        summary["seconds"] = round(time.perf_counter() - started, 2)
        write_json(marker, summary)
        ctx.reporter.stage_done(name, summary)
    return write_results(ctx)


def write_results(ctx: RunContext) -> dict[str, Any]:
    teacher = read_json(ctx.path("teacher.json"))
    finalists = read_json(ctx.path("finalists.json"))
    refs = reference_points(ctx.run_dir)
    results = {
        "spec": ctx.spec.model_dump(),
        "metric": refs["metric"],
        "teacher": {**teacher["teacher"], **(refs["teacher"] or {})},
        "task": teacher["task"],
        "blocks": read_json(ctx.path("blocks.json"))["blocks"],
        "baseline": refs["baseline"],
        "finalists": finalists,
        "export": read_json(ctx.path("export.json")),
        "stage_seconds": {n: read_json(stage_marker(ctx.run_dir, n)).get("seconds") for n in STAGE_NAMES},
    }
    write_json(ctx.path("results.json"), results)
    columns = ["hash", "params", "memory_mb", "latency_ms", "dev_accuracy", "test_accuracy", "dev_macro_f1",
               "test_macro_f1", "within_budget", "short"]
    with open(ctx.path("candidates.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(finalists)
    return results


def format_table(results: dict[str, Any]) -> str:
    """A plain-text table of the teacher, the TF-IDF baseline and each finalist, on the job's dev metric."""
    metric = results.get("metric") or "accuracy"

    def score(r: dict[str, Any]) -> str:
        value = metric_value(r, metric)
        return "-" if value is None else f"{value:.3f}"

    t = results["teacher"]
    rows = [("teacher", f"{t['params'] / 1e6:.2f}M", f"{t['latency_ms']:.2f}", score(t), "")]
    b = results.get("baseline")
    if b:
        rows.append(("TF-IDF + LR", "-", f"{b['latency_ms']:.2f}", score(b), f"{b['features']} features"))
    for r in sorted(results["finalists"], key=lambda r: r["params"]):
        name = r["hash"] if r.get("within_budget", True) else f"{r['hash']} (over budget)"
        rows.append((name, f"{r['params'] / 1e6:.2f}M", f"{r['latency_ms']:.2f}", score(r), r["short"]))
    header = ("arch", "params", "latency ms", f"dev {LABELS[metric]}", "architecture")
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(5)]
    lines = ["  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)) for row in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
