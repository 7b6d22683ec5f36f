"""The service's reporter: a running job's stage, progress, events, candidates and artifacts go to the
database through the store's repositories (`slimformer.store`), under the worker's lease.

Every write names the job and the worker. Once a guarded write answers False (another worker took
the job over, or it was released) or the heartbeat thread says the lease ran out, the reporter
raises `LeaseLost` on every later call, so the pipeline stops at its next report without writing
more. Unguarded writes (candidates, artifacts, events, Pareto flags) share a transaction with a
guarded heartbeat, so they land only while this worker still holds the job.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from slimformer.errors import SlimformerError
from slimformer.store import artifacts, candidates, events, jobs, latency_tables, leases
from slimformer.store.db import session_scope
from slimformer.store.errors import DatabaseUnavailable
from slimformer.workers.context import read_json
from slimformer.workers.pipeline import STAGE_NAMES
from slimformer.workers.progress import JobCancelled, Reporter
from slimformer.workers.references import reference_points

log = logging.getLogger(__name__)

# Files of an exported model folder that only one download format needs; every other file (config,
# tokenizer, metrics.json, README.md) goes into every format so each zip is a loadable folder.
WEIGHT_FILES = {"hf": "model.safetensors", "onnx": "model.onnx", "onnx-int8": "model.int8.onnx"}
ARTIFACTS_SUBDIR = "artifacts"
# The database is written at most this often for progress, and read at most this often for a
# cancellation request: enough for a progress bar, cheap next to any training step.
MIN_WRITE_INTERVAL_S = 1.0
# Below this much progress in this attempt an ETA is mostly noise.
MIN_PROGRESS_FOR_ETA = 0.02


class LeaseLost(SlimformerError):
    """This worker no longer holds the job (taken over, released, or heartbeat lost): stop at once."""


class WorkerShutdown(BaseException):
    """The worker is shutting down: hand the job back. A BaseException so `except Exception` in a
    stage cannot swallow it."""


class DatabaseReporter(Reporter):
    """Reports one job's run to the database on behalf of the worker holding its lease.

    Args:
        session_factory: sessions of the service database.
        job_id: the claimed job.
        owner: the worker's lease owner name.
        artifact_dir: the artifact directory; artifact paths are stored relative to it.
        run_dir: the job's run folder (`finalists.json` is read from it after the report stage).
        lease_seconds: the lease length, renewed by every guarded write.
        lost: set (by the heartbeat thread) when the lease is lost; set here on a refused write.
        stopping: set when the worker shuts down; the next report raises `WorkerShutdown`.
        clock: monotonic seconds (tests pass a fake one).
    """

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        job_id: str,
        owner: str,
        artifact_dir: Path,
        run_dir: Path,
        lease_seconds: float = 30.0,
        lost: threading.Event | None = None,
        stopping: threading.Event | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.factory = session_factory
        self.job_id = job_id
        self.owner = owner
        self.artifact_dir = Path(artifact_dir)
        self.run_dir = Path(run_dir)
        self.lease_seconds = lease_seconds
        self.lost = lost or threading.Event()
        self.stopping = stopping or threading.Event()
        self.clock = clock
        self.stage: str | None = None
        self.stage_index = 0
        self.total = len(STAGE_NAMES)
        self.started_at = clock()
        self.start_progress: float | None = None  # overall progress when this attempt began
        self.reported = 0.0
        self.last_write = float("-inf")
        self.last_cancel_check = float("-inf")

    # --- the Reporter interface --------------------------------------------------------------------

    def stage_started(self, stage: str, index: int, total: int) -> None:
        self._check_alive()
        self.stage, self.stage_index, self.total = stage, index, total
        overall = index / total
        if self.start_progress is None:
            self.start_progress = overall

        def write(session: Session) -> bool:
            message = f"stage {stage} started ({index + 1}/{total})"
            return leases.set_stage(session, self.job_id, self.owner, stage, message) and self._set_progress(
                session, overall
            )

        self._write(write)

    def progress(self, stage: str, fraction: float, message: str = "") -> None:
        self._check_alive()
        # A stage may re-enter an earlier stage's lazy resource (the task teacher on resume): only
        # the running stage moves the bar, and the bar never moves back.
        if stage != self.stage:
            return
        overall = (self.stage_index + min(1.0, max(0.0, fraction))) / self.total
        now = self.clock()
        if now - self.last_write < MIN_WRITE_INTERVAL_S or overall <= self.reported:
            return
        self._write(lambda session: self._set_progress(session, overall), best_effort=True)

    def stage_done(self, stage: str, summary: dict[str, Any]) -> None:
        self._check_alive()
        overall = (self.stage_index + 1) / self.total

        def write(session: Session) -> bool:
            if not self._set_progress(session, overall):
                return False
            seconds = float(summary.get("seconds") or 0.0)
            events.add_event(session, self.job_id, f"stage {stage} done in {seconds:.1f} s", stage=stage,
                             data={"seconds": seconds})
            if stage == "baseline" and not self.publish_references(session):
                return False
            if stage == "report":
                self.publish_front(session)
            return True

        self._write(write)

    def candidate(self, record: dict[str, Any]) -> None:
        self._check_alive()
        folders = self._artifact_folders(record)

        def write(session: Session) -> bool:
            if not self._renew(session):
                return False
            candidate_id = upsert_record(session, self.job_id, record)
            for fmt, (relative, size) in folders.items():
                artifacts.upsert_artifact(session, candidate_id, fmt, relative, size)
            return True

        self._write(write)

    def event(self, message: str, level: str = "info") -> None:
        self._check_alive()

        def write(session: Session) -> bool:
            if not self._renew(session):
                return False
            events.add_event(session, self.job_id, message, level=level, stage=self.stage)
            return True

        self._write(write, best_effort=True)

    def warning(self, message: str) -> None:
        self.event(message, level="warning")

    def latency_table(self, key: str, table: dict[str, Any], space: Any) -> None:
        # Best effort: the record only lets the API refuse hopeless latency budgets earlier; a job
        # must not fail because it could not be written.
        def write(session: Session) -> bool:
            latency_tables.record_table(session, key, table, space)
            return True  # not job data: written whoever holds the lease

        self._write(write, best_effort=True)

    def check_cancelled(self) -> None:
        self._check_alive()
        now = self.clock()
        if now - self.last_cancel_check < MIN_WRITE_INTERVAL_S:
            return
        self.last_cancel_check = now
        try:
            with session_scope(self.factory) as session:
                cancelled = jobs.is_cancel_requested(session, self.job_id)
        except DatabaseUnavailable as exc:  # cannot tell now; the next check will
            log.warning("job %s: cancellation check skipped: %s", self.job_id, exc)
            return
        if cancelled:
            raise JobCancelled(f"job {self.job_id} was cancelled")

    # --- the worker's final writes ----------------------------------------------------------------

    def publish_references(self, session: Session) -> bool:
        """Record the teacher and baseline points of run_dir (call in a guarded write); False if the lease is lost."""
        return leases.set_references(session, self.job_id, self.owner, **reference_points(self.run_dir))

    def publish_front(self, session: Session) -> None:
        """Flag exactly the finalists marked `pareto` in run_dir/finalists.json (call in a guarded write)."""
        path = self.run_dir / "finalists.json"
        records = read_json(path) if path.exists() else []
        hashes = [r["hash"] for r in records if r.get("pareto")]
        candidates.set_pareto(session, self.job_id, candidates.ids_by_hash(session, self.job_id, hashes))

    def finish(self) -> None:
        """Mark the job succeeded, with its Pareto flags set in the same transaction.

        The flags (and the reference points) are set again here (not only after the report stage)
        because a worker that dies between the report stage's marker and its flags leaves a resumed
        run nothing to redo.

        Raises:
            LeaseLost: the job is no longer this worker's; nothing was written.
        """
        self._check_lease()

        def write(session: Session) -> bool:
            if not self._renew(session):
                return False
            self.publish_front(session)
            # Again here, like the front: a worker that died between the baseline stage's marker and
            # this write leaves a resumed run nothing to redo.
            if not self.publish_references(session):
                return False
            return leases.finish_job(session, self.job_id, self.owner)

        self._write(write)

    # --- helpers -----------------------------------------------------------------------------------

    def _check_lease(self) -> None:
        if self.lost.is_set():
            raise LeaseLost(f"job {self.job_id}: lease lost by {self.owner}")

    def _check_alive(self) -> None:
        self._check_lease()
        if self.stopping.is_set():
            raise WorkerShutdown(f"worker {self.owner} is shutting down")

    def _renew(self, session: Session) -> bool:
        return leases.heartbeat(session, self.job_id, self.owner, self.lease_seconds)

    def _set_progress(self, session: Session, overall: float) -> bool:
        self.last_write = self.clock()
        if not leases.set_progress(session, self.job_id, self.owner, overall, self._eta(overall)):
            return False
        self.reported = max(self.reported, overall)
        return True

    def _eta(self, overall: float) -> float | None:
        # Rate of this attempt only: a resumed job's earlier stages took no time here.
        done = overall - (self.start_progress or 0.0)
        if done < MIN_PROGRESS_FOR_ETA:
            return None
        return (self.clock() - self.started_at) * (1.0 - overall) / done

    def _write(self, fn: Callable[[Session], bool], best_effort: bool = False) -> None:
        """Run `fn` in one transaction; a False answer means the lease is lost (rolled back).

        Raises:
            LeaseLost: `fn` returned False.
            DatabaseUnavailable: the database is down and the write is not `best_effort`.
        """
        self._check_lease()
        try:
            with session_scope(self.factory) as session:
                if not fn(session):
                    raise LeaseLost(f"job {self.job_id}: lease lost by {self.owner}")
        except LeaseLost:
            self.lost.set()
            raise
        except DatabaseUnavailable as exc:
            if not best_effort:
                raise
            log.warning("job %s: progress not recorded: %s", self.job_id, exc)

    def _artifact_folders(self, record: dict[str, Any]) -> dict[str, tuple[str, int]]:
        """Per download format, a folder (relative path, bytes) holding what that format needs."""
        folder = record.get("folder")
        if not folder:
            return {}
        source = Path(folder)
        try:
            source.resolve().relative_to(self.artifact_dir.resolve())
        except ValueError:
            log.warning("job %s: %s is outside the artifact directory; no downloads registered", self.job_id, source)
            return {}
        out = {}
        for fmt in WEIGHT_FILES:
            if (source / WEIGHT_FILES[fmt]).is_file():
                target = source.parent / ARTIFACTS_SUBDIR / fmt
                size = link_format_folder(source, target, fmt)
                out[fmt] = (target.resolve().relative_to(self.artifact_dir.resolve()).as_posix(), size)
        return out


def upsert_record(session: Session, job_id: str, record: dict[str, Any]) -> str:
    """Insert or update the candidate of a pipeline record (finalist or scored), missing keys left alone.

    Args:
        session: an open session.
        job_id: the job.
        record: a candidate record of the pipeline (see `stages.stage_finalize`): `hash`, `arch`,
            and any of `latency_ms`, `predicted_latency_ms`, `params`, `memory_mb`, `dev_accuracy`,
            `test_accuracy`, `proxy`, `state`. The rest of it, less `arch` and `folder`, is kept
            as the candidate's `metrics`.

    Returns:
        The candidate's id.
    """
    # Server paths never reach API responses: the folder is served only as a download.
    fields: dict[str, Any] = {"metrics": {k: v for k, v in record.items() if k not in ("arch", "folder")}}
    renames = {"latency_ms": "measured_latency_ms"}
    for key in ("latency_ms", "predicted_latency_ms", "params", "memory_mb", "dev_accuracy", "test_accuracy",
                "proxy", "state"):
        if record.get(key) is not None:
            fields[renames.get(key, key)] = record[key]
    return candidates.upsert_candidate(session, job_id, record["hash"], record.get("arch") or {}, **fields)


def link_format_folder(source: Path, target: Path, fmt: str) -> int:
    """Fill `target` with hard links to the files of `source` that format `fmt` needs.

    Hard links cost no space and are plain files to the zip builder (which skips symlinks); where
    the file system refuses them, the files are copied. The folder is built beside the target and
    swapped in, so a download never sees half of it.

    Args:
        source: an exported model folder (model.safetensors, model.onnx, model.int8.onnx, config,
            tokenizer files, metrics.json, README.md).
        target: the folder to (re)create.
        fmt: "hf", "onnx" or "onnx-int8".

    Returns:
        Total bytes of the files in the folder.
    """
    others = set(WEIGHT_FILES.values()) - {WEIGHT_FILES[fmt]}
    files = sorted(p for p in source.iterdir() if p.is_file() and not p.is_symlink() and p.name not in others)
    staging = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for file in files:
        try:
            os.link(file, staging / file.name)
        except OSError:
            shutil.copy2(file, staging / file.name)
    if target.exists():
        shutil.rmtree(target)
    os.replace(staging, target)
    return sum(f.stat().st_size for f in files)
