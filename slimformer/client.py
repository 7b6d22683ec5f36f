"""The client commands: talk to a slimformer server over HTTP only (httpx; no torch, no database).

    slimformer submit --teacher DIR --dataset FILE|NAME|ID [--preset quick] [--latency-ms 5] ...
    slimformer jobs | status ID [--watch] | pareto ID [--plot FILE] | cancel ID
    slimformer download ID CANDIDATE --format hf|onnx|onnx-int8 -o DIR

The server and key come from `--url`/`--key`, else SLIMFORMER_URL/SLIMFORMER_API_KEY, else the
credentials.json that `slimformer serve` writes in SLIMFORMER_HOME (~/.slimformer).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Any, TextIO

import httpx

from slimformer.errors import SlimformerError

DEFAULT_URL = "http://127.0.0.1:8000"
FINAL_STATUSES = ("succeeded", "failed", "cancelled")
UPLOAD_SUFFIXES = (".csv", ".jsonl", ".json")
_CHUNK = 1024 * 1024


class ClientError(SlimformerError):
    """A request failed; the message says why in the user's terms (with the API's own detail)."""


# --- connection ------------------------------------------------------------------------------------


def credentials_path() -> Path:
    return Path(os.environ.get("SLIMFORMER_HOME", "~/.slimformer")).expanduser() / "credentials.json"


def resolve_connection(url: str | None = None, key: str | None = None) -> tuple[str, str | None]:
    """The server URL and API key: flags, then environment, then credentials.json, then the default URL."""
    stored: dict[str, Any] = {}
    path = credentials_path()
    if path.is_file():
        try:
            stored = json.loads(path.read_text())
        except (OSError, ValueError):
            stored = {}
    url = url or os.environ.get("SLIMFORMER_URL") or stored.get("url") or DEFAULT_URL
    key = key or os.environ.get("SLIMFORMER_API_KEY") or stored.get("api_key")
    return url.rstrip("/"), key


class Client:
    """A thin HTTP client of the /v1 API.

    Args:
        url: the server, e.g. http://127.0.0.1:8000.
        key: the API key (bearer).
        timeout: seconds per request (downloads: per chunk).
    """

    def __init__(self, url: str, key: str | None, timeout: float = 60.0):
        self.url = url.rstrip("/")
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def close(self) -> None:
        self.http.close()

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Send a request and return the response, or raise ClientError for a failure.

        Raises:
            ClientError: cannot connect ("is `slimformer serve` running?"), or an HTTP error status
                (with the API's `detail`).
        """
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise self._transport_error(exc, f"{method} {path}") from None
        if response.is_error:
            raise ClientError(http_error_message(response))
        return response

    @contextmanager
    def stream(self, path: str, **kwargs: Any) -> Iterator[httpx.Response]:
        """GET `path` as a stream (for downloads); errors as in `request`."""
        try:
            with self.http.stream("GET", path, **kwargs) as response:
                if response.is_error:
                    response.read()
                    raise ClientError(http_error_message(response))
                yield response
        except httpx.TransportError as exc:
            raise self._transport_error(exc, f"GET {path}") from None

    def _transport_error(self, exc: httpx.TransportError, what: str) -> ClientError:
        if isinstance(exc, httpx.ConnectError):
            return ClientError(f"cannot connect to {self.url} ({exc}): is `slimformer serve` running?")
        if isinstance(exc, httpx.TimeoutException):
            return ClientError(f"{self.url} did not answer in time ({what})")
        return ClientError(f"{what} to {self.url} failed: {type(exc).__name__}: {exc}")

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.request(method, path, **kwargs).json()


def http_error_message(response: httpx.Response) -> str:
    """'HTTP 422: teacher: unknown teacher ...' from a FastAPI error body (message or error list)."""
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        detail = response.text.strip()[:500] or None
    if isinstance(detail, list):
        parts = []
        for item in detail:
            if isinstance(item, dict):
                loc = ".".join(str(x) for x in item.get("loc", []) if x != "body")
                parts.append(f"{loc}: {item.get('msg')}" if loc else str(item.get("msg")))
            else:
                parts.append(str(item))
        detail = "; ".join(parts)
    message = f"HTTP {response.status_code} {response.reason_phrase}"
    if response.status_code == 401:
        message += " (check --key, SLIMFORMER_API_KEY or credentials.json)"
    return f"{message}: {detail}" if detail else message


# --- commands --------------------------------------------------------------------------------------


def build_spec(args: argparse.Namespace, client: Client) -> dict[str, Any]:
    """The job spec from --spec FILE and the flags (flags win); uploads a local data set file."""
    spec: dict[str, Any] = json.loads(Path(args.spec).read_text()) if args.spec else {}
    for flag in ("name", "teacher", "preset", "seed", "corpus"):
        if getattr(args, flag) is not None:
            spec[flag] = getattr(args, flag)
    if args.corpus == "none":
        spec["corpus"] = None
    groups = {
        "budgets": {"latency_ms": args.latency_ms, "memory_mb": args.memory_mb, "params_m": args.params_m},
        "latency": {"seq_len": args.seq_len, "batch": args.batch, "threads": args.threads},
        "search": {"strategy": args.strategy, "trials": args.trials, "finalists": args.finalists},
    }
    for group, values in groups.items():
        given = {k: v for k, v in values.items() if v is not None}
        if given:
            spec[group] = {**spec.get(group, {}), **given}
    # A local teacher folder is named by its absolute path: the server does not share our cwd.
    if spec.get("teacher") and Path(spec["teacher"]).expanduser().is_dir():
        spec["teacher"] = str(Path(spec["teacher"]).expanduser().resolve())
    dataset = args.dataset or spec.get("dataset")
    if dataset and Path(dataset).expanduser().is_file() and Path(dataset).suffix.lower() in UPLOAD_SUFFIXES:
        spec["dataset"] = upload_dataset(client, Path(dataset).expanduser())
    elif dataset:
        spec["dataset"] = dataset
    return spec


def upload_dataset(client: Client, path: Path) -> str:
    """Upload a CSV/JSONL file, or reuse the tenant's earlier upload of the same bytes.

    Reusing keeps a retried submission idempotent: a second upload would get a new data set id,
    so the retry would differ from the first request and be refused as a reuse of its key.

    Returns:
        The data set id to put in the spec.
    """
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    page = client.json("GET", "/v1/datasets")  # the newest uploads (server default page)
    for item in page["items"]:
        if item["sha256"] == digest:
            print(f"using dataset {item['id']}, an earlier upload of {path.name}", file=sys.stderr)
            return item["id"]
    with path.open("rb") as f:
        doc = client.json("POST", "/v1/datasets", files={"file": (path.name, f)}, data={"name": path.stem})
    print(f"uploaded {path.name}: dataset {doc['id']} ({doc['rows']} rows, labels {', '.join(doc['labels'])})",
          file=sys.stderr)
    return doc["id"]


def cmd_submit(args: argparse.Namespace, client: Client) -> int:
    spec = build_spec(args, client)
    headers = {"Idempotency-Key": args.idempotency_key} if args.idempotency_key else {}
    response = client.request("POST", "/v1/jobs", json=spec, headers=headers)
    job = response.json()
    if response.headers.get("Idempotent-Replayed") == "true":
        print(f"(already submitted with this idempotency key: job {job['id']}, {job['status']})", file=sys.stderr)
    print(job["id"])
    return 0


def cmd_jobs(args: argparse.Namespace, client: Client) -> int:
    params: dict[str, Any] = {"limit": args.limit}
    if args.status:
        params["status"] = args.status
    page = client.json("GET", "/v1/jobs", params=params)
    rows = [(j["id"], j["name"] or "-", j["status"], j["stage"] or "-", f"{100 * j['progress']:.0f}%",
             _eta(j.get("eta_seconds")) if j["status"] == "running" else "-", j["created_at"][:19].replace("T", " "))
            for j in page["items"]]
    print(format_table(("id", "name", "status", "stage", "progress", "eta", "created"), rows))
    if page["total"] > len(rows):
        print(f"({len(rows)} of {page['total']} jobs; --limit for more)")
    return 0


def cmd_status(args: argparse.Namespace, client: Client) -> int:
    job = client.json("GET", f"/v1/jobs/{args.job_id}")
    if args.watch:
        job = watch(client, job, args.interval, sys.stdout)
    else:
        print(f"{job['id']}  {job['status']}  stage {job['stage'] or '-'}  {100 * job['progress']:.0f}%"
              + (f"  eta {_eta(job['eta_seconds'])}" if job["status"] == "running" else ""))
        for event in job.get("events", [])[-5:]:
            print(f"  {event['at'][11:19]}  {event['message']}")
    if job["status"] == "failed":
        print(f"job {job['id']} failed: {job.get('error') or 'no message'}", file=sys.stderr)
        return 1
    if job["status"] == "cancelled":
        print(f"job {job['id']} was cancelled", file=sys.stderr)
        return 1
    return 0


def watch(client: Client, job: dict[str, Any], interval: float, out: TextIO) -> dict[str, Any]:
    """Draw a progress bar (stage, percent, ETA) and new events until the job reaches a final status."""
    seen = {e["id"] for e in job.get("events", [])}
    tty = out.isatty()
    last: tuple[Any, ...] = ()
    while True:
        for event in job.get("events", []):
            if event["id"] not in seen:
                seen.add(event["id"])
                out.write(("\r\033[K" if tty else "") + f"  {event['at'][11:19]}  {event['message']}\n")
        line = progress_line(job)
        # Into a file or pipe: a line when the stage, status or whole percent changes, not per ETA tick.
        key = (job["status"], job["stage"], int(100 * job["progress"]))
        if tty:
            out.write("\r\033[K" + line)
        elif key != last:
            out.write(line + "\n")
        out.flush()
        last = key
        if job["status"] in FINAL_STATUSES:
            if tty:
                out.write("\n")
            return job
        time.sleep(interval)
        job = client.json("GET", f"/v1/jobs/{job['id']}")


def progress_line(job: dict[str, Any], width: int = 30) -> str:
    """`[#########.............]  31%  blocks  eta 2m05s  running`."""
    filled = int(round(width * job["progress"]))
    eta = f"  eta {_eta(job.get('eta_seconds'))}" if job["status"] == "running" else ""
    return f"[{'#' * filled}{'.' * (width - filled)}] {100 * job['progress']:3.0f}%  {job['stage'] or '-'}{eta}  " \
           f"{job['status']}"


def _eta(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def cmd_pareto(args: argparse.Namespace, client: Client) -> int:
    # The front is at most `finalists` (<= 20) candidates: one default page holds it.
    page = client.json("GET", f"/v1/jobs/{args.job_id}/candidates",
                       params={"pareto": "true", "sort": "measured_latency_ms"})
    rows = [(c["id"], c["arch_hash"], _num(c["params"] and c["params"] / 1e6, "{:.3f}M"),
             _num(c["measured_latency_ms"], "{:.2f}"), _num(c["dev_accuracy"], "{:.3f}"),
             _num(c["test_accuracy"], "{:.3f}"), ",".join(c.get("formats", [])) or "-")
            for c in page["items"]]
    if args.json:
        print(json.dumps(page["items"], indent=2))
    elif rows:
        print(format_table(("candidate", "hash", "params", "latency ms", "dev acc", "test acc", "formats"), rows))
        if page["total"] > len(rows):
            print(f"({len(rows)} of {page['total']} Pareto candidates shown)")
    else:
        print("no Pareto candidates yet (the front is set when the job's report stage is done)")
    if args.plot:
        plot = Path(args.plot)
        suffix = plot.suffix.lower().lstrip(".") or "png"
        if suffix not in ("png", "svg"):
            raise ClientError(f"--plot {plot}: use a .png or .svg file name")
        plot.write_bytes(client.request("GET", f"/v1/jobs/{args.job_id}/pareto.{suffix}").content)
        print(f"plot written to {plot}", file=sys.stderr if args.json else sys.stdout)
    return 0


def _num(value: float | int | None, fmt: str) -> str:
    return "-" if value is None else fmt.format(value)


def cmd_download(args: argparse.Namespace, client: Client) -> int:
    folder = download(client, args.job_id, args.candidate_id, args.format, Path(args.out))
    print(folder)
    return 0


def download(client: Client, job_id: str, candidate_id: str, fmt: str, out: Path) -> Path:
    """Stream the artifact zip, check it against X-Content-SHA256, unzip its model folder into `out`.

    Returns:
        `out`, now holding the model files (config.json, weights, tokenizer ...).

    Raises:
        ClientError: HTTP error, digest mismatch, or a zip entry that would land outside `out`.
    """
    out.mkdir(parents=True, exist_ok=True)
    path = f"/v1/jobs/{job_id}/candidates/{candidate_id}/artifact"
    with tempfile.TemporaryDirectory(dir=out, prefix=".download-") as tmp:
        zip_path = Path(tmp) / "artifact.zip"
        digest = hashlib.sha256()
        with client.stream(path, params={"format": fmt}) as response, zip_path.open("wb") as f:
            expected = response.headers.get("X-Content-SHA256")
            for chunk in response.iter_bytes(_CHUNK):
                digest.update(chunk)
                f.write(chunk)
        if expected and digest.hexdigest() != expected.lower():
            raise ClientError(f"download corrupted: sha256 {digest.hexdigest()} != X-Content-SHA256 {expected}")
        extract_model_zip(zip_path, out)
    return out


def extract_model_zip(zip_path: Path, out: Path) -> None:
    """Unzip the one top folder of an artifact zip into `out` (its files land directly in `out`)."""
    root = out.resolve()
    with zipfile.ZipFile(zip_path) as zf:
        for info in zf.infolist():
            parts = PurePosixPath(info.filename).parts
            inner = parts[1:] if len(parts) > 1 else parts
            if info.is_dir() or not inner:
                continue
            target = (root / Path(*inner)).resolve()
            if not target.is_relative_to(root) or PurePosixPath(info.filename).is_absolute():
                raise ClientError(f"refusing zip entry {info.filename!r}: it would land outside {out}")
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, target.open("wb") as dst:
                shutil.copyfileobj(src, dst, _CHUNK)


def cmd_cancel(args: argparse.Namespace, client: Client) -> int:
    job = client.json("POST", f"/v1/jobs/{args.job_id}/cancel")
    state = "cancel requested (the worker stops at its next check)" if job["status"] == "running" else job["status"]
    print(f"{job['id']}  {state}")
    return 0


def format_table(header: tuple[str, ...], rows: list[tuple[Any, ...]]) -> str:
    """Columns padded to their widest cell, a rule under the header."""
    cells = [tuple(str(v) for v in row) for row in [header, *rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


# --- argparse ------------------------------------------------------------------------------------


def run_client_command(args: argparse.Namespace) -> int:
    """Run a client command with a connected Client; ClientError -> message on stderr, exit 1."""
    url, key = resolve_connection(args.url, args.key)
    client = Client(url, key)
    try:
        return args.client_fn(args, client)
    except ClientError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        client.close()


def add_client_commands(sub: Any) -> None:
    """Register submit, jobs, status, pareto, download and cancel on the CLI's subparsers."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", help="server URL (default: SLIMFORMER_URL, credentials.json, " + DEFAULT_URL + ")")
    common.add_argument("--key", help="API key (default: SLIMFORMER_API_KEY or credentials.json)")

    def command(name: str, fn: Any, help: str) -> argparse.ArgumentParser:
        parser = sub.add_parser(name, help=help, parents=[common])
        parser.set_defaults(fn=run_client_command, client_fn=fn)
        return parser

    submit = command("submit", cmd_submit, "submit a compression job; prints its id")
    submit.add_argument("--spec", help="a JSON job spec; the flags below override its fields")
    submit.add_argument("--name")
    submit.add_argument("--teacher", help="built-in name (minilm-l6) or a BERT model folder on the server")
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
    submit.add_argument("--idempotency-key", help="retrying with the same key never makes a second job")

    jobs = command("jobs", cmd_jobs, "list your jobs, newest first")
    jobs.add_argument("--status", choices=["queued", "running", "succeeded", "failed", "cancelled"])
    jobs.add_argument("--limit", type=int, default=20)

    status = command("status", cmd_status, "a job's status; --watch draws a progress bar until it ends")
    status.add_argument("job_id")
    status.add_argument("--watch", action="store_true")
    status.add_argument("--interval", type=float, default=2.0, help="seconds between polls with --watch")

    pareto = command("pareto", cmd_pareto, "the job's Pareto-optimal candidates")
    pareto.add_argument("job_id")
    pareto.add_argument("--plot", help="also save the Pareto plot (.png or .svg)")
    pareto.add_argument("--json", action="store_true", help="print the candidates as JSON (for scripts)")

    download_p = command("download", cmd_download, "download a candidate's model and unzip it")
    download_p.add_argument("job_id")
    download_p.add_argument("candidate_id")
    download_p.add_argument("--format", default="hf", choices=["hf", "onnx", "onnx-int8"])
    download_p.add_argument("-o", "--out", required=True, help="folder to unzip the model into")

    cancel = command("cancel", cmd_cancel, "cancel a queued or running job")
    cancel.add_argument("job_id")
