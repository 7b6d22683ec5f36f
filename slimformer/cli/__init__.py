"""The `slimformer` command line (entry point `slimformer.cli:main`).

    slimformer run SPEC.json [--out DIR] [--no-ray]   run one job in this process    (cli.local)
    slimformer demo [--out DIR] [--preset quick]       the built-in job, in this process
    slimformer serve | worker | db | keys               the service                     (cli.server)
    slimformer submit | jobs | status | pareto | download | cancel
                                                       its HTTP client                 (cli.remote)

One module per command group; this one only assembles the parser and hands every command to
cli.errors, so a user's mistake always ends as one `error: ...` line and exit code 2. Command
bodies import what they need when they run, so the client commands never load torch.
"""

from __future__ import annotations

import argparse
import os
import sys

from slimformer.cli.errors import run_reporting
from slimformer.cli.local import add_local_commands
from slimformer.cli.remote import add_remote_commands
from slimformer.cli.server import add_server_commands

__all__ = ["build_parser", "main"]


def _quiet_environment() -> None:
    # Nothing may reach a model hub at run time; tokenizers' fork warning is noise under Ray.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def build_parser() -> argparse.ArgumentParser:
    """Every command of every group on one parser."""
    parser = argparse.ArgumentParser(prog="slimformer", description="Compress transformers by architecture search.")
    sub = parser.add_subparsers(dest="command", required=True)
    add_local_commands(sub)
    add_server_commands(sub)
    add_remote_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; its exit code (2 for a user's error, reported on one stderr line)."""
    _quiet_environment()
    args = build_parser().parse_args(argv)
    return run_reporting(args.fn, args)


if __name__ == "__main__":
    sys.exit(main())
