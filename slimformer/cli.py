"""The `slimformer` command line.

    slimformer run SPEC.json [--out DIR] [--no-ray]   run one job in this process
    slimformer demo [--out DIR] [--preset quick]       the built-in job: MiniLM-L6 on Rotten Tomatoes

    slimformer serve | worker | db | keys               the service (slimformer.server_cli)
    slimformer submit | jobs | status | pareto | download | cancel
                                                       its HTTP client (slimformer.client)

Command bodies import what they need when they run, so the client commands never load torch.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from slimformer.errors import SlimformerError


def _quiet_environment() -> None:
    # Nothing may reach a model hub at run time; tokenizers' fork warning is noise under Ray.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _run(spec, out: Path, use_ray: bool) -> int:
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


def cmd_run(args: argparse.Namespace) -> int:
    from slimformer.contracts.spec import JobSpec

    spec = JobSpec.from_file(Path(args.spec))
    out = Path(args.out or Path("runs") / (spec.name or Path(args.spec).stem))
    return _run(spec, out, not args.no_ray)


def cmd_demo(args: argparse.Namespace) -> int:
    from slimformer.contracts.spec import JobSpec

    spec = JobSpec(name="demo", preset=args.preset, search={"strategy": args.strategy})
    return _run(spec, Path(args.out), not args.no_ray)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="slimformer", description="Compress transformers by architecture search.")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run one job in this process from a JSON spec")
    run.add_argument("spec", help="path to a job spec (JSON)")
    run.add_argument("--out", help="run folder (default runs/<name>)")
    run.add_argument("--no-ray", action="store_true", help="train blocks in this process instead of on Ray")
    run.set_defaults(fn=cmd_run)
    demo = sub.add_parser("demo", help="the built-in job on MiniLM-L6 and Rotten Tomatoes")
    demo.add_argument("--out", default="demo-output")
    demo.add_argument("--preset", default="quick", choices=["tiny", "quick", "standard"])
    demo.add_argument("--strategy", default="nsga2", choices=["nsga2", "tpe", "random", "ctnas", "sample"])
    demo.add_argument("--no-ray", action="store_true")
    demo.set_defaults(fn=cmd_demo)

    from slimformer.client import add_client_commands
    from slimformer.server_cli import add_server_commands

    add_server_commands(sub)
    add_client_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    _quiet_environment()
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except SlimformerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except json.JSONDecodeError as exc:
        print(f"error: spec is not valid JSON: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
