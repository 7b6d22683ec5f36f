"""The worker loop: claim a job with a lease, keep the lease alive, run the pipeline, record the end.

    python -m slimformer.workers.worker [--lease 30] [--poll 1] [--no-ray] [--once] [--owner NAME [--reclaim]]

A job runs in `artifact_dir/runs/<job_id>`, the same folder whichever worker runs it, so a worker
that takes over an abandoned job (its lease ran out) resumes at the first unfinished stage, and
block training inside that stage resumes from its checkpoints. A heartbeat thread renews the lease
every third of its length; when the lease is lost the reporter raises `LeaseLost` at the next
report and the worker drops the job without another write. SIGTERM hands the running job back to
the queue (`release_job`), so another worker resumes it at once instead of after the lease. A
worker killed outright cannot hand back; with a stable `--owner` and `--reclaim` (as `slimformer
serve` starts its embedded worker) its restarted self takes the job back at once (`owner_lock`).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
import threading
import time
import traceback
import uuid
from pathlib import Path
from typing import Any

from slimformer.contracts.settings import Settings
from slimformer.errors import SlimformerError
from slimformer.store import events, jobs, leases
from slimformer.store.db import make_engine, make_session_factory, normalise_url, session_scope
from slimformer.store.errors import DatabaseUnavailable
from slimformer.store.models import Job
from slimformer.store.schema import check_schema, upgrade
from slimformer.workers.arguments import add_worker_arguments
from slimformer.workers.db_reporter import DatabaseReporter, LeaseLost, WorkerShutdown
from slimformer.workers.progress import JobCancelled

log = logging.getLogger(__name__)

MAX_TRACEBACK_CHARS = 8000


def study_name_for(job_id: str) -> str:
    """The name of a job's Optuna study in the service database."""
    return f"slimformer-job-{job_id}"


class Worker:
    """Claims and runs jobs from the service database.

    Args:
        settings: the service settings (database URL, artifact directory, home).
        owner: this worker's unique lease owner name; default host:pid:random.
        lease_seconds: lease length; a job is taken over this long after its worker died.
        poll_seconds: wait between claims when the queue is empty.
        use_ray: train blocks and finalists as Ray tasks (local Ray, or the cluster at RAY_ADDRESS).
        torch_threads: intra-op threads of this process; default `SLIMFORMER_TORCH_THREADS` or 1,
            because parallelism comes from Ray tasks and several threads each oversubscribe the cores.
        max_attempts: leases a job may spend before it is failed instead of retried.
        ray_num_cpus: CPUs of a local Ray this worker starts (None: all); ignored with RAY_ADDRESS.
        reclaim: `owner` is this worker's stable name, held by no other live process (see
            `owner_lock`): at start, a job still leased to it is the job of this worker's dead
            earlier life, claimed at once instead of after its lease. Only at start (the first
            claim): later a job leased to this name is one it gave up on purpose.
    """

    def __init__(
        self,
        settings: Settings,
        owner: str | None = None,
        lease_seconds: float = 30,
        poll_seconds: float = 1,
        use_ray: bool = True,
        torch_threads: int | None = None,
        max_attempts: int = leases.DEFAULT_MAX_ATTEMPTS,
        ray_num_cpus: int | None = None,
        reclaim: bool = False,
    ):
        self.settings = settings
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.lease_seconds = lease_seconds
        self.poll_seconds = poll_seconds
        self.use_ray = use_ray
        self.torch_threads = torch_threads or int(os.environ.get("SLIMFORMER_TORCH_THREADS", "1"))
        self.max_attempts = max_attempts
        self.ray_num_cpus = ray_num_cpus
        self.reclaim = reclaim
        self.engine = make_engine(settings.database_url)
        self.factory = make_session_factory(self.engine)
        self.stopping = threading.Event()
        self.current_job: str | None = None
        self._prepared = False
        self._owns_ray = False
        self._in_main_thread_job = False

    # --- the loop ----------------------------------------------------------------------------------

    def run_forever(self, max_jobs: int | None = None) -> None:
        """Claim and run jobs until `stop()` (or SIGTERM with `install_signal_handlers`).

        Args:
            max_jobs: stop after this many jobs (None: never).

        Raises:
            SchemaOutOfDate: the database schema is not current (and auto_migrate is off).
        """
        self.prepare()
        done = 0
        while not self.stopping.is_set() and (max_jobs is None or done < max_jobs):
            try:
                job_id = self.run_once()
            except DatabaseUnavailable as exc:  # ride out an outage: the leases protect the jobs
                log.warning("database unavailable, retrying: %s", exc)
                job_id = None
            except Exception:  # a worker outlives a bad moment; the jobs are safe behind their leases
                log.exception("worker loop error; retrying")
                job_id = None
            if job_id is None:
                self.stopping.wait(self.poll_seconds)
            else:
                done += 1

    def run_once(self) -> str | None:
        """Claim one job and run it to its end (or until the lease is lost or the worker stops).

        Returns:
            The id of the job it worked on, or None when no job was claimable.

        Raises:
            DatabaseUnavailable: the database could not be reached to claim a job.
        """
        self.prepare()
        with session_scope(self.factory) as session:
            job = leases.claim_next_job(session, self.owner, self.lease_seconds, self.max_attempts,
                                        reclaim=self.reclaim)
            self.reclaim = False
            if job is None:
                return None
            # The same folder on every attempt: a takeover resumes from what earlier attempts wrote.
            relative = f"runs/{job.id}"
            leases.set_run_dir(session, job.id, self.owner, relative)
        job_id = job.id
        log.info("job %s claimed by %s (attempt %d)", job_id, self.owner, job.attempts)
        run_dir = self.settings.artifacts / relative
        lost = threading.Event()
        beat_stop = threading.Event()
        beat = threading.Thread(target=self._heartbeat, args=(job_id, lost, beat_stop), daemon=True,
                                name=f"heartbeat-{job_id}")
        reporter = DatabaseReporter(self.factory, job_id, self.owner, self.settings.artifacts, run_dir,
                                    self.lease_seconds, lost=lost, stopping=self.stopping)
        self.current_job = job_id
        self._in_main_thread_job = threading.current_thread() is threading.main_thread()
        beat.start()
        try:
            self._run(job, run_dir, reporter)
        finally:
            self._in_main_thread_job = False
            self.current_job = None
            beat_stop.set()
            beat.join()
        return job_id

    def _run(self, job: Job, run_dir: Path, reporter: DatabaseReporter) -> None:
        """Run the claimed job's pipeline and record how it ended (unless the lease is gone)."""
        from slimformer.workers.pipeline import run_job

        job_id = job.id
        try:
            with session_scope(self.factory) as session:  # a spec that no longer validates fails the job
                spec, dataset_path = jobs.job_inputs(session, job, self.settings.artifacts)
            # The job's Optuna study lives in the service database (Optuna's tables beside ours), so a
            # job taken over on another machine finds its study without a shared disk, and
            # `optuna-dashboard <database URL>` shows every job's study.
            run_job(spec, run_dir, reporter, use_ray=self.use_ray,
                    dataset_path=str(dataset_path) if dataset_path else None, cache_dir=self.settings.home / "cache",
                    optuna_storage_url=normalise_url(self.settings.database_url).render_as_string(hide_password=False),
                    study_name=study_name_for(job_id), teacher_name=str(job.spec.get("teacher", spec.teacher)))
            reporter.finish()
            log.info("job %s succeeded", job_id)
        except LeaseLost:
            log.warning("job %s: lease lost; another worker has it now", job_id)
        except WorkerShutdown:
            self._in_main_thread_job = False  # nothing may interrupt the hand-back
            self._end(job_id, lambda s: leases.release_job(s, job_id, self.owner, "worker shutting down"))
            log.info("job %s released for another worker", job_id)
        except JobCancelled:
            self._end(job_id, lambda s: leases.mark_cancelled(s, job_id, self.owner))
            log.info("job %s cancelled", job_id)
        except DatabaseUnavailable as exc:
            # Not the job's fault: leave it to its lease, after which a worker resumes it.
            log.error("job %s: database unavailable, leaving the job to its lease: %s", job_id, exc)
        except Exception as exc:
            message = failure_message(exc)
            trace = "".join(traceback.format_exception(exc))[-MAX_TRACEBACK_CHARS:]
            log.error("job %s failed: %s", job_id, message, exc_info=exc)

            def fail(session: Any) -> bool:
                events.add_event(session, job_id, "traceback of the failure", level="debug",
                                 data={"traceback": trace})
                return leases.fail_job(session, job_id, self.owner, message)

            self._end(job_id, fail)

    def _end(self, job_id: str, write: Any) -> None:
        """A final write; if it is refused the job was taken over meanwhile, which is fine."""
        try:
            with session_scope(self.factory) as session:
                if not write(session):
                    session.rollback()
                    log.warning("job %s: lease lost before its end could be recorded", job_id)
        except DatabaseUnavailable as exc:
            log.error("job %s: end not recorded, the lease will expire: %s", job_id, exc)

    def _heartbeat(self, job_id: str, lost: threading.Event, stop: threading.Event) -> None:
        interval = self.lease_seconds / 3
        last_ok = time.monotonic()
        while not stop.wait(interval):
            try:
                with session_scope(self.factory) as session:
                    ok: bool | None = leases.heartbeat(session, job_id, self.owner, self.lease_seconds)
            except DatabaseUnavailable as exc:
                log.warning("job %s: heartbeat failed: %s", job_id, exc)
                ok = None
            if ok:
                last_ok = time.monotonic()
            elif ok is False or time.monotonic() - last_ok > self.lease_seconds:
                # Refused, or so long unrenewed that another worker may have claimed the job.
                lost.set()
                return

    def prepare(self) -> None:
        """Check (or upgrade) the schema, set torch threads and start or join Ray. Idempotent.

        Raises:
            SchemaOutOfDate: the schema is not current and auto_migrate is off.
        """
        if self._prepared:
            return
        if self.settings.auto_migrate:
            upgrade(self.engine)
        else:
            check_schema(self.engine)
        self.settings.artifacts.mkdir(parents=True, exist_ok=True)
        import torch

        torch.set_num_threads(self.torch_threads)
        if self.use_ray:
            import ray

            from slimformer.workers.ray_runtime import init_ray

            self._owns_ray = not ray.is_initialized()
            init_ray(address=self.settings.ray_address, num_cpus=self.ray_num_cpus)
        self._prepared = True

    # --- stopping ----------------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the loop to end; a running job is handed back at its next report."""
        self.stopping.set()

    def install_signal_handlers(self) -> None:
        """SIGTERM/SIGINT: stop, handing a running job back at once (main thread only)."""

        def handle(signum: int, _frame: Any) -> None:
            log.info("signal %d: stopping", signum)
            first = not self.stopping.is_set()
            self.stop()
            # Interrupt the job where it is, not at its next report (a block may train for
            # minutes between reports); stages write atomically, so nothing is left half-done.
            # Only once: a second signal must not interrupt the hand-back itself.
            if first and self._in_main_thread_job:
                raise WorkerShutdown(f"signal {signum}")

        signal.signal(signal.SIGTERM, handle)
        signal.signal(signal.SIGINT, handle)

    def close(self) -> None:
        """Release the database connections, and shut down Ray if this worker started it."""
        self.engine.dispose()
        if self._owns_ray:
            from slimformer.workers.ray_runtime import shutdown_ray

            shutdown_ray()


def failure_message(exc: BaseException) -> str:
    """A message for the user: a slimformer error's own words, otherwise its type and text.

    Ray wraps a task's exception in RayTaskError; the cause inside is what the user needs.
    """
    cause = getattr(exc, "cause", None)
    if type(exc).__name__.startswith("RayTaskError") and isinstance(cause, BaseException):
        exc = cause
    if isinstance(exc, SlimformerError):
        return str(exc)
    text = str(exc).strip()
    return f"internal error: {type(exc).__name__}" + (f": {text}" if text else "")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="slimformer worker",
                                     description="Claim and run jobs from SLIMFORMER_DATABASE_URL.")
    add_worker_arguments(parser)
    return parser


def run_worker(args: argparse.Namespace) -> int:
    """Run a worker from parsed arguments until SIGTERM/SIGINT (or one job with --once)."""
    # Our own messages at INFO; libraries (onnxruntime's quantizer is chatty) at WARNING.
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s worker %(levelname)s %(name)s: %(message)s")
    logging.getLogger("slimformer").setLevel(logging.INFO)
    settings = Settings()
    owner, reclaim = args.owner, bool(getattr(args, "reclaim", False))
    if reclaim:
        if not owner:
            print("error: --reclaim needs --owner (a name that stays the same across restarts)", file=sys.stderr)
            return 2
        from slimformer.workers.owner_lock import acquire_owner_lock

        if acquire_owner_lock(settings.home, owner) is None:  # held until this process ends
            log.warning("another live worker runs as %s: this one runs under a name of its own and reclaims "
                        "nothing", owner)
            owner, reclaim = None, False
    worker = Worker(settings, owner=owner, lease_seconds=args.lease, poll_seconds=args.poll,
                    use_ray=not args.no_ray, reclaim=reclaim)
    try:
        worker.prepare()
        # After Ray starts: its core worker installs its own SIGTERM handler, which would kill
        # this process without handing the job back.
        worker.install_signal_handlers()
        worker.run_forever(max_jobs=1 if args.once else None)
    except WorkerShutdown:
        pass  # a signal between jobs: nothing is held
    except SlimformerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        worker.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_worker(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
