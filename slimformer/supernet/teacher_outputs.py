"""The task teacher's outputs on its training split, kept with a teacher that slimformer fine-tuned.

Every job distils from the teacher's logits and mean-pooled last states on the whole training split.
That pass opens the task stage, and it took 46 s of a 2-core quick job on Rotten Tomatoes (10,202
reviews at 64 tokens). The outputs depend only on the teacher and the split, and those two already
key a fine-tuned teacher's cache entry (supernet/teacher.py). So they are computed once, when the
teacher is trained, and saved in its entry, and every later job on the task reads them.

Where they cannot be kept (a teacher used as given: its folder is the user's, not ours) or were not
(an entry cached before this file existed), the job computes them as before. An old entry gains
the file then, written atomically, so the next job reads it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from slimformer.supernet.pooled_kd import teacher_outputs
from slimformer.supernet.task_teacher import TaskTeacher

OUTPUTS_FILE = "train_outputs.safetensors"


def compute_train_outputs(model: torch.nn.Module, tokenizer: Any, texts: Sequence[str],
                          max_length: int) -> dict[str, torch.Tensor]:
    """{"logits": [N, C], "pooled": [N, D]} of `model` on `texts`, in one batched pass."""
    logits, pooled = teacher_outputs(model, tokenizer, list(texts), max_length)
    return {"logits": logits, "pooled": pooled}


def save_train_outputs(folder: Path, outputs: dict[str, torch.Tensor]) -> None:
    """Write `outputs` into `folder` under a name of this process's own, then rename it into place:
    a reader sees the whole file or none, also while two jobs fill the same entry."""
    tmp = folder / f"{OUTPUTS_FILE}.{os.getpid()}.tmp"
    save_file({k: v.contiguous() for k, v in outputs.items()}, str(tmp))
    os.replace(tmp, folder / OUTPUTS_FILE)


def train_outputs(teacher: TaskTeacher, texts: Sequence[str]) -> tuple[dict[str, torch.Tensor], bool]:
    """The teacher's outputs on the training split `texts`, and whether they came from its cache entry.

    Read from a fine-tuned teacher's entry when it holds them for as many rows, else computed (and,
    for a fine-tuned teacher, stored there for the next job).
    """
    path = teacher.cache_path / OUTPUTS_FILE
    if teacher.fine_tuned and path.is_file():
        try:
            stored = load_file(str(path))
        except Exception:  # noqa: BLE001 - unreadable (safetensors raises its own error): computed and rewritten
            stored = {}
        if {"logits", "pooled"} <= stored.keys() and stored["logits"].shape[0] == len(texts):
            return stored, True
    outputs = compute_train_outputs(teacher.model, teacher.tokenizer, texts, teacher.max_length)
    if teacher.fine_tuned and teacher.cache_path.is_dir():
        save_train_outputs(teacher.cache_path, outputs)
    return outputs, False
