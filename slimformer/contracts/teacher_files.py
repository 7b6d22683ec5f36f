"""The files of an uploaded teacher, and their content digest, as client and server both count them.

A client uploads a model folder's top-level files (`upload_files`); the server unpacks them and
stores `folder_digest` of what it kept. The client computes the same digest before uploading, so
it can reuse an earlier upload of the same folder (a retried submission stays idempotent).
Standard library only: the client and the service both import it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

__all__ = ["ARCHIVE_SUFFIXES", "TRAINING_LEFTOVERS", "folder_digest", "upload_files"]

ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz")
# What `Trainer` checkpoints hold besides the model: never needed to use it, often larger than it.
TRAINING_LEFTOVERS = frozenset({
    "optimizer.pt", "scheduler.pt", "scaler.pt", "training_args.bin", "trainer_state.json", "rng_state.pth",
})


def upload_files(folder: Path) -> list[Path]:
    """The files of a model folder a client uploads: its top-level files, sorted by name.

    Hidden files and Trainer leftovers are left out, and so is pytorch_model.bin when
    model.safetensors is there (the server reads safetensors first). Symbolic links count as the
    files they point to (a Hugging Face cache folder is made of them).

    Args:
        folder: the folder holding config.json.

    Returns:
        The files to upload.
    """
    files = sorted(
        (p for p in folder.iterdir()
         if p.is_file() and not p.name.startswith(".") and p.name not in TRAINING_LEFTOVERS
         and not p.name.startswith("rng_state")),
        key=lambda p: p.name,
    )
    names = {p.name for p in files}
    if "model.safetensors" in names:
        files = [p for p in files if p.name != "pytorch_model.bin"]
    return files


def folder_digest(files: Iterable[tuple[str, Path]]) -> str:
    """sha256 over (relative path, sha256 of the bytes) of each file, in path order.

    Args:
        files: (path relative to the model folder, POSIX style; the file) pairs.

    Returns:
        Hex digest: equal for folders with equal files, whatever their timestamps or order.
    """
    h = hashlib.sha256()
    for name, file in sorted(files, key=lambda item: item[0]):
        with open(file, "rb") as f:
            h.update(f"{name}\0{hashlib.file_digest(f, 'sha256').hexdigest()}\n".encode())
    return h.hexdigest()
