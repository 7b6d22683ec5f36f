"""The client commands: drive a slimformer server over HTTP (slimformer.client; no torch, no database).

    slimformer submit --teacher DIR|NAME|ID --dataset FILE|NAME|ID [--preset quick] [--latency-ms 5] ...
    slimformer jobs [--all] | status ID [--watch] | pareto ID [--plot FILE] | cancel ID
    slimformer download ID CANDIDATE --format hf|onnx|onnx-int8 -o DIR

The server and key come from `--url`/`--key`, else SLIMFORMER_URL/SLIMFORMER_API_KEY, else the
credentials.json that `slimformer serve` writes in SLIMFORMER_HOME (~/.slimformer). Failures are
ClientErrors, reported by slimformer.cli.errors like every other user error (exit code 2); a job
that ends failed or cancelled makes `status` exit 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from slimformer.cli.display import clock, eta, format_table, num, watch
from slimformer.cli.errors import UserError, about
from slimformer.client import DEFAULT_URL, SlimformerClient, resolve_connection
from slimformer.contracts.teacher_files import ARCHIVE_SUFFIXES

__all__ = ["add_remote_commands", "build_spec"]

UPLOAD_SUFFIXES = (".csv", ".jsonl", ".json")


def build_spec(args: argparse.Namespace, client: SlimformerClient) -> dict[str, Any]:
    """The job spec from --spec FILE and the flags (flags win); uploads a local teacher and data set."""
    spec: dict[str, Any] = {}
    if args.spec:
        with about(args.spec):
            spec = json.loads(Path(args.spec).read_text())
        if not isinstance(spec, dict):
            raise UserError(f"{args.spec}: a job spec must be a JSON object")
    for flag in ("name", "teacher", "preset", "seed", "corpus"):
        if getattr(args, flag) is not None:
            spec[flag] = getattr(args, flag)
    if args.corpus == "none":
        spec["corpus"] = None
    groups = {
        "budgets": {"latency_ms": args.latency_ms, "memory_mb": args.memory_mb, "params_m": args.params_m},
        "latency": {"seq_len": args.seq_len, "batch": args.batch, "threads": args.threads},
        "search": {"strategy": args.strategy, "trials": args.trials, "finalists": args.finalists,
                   "embedding_twins": args.embedding_twins},
    }
    for group, values in groups.items():
        given = {k: v for k, v in values.items() if v is not None}
        if given:
            spec[group] = {**spec.get(group, {}), **given}
    # A local teacher folder or archive is uploaded: over HTTP a job names a teacher by its upload id.
    teacher = spec.get("teacher")
    if isinstance(teacher, str) and (Path(teacher).expanduser().is_dir() or (
            Path(teacher).expanduser().is_file() and teacher.lower().endswith(ARCHIVE_SUFFIXES))):
        spec["teacher"] = upload_teacher(client, Path(teacher).expanduser())
    dataset = args.dataset or spec.get("dataset")
    if isinstance(dataset, str) and Path(dataset).expanduser().is_file() \
            and Path(dataset).suffix.lower() in UPLOAD_SUFFIXES:
        spec["dataset"] = upload_dataset(client, Path(dataset).expanduser())
    elif dataset:
        spec["dataset"] = dataset
    return spec


def upload_dataset(client: SlimformerClient, path: Path) -> str:
    """Upload a CSV/JSONL file, or reuse the tenant's earlier upload of the same bytes; its id."""
    with about(path):
        dataset, reused = client.ensure_dataset(path)
    if reused:
        print(f"using dataset {dataset.id}, an earlier upload of {path.name}", file=sys.stderr)
    else:
        print(f"uploaded {path.name}: dataset {dataset.id} ({dataset.rows} rows, labels {', '.join(dataset.labels)})",
              file=sys.stderr)
    return dataset.id


def upload_teacher(client: SlimformerClient, path: Path) -> str:
    """Upload a local model folder or archive, or reuse the tenant's earlier upload of the same folder; its id."""
    with about(path):
        if path.is_dir():
            teacher, reused = client.ensure_teacher(path)
        else:
            teacher, reused = client.upload_teacher(path), False
    if reused:
        print(f"using teacher {teacher.id}, an earlier upload of {path.name}", file=sys.stderr)
    else:
        print(f"uploaded {path.name}: teacher {teacher.id} ({teacher.model_type}, {teacher.size_bytes} bytes)",
              file=sys.stderr)
    return teacher.id


def cmd_submit(args: argparse.Namespace, client: SlimformerClient) -> int:
    job = client.submit_job(build_spec(args, client), idempotency_key=args.idempotency_key)
    if job.replayed:
        print(f"(already submitted with this idempotency key: job {job.id}, {job.status})", file=sys.stderr)
    print(job.id)
    return 0


def cmd_jobs(args: argparse.Namespace, client: SlimformerClient) -> int:
    if args.all:
        listed, total = list(client.iter_jobs(status=args.status)), None
    else:
        page = client.list_jobs(status=args.status, limit=args.limit)
        listed, total = page.items, page.total
    rows = [(j.id, j.name or "-", j.status, j.stage or "-", f"{100 * j.progress:.0f}%",
             eta(j.eta_seconds) if j.status == "running" else "-",
             j.created_at.strftime("%Y-%m-%d %H:%M:%S") if j.created_at else "-")
            for j in listed]
    print(format_table(("id", "name", "status", "stage", "progress", "eta", "created"), rows))
    if total is not None and total > len(rows):
        print(f"({len(rows)} of {total} jobs; --all for every one)")
    return 0


def cmd_status(args: argparse.Namespace, client: SlimformerClient) -> int:
    job = client.get_job(args.job_id)
    if args.watch:
        job = watch(client, job, args.interval, sys.stdout)
    else:
        print(f"{job.id}  {job.status}  stage {job.stage or '-'}  {100 * job.progress:.0f}%"
              + (f"  eta {eta(job.eta_seconds)}" if job.status == "running" else ""))
        for event in job.events[-5:]:
            print(f"  {clock(event.at)}  {event.message}")
    if job.status == "failed":
        print(f"job {job.id} failed: {job.error or 'no message'}", file=sys.stderr)
        return 1
    if job.status == "cancelled":
        print(f"job {job.id} was cancelled", file=sys.stderr)
        return 1
    return 0


def cmd_pareto(args: argparse.Namespace, client: SlimformerClient) -> int:
    plot = Path(args.plot) if args.plot else None
    suffix = (plot.suffix.lower().lstrip(".") or "png") if plot else ""
    if plot and suffix not in ("png", "svg"):
        raise UserError(f"--plot {plot}: use a .png or .svg file name")
    # The front is at most the finalists (the search's picks, <= 20, plus the teacher's plain cuts), usually
    # one page; every page is read anyway.
    front = list(client.iter_candidates(args.job_id, pareto=True, sort="measured_latency_ms"))
    if args.json:
        print(json.dumps([c.raw for c in front], indent=2))
    else:
        job = client.get_job(args.job_id)
        columns = score_columns(job.metric)
        titles = tuple(title for title, _ in columns)
        rows = [(c.id, c.arch_hash, num(c.params and c.params / 1e6, "{:.3f}M"), num(c.measured_latency_ms, "{:.2f}"),
                 *(num(c.raw.get(key, c.metrics.get(key)), "{:.3f}") for _, key in columns),
                 ",".join(c.formats) or "-") for c in front]
        if rows:
            print(format_table(("candidate", "hash", "params", "latency ms", *titles, "formats"), rows))
        else:
            print("no Pareto candidates yet (the front is set when the job's report stage is done)")
        if job.metric:
            print(f"\ntask metric: {METRIC_LABELS.get(job.metric, job.metric)} (the front optimises it on dev)")
        references = reference_rows(job, columns)
        if references:
            print("\ncompared with:")
            print(format_table(("reference", "params", "latency ms", *titles), references))
    if plot:
        image = client.pareto_plot(args.job_id, suffix)
        with about(plot):
            plot.write_bytes(image)
        print(f"plot written to {plot}", file=sys.stderr if args.json else sys.stdout)
    return 0


METRIC_LABELS = {"accuracy": "accuracy", "macro_f1": "macro-F1"}


def score_columns(metric: str | None) -> list[tuple[str, str]]:
    """(title, field) of the score columns: accuracy, then macro-F1 when the job optimises it."""
    columns = [("dev acc", "dev_accuracy"), ("test acc", "test_accuracy")]
    if metric == "macro_f1":
        columns += [("dev macro-F1", "dev_macro_f1"), ("test macro-F1", "test_macro_f1")]
    return columns


def reference_rows(job: Any, columns: list[tuple[str, str]]) -> list[tuple[str, ...]]:
    """Table rows for the job's reference points (the teacher, TF-IDF + logistic regression) it has."""
    rows = []
    for label, point in (("teacher", job.teacher), ("TF-IDF + LR", job.baseline)):
        if point:
            params = point.get("params")
            rows.append((label, num(params and params / 1e6, "{:.3f}M"), num(point.get("latency_ms"), "{:.2f}"),
                         *(num(point.get(key), "{:.3f}") for _, key in columns)))
    return rows


def cmd_download(args: argparse.Namespace, client: SlimformerClient) -> int:
    print(client.download(args.job_id, args.candidate_id, args.format, Path(args.out)))
    return 0


def cmd_cancel(args: argparse.Namespace, client: SlimformerClient) -> int:
    job = client.cancel_job(args.job_id)
    state = "cancel requested (the worker stops at its next check)" if job.status == "running" else job.status
    print(f"{job.id}  {state}")
    return 0


def run_remote_command(args: argparse.Namespace) -> int:
    """Run a client command with a client connected as the flags, environment or credentials say."""
    with SlimformerClient(*resolve_connection(args.url, args.key)) as client:
        return args.client_fn(args, client)


def add_remote_commands(sub: Any) -> None:
    """Register submit, jobs, status, pareto, download and cancel on the CLI's subparsers."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", help="server URL (default: SLIMFORMER_URL, credentials.json, " + DEFAULT_URL + ")")
    common.add_argument("--key", help="API key (default: SLIMFORMER_API_KEY or credentials.json)")

    def command(name: str, fn: Any, help: str) -> argparse.ArgumentParser:
        parser = sub.add_parser(name, help=help, parents=[common])
        parser.set_defaults(fn=run_remote_command, client_fn=fn)
        return parser

    submit = command("submit", cmd_submit, "submit a compression job; prints its id")
    submit.add_argument("--spec", help="a JSON job spec; the flags below override its fields")
    submit.add_argument("--name")
    submit.add_argument("--teacher", help="built-in name (minilm-l6), an uploaded teacher id, or a local model "
                        "folder or .zip/.tar/.tar.gz of one (uploaded first)")
    submit.add_argument("--dataset", help="built-in name, an uploaded data set id, or a local .csv/.jsonl to upload")
    submit.add_argument("--corpus", help="unlabelled text for distillation (built-in name, or 'none')")
    submit.add_argument("--preset", choices=["tiny", "quick", "standard"])
    submit.add_argument("--seed", type=int)
    submit.add_argument("--latency-ms", type=float, help="latency budget at the given shape")
    submit.add_argument("--memory-mb", type=float, help="memory budget")
    submit.add_argument("--params-m", type=float, help="parameter budget in millions")
    submit.add_argument("--seq-len", type=int, help="sequence length latency is measured at")
    submit.add_argument("--batch", type=int, help="batch size latency is measured at")
    submit.add_argument("--threads", type=int, help="CPU threads latency is measured with")
    submit.add_argument("--strategy", choices=["nsga2", "tpe", "random", "ctnas", "sample"])
    submit.add_argument("--trials", type=int)
    submit.add_argument("--finalists", type=int)
    submit.add_argument("--embedding-twins", type=int, metavar="N",
                        help="per full-rank finalist, N (0-3) twins with a factorised word table distilled from it")
    submit.add_argument("--idempotency-key", help="retrying with the same key never makes a second job")

    jobs = command("jobs", cmd_jobs, "list your jobs, newest first")
    jobs.add_argument("--status", choices=["queued", "running", "succeeded", "failed", "cancelled"])
    jobs.add_argument("--limit", type=int, default=20, help="jobs to show (default 20)")
    jobs.add_argument("--all", action="store_true", help="every job, read page by page")

    status = command("status", cmd_status, "a job's status; --watch draws a progress bar until it ends")
    status.add_argument("job_id")
    status.add_argument("--watch", action="store_true")
    status.add_argument("--interval", type=float, default=2.0, help="seconds between polls with --watch")

    pareto = command("pareto", cmd_pareto, "the job's Pareto-optimal candidates")
    pareto.add_argument("job_id")
    pareto.add_argument("--plot", help="also save the Pareto plot (.png or .svg)")
    pareto.add_argument("--json", action="store_true", help="print the candidates as JSON (for scripts)")

    download = command("download", cmd_download, "download a candidate's model and unzip it")
    download.add_argument("job_id")
    download.add_argument("candidate_id")
    download.add_argument("--format", default="hf", choices=["hf", "onnx", "onnx-int8"])
    download.add_argument("-o", "--out", required=True, help="folder to unzip the model into")

    cancel = command("cancel", cmd_cancel, "cancel a queued or running job")
    cancel.add_argument("job_id")
