"""Where training runs: CUDA when the process can see a GPU, else the CPU.

Training (teacher, block distillation, the task-aware supernet, finalists) runs on the device
this picks; latency is never measured here but on the target the job names (the CPU today).
`SLIMFORMER_DEVICE=cpu` forces the CPU, e.g. to compare against a GPU run.
"""

from __future__ import annotations

import os
from typing import Any

import torch


def training_device() -> torch.device:
    """CUDA device 0 when available and not disabled by SLIMFORMER_DEVICE=cpu, else the CPU."""
    wanted = os.environ.get("SLIMFORMER_DEVICE", "").strip().lower()
    if wanted == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device(wanted if wanted.startswith("cuda") else "cuda")


def to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """A batch dict with its tensors moved to `device` (others left as they are)."""
    if device.type == "cpu":
        return batch
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def ray_gpus_per_task() -> float:
    """GPUs a Ray training task should ask for: one where the cluster has GPUs, else none."""
    try:
        import ray

        if ray.is_initialized() and ray.cluster_resources().get("GPU", 0) >= 1:
            return 1.0
    except Exception:  # noqa: BLE001 - no Ray, or no cluster: CPU tasks
        pass
    return 0.0
