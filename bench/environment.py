"""What a benchmark ran on: the package versions and the commit its figures came from.

The same default job at the same commit fitted one finalist (the H192 anchor) to test 0.808 in stop
32 and to 0.792 in stop 33, each run reproducible within its own session (docs/method.md#finalists).
Only torch is pinned, so two sessions may install other releases of the libraries a fit runs through;
a results file that names them lets the next run tell such drift from a change in the code.
"""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

# The libraries a fit's numbers pass through (tokenisation, arithmetic, export, scoring, search).
PACKAGES = ("torch", "transformers", "tokenizers", "numpy", "scipy", "scikit-learn", "safetensors",
            "onnx", "onnxruntime", "optuna", "ray")


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _commit(source: Path) -> str | None:
    """The commit checked out where slimformer was imported from, "+dirty" with uncommitted changes to it."""
    try:
        head = subprocess.run(["git", "-C", str(source), "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(source), "status", "--porcelain", "--untracked-files=no", "--", "."],
                               capture_output=True, text=True, check=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+dirty" if dirty else "")


def environment() -> dict[str, Any]:
    """Python, machine, package versions and the slimformer commit, for a results file."""
    import slimformer

    source = Path(slimformer.__file__).resolve().parent
    return {"python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count(),
            "packages": {name: _version(name) for name in PACKAGES},
            "slimformer_source": str(source), "slimformer_commit": _commit(source)}
