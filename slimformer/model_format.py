"""The exported model folder's format: its name, version, input names and the config check.

Torch-free and import-free of the rest of slimformer, so the writer (`supernet/export.py`) and the
readers (`inference.py`, which serves folders with onnxruntime alone) share it without importing
each other.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from slimformer.errors import ModelFormatError

FORMAT = "slimformer-subnet"
FORMAT_VERSION = 1
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")


def read_config(folder: Path | str) -> dict[str, Any]:
    """Read and check config.json of a model folder, without torch.

    Args:
        folder: a folder written by `save_subnet` / `export_folder`.

    Returns:
        The config.json document.

    Raises:
        ModelFormatError: the folder or config.json is missing, unreadable, or not this format.
    """
    folder = Path(folder)
    path = folder / "config.json"
    if not folder.is_dir():
        raise ModelFormatError(f"{folder}: not a model folder (no such directory)")
    if not path.is_file():
        raise ModelFormatError(f"{path}: missing; not a slimformer model folder")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFormatError(f"{path}: unreadable ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        got = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
        raise ModelFormatError(f"{path}: format is {got!r}, expected {FORMAT!r}")
    version = doc.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ModelFormatError(f"{path}: format_version {version!r} not supported (this slimformer reads 1)")
    labels = doc.get("labels")
    if not isinstance(labels, list) or not labels or not all(isinstance(x, str) for x in labels):
        raise ModelFormatError(f"{path}: 'labels' must be a non-empty list of names")
    return doc
