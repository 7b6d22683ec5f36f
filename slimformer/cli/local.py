"""`slimformer run` and `slimformer demo`: one job in this process, no server.

    slimformer run SPEC.json [--out DIR] [--no-ray]   run one job in this process
    slimformer demo [--out DIR] [--preset quick]       the built-in job: MiniLM-L6 on Rotten Tomatoes

The spec is read and validated before anything heavy is imported, so a typo in it costs a second
and one line of output, not a torch start-up and a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

from slimformer.cli.errors import about

__all__ = ["add_local_commands", "load_spec"]

PRESETS = ["tiny", "quick", "standard"]
STRATEGIES = ["nsga2", "tpe", "random", "ctnas", "sample"]


def add_local_commands(sub: Any) -> None:
    """Register run and demo on the CLI's subparsers."""
    run = sub.add_parser("run", help="run one job in this process from a JSON spec")
    run.add_argument("spec", help="path to a job spec (JSON)")
    run.add_argument("--out", help="run folder (default runs/<name>)")
    run.add_argument("--no-ray", action="store_true", help="train blocks in this process instead of on Ray")
    run.set_defaults(fn=cmd_run)
    demo = sub.add_parser("demo", help="the built-in job on MiniLM-L6 and Rotten Tomatoes")
    demo.add_argument("--out", default="demo-output")
    demo.add_argument("--preset", default="quick", choices=PRESETS)
    demo.add_argument("--strategy", default="nsga2", choices=STRATEGIES)
    demo.add_argument("--no-ray", action="store_true")
    demo.set_defaults(fn=cmd_demo)


def load_spec(path: Path) -> Any:
    """The JobSpec in `path`; any problem (missing, not JSON, a bad field) is a UserError naming the file."""
    from slimformer.contracts.spec import JobSpec

    with about(path):
        return JobSpec.model_validate(json.loads(path.read_text()))


def cmd_run(args: argparse.Namespace) -> int:
    spec = load_spec(Path(args.spec))
    out = Path(args.out or Path("runs") / (spec.name or Path(args.spec).stem))
    return _run(spec, out, not args.no_ray)


def cmd_demo(args: argparse.Namespace) -> int:
    from slimformer.contracts.spec import JobSpec

    spec = JobSpec(name="demo", preset=args.preset, search={"strategy": args.strategy})
    return _run(spec, Path(args.out), not args.no_ray)


def _run(spec: Any, out: Path, use_ray: bool) -> int:
    from slimformer.workers.pipeline import format_table, run_job
    from slimformer.workers.progress import ConsoleReporter
    from slimformer.workers.ray_runtime import init_ray, shutdown_ray

    started = time.perf_counter()
    if use_ray:
        init_ray(num_cpus=os.cpu_count())
    try:
        results = run_job(spec, out, ConsoleReporter(), use_ray=use_ray)
    finally:
        if use_ray:
            shutdown_ray()
    print()
    print(format_table(results))
    print()
    print(f"exported: {results['export']['folder']}")
    print(f"results:  {out / 'results.json'}")
    print(f"wall time: {time.perf_counter() - started:.0f} s")
    return 0
