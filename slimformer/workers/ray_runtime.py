"""Starting or joining Ray without letting it reach beyond this machine.

Ray's dashboard asks cloud metadata addresses at start (to report its cloud provider) unless
`~/ray_bootstrap_config.yaml` names a provider type. We give Ray's own processes a HOME of ours
that holds such a file, and turn usage statistics off, so a local start never probes the network.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any

BOOTSTRAP_CONFIG = "provider:\n  type: local\n  head_ip: 127.0.0.1\n"


def ray_home(base: Path | None = None) -> Path:
    """A folder usable as HOME for Ray's processes, holding the provider file."""
    base = Path(base or os.environ.get("SLIMFORMER_HOME", Path.home() / ".slimformer")) / "ray-home"
    base.mkdir(parents=True, exist_ok=True)
    config = base / "ray_bootstrap_config.yaml"
    if not config.exists():
        config.write_text(BOOTSTRAP_CONFIG)
    return base


@contextmanager
def _home_for_children(home: Path):
    # Ray snapshots os.environ when it spawns its processes inside ray.init, so HOME only needs
    # to point at our folder for the duration of that call.
    old = os.environ.get("HOME")
    os.environ["HOME"] = str(home)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("HOME", None)
        else:
            os.environ["HOME"] = old


def init_ray(address: str | None = None, num_cpus: int | None = None, **kwargs: Any) -> None:
    """Connect to the cluster at `address` (or RAY_ADDRESS), else start a local Ray. Idempotent."""
    import ray

    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    address = address or os.environ.get("RAY_ADDRESS") or None
    options: dict[str, Any] = {"ignore_reinit_error": True, "logging_level": "ERROR", "log_to_driver": False}
    options.update(kwargs)
    if address:
        ray.init(address=address, **options)
        return
    with _home_for_children(ray_home()):
        ray.init(num_cpus=num_cpus, include_dashboard=False, **options)


def shutdown_ray() -> None:
    import ray

    if ray.is_initialized():
        ray.shutdown()
