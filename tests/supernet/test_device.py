"""Training runs on CUDA where the process sees one, on the CPU otherwise (and when told to)."""

from __future__ import annotations

import torch

from slimformer.supernet.device import ray_gpus_per_task, to_device, training_device


def test_cpu_when_no_gpu_or_when_told(monkeypatch):
    monkeypatch.setenv("SLIMFORMER_DEVICE", "cpu")
    assert training_device().type == "cpu"
    monkeypatch.delenv("SLIMFORMER_DEVICE")
    assert training_device().type == ("cuda" if torch.cuda.is_available() else "cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert training_device().type == "cuda"  # what a GPU machine picks, without needing one here


def test_batches_move_and_ray_asks_for_no_gpu_without_a_cluster_that_has_one():
    batch = {"input_ids": torch.ones(2, 3, dtype=torch.long), "note": "kept"}
    assert to_device(batch, torch.device("cpu")) is batch
    assert ray_gpus_per_task() == 0.0
