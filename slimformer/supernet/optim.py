"""The AdamW the job's training loops use: PyTorch's fused kernel where the device has one.

The default (foreach) AdamW walks every parameter tensor in several passes per step. With the
teacher's word embeddings (30,522 x 384 in MiniLM-L6, half of its parameters) in the optimiser,
that step took 192 ms of a 490 ms training step of a two-layer student on one CPU thread; the
fused kernel does the same update in one pass, 43 ms (clipping included). Same algorithm and
hyper-parameters: only the rounding of the update may differ.

Used by block distillation, the task-aware supernet stage and every fine-tune (finalists and the
baselines they are judged against). Teacher training keeps the default AdamW (teacher_train.py says why).

Where the fused kernel cannot be built (a parameter on a device or of a dtype it does not take),
the default AdamW is used, so any device still trains.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch


def adamw(params: Iterable[Any], lr: float, weight_decay: float = 0.01) -> torch.optim.AdamW:
    """AdamW over `params` (tensors or param-group dicts), fused where supported.

    Args:
        params: what torch.optim.AdamW takes: tensors, or dicts of groups with their own settings.
        lr: the learning rate.
        weight_decay: decoupled weight decay for groups that do not set their own.
    """
    params = list(params)
    tensors = [t for g in params for t in (g["params"] if isinstance(g, dict) else [g])]
    if all(t.is_floating_point() for t in tensors):  # complex passes the constructor's check, then fails a step
        try:
            return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=True)
        except RuntimeError:  # a device without the fused kernel
            pass
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
