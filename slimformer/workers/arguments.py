"""The options of `slimformer worker` (also `python -m slimformer.workers.worker`).

Its own module, free of torch and of the service, so the CLI can build its parser without loading
the worker (which imports the training stack), and the worker needs nothing from the CLI.
"""

from __future__ import annotations

import argparse


def add_worker_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the worker's options to `parser`: --lease, --poll, --no-ray, --once, --owner, --reclaim."""
    parser.add_argument("--lease", type=float, default=30, help="lease length in seconds (default 30)")
    parser.add_argument("--poll", type=float, default=1, help="seconds between claims when idle (default 1)")
    parser.add_argument("--no-ray", action="store_true", help="run every stage in this process")
    parser.add_argument("--once", action="store_true", help="exit after one job")
    parser.add_argument("--owner", help="lease owner name (default host:pid:random)")
    parser.add_argument("--reclaim", action="store_true",
                        help="--owner is stable across restarts: take back at once a job that a dead earlier "
                             "worker of that name still holds (refused while another live worker has the name)")
