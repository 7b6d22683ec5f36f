"""Export a SubNet as a self-contained model folder: weights, config, tokenizer, ONNX, int8 ONNX.

A finished folder looks like

    config.json          SubNetConfig + format tag, arch hash, label map, tokenizer info
    model.safetensors    the SubNet state dict
    tokenizer.json ...   whatever `tokenizer.save_pretrained` writes
    metrics.json         optional, what the caller measured
    model.onnx           fp32 ONNX: input_ids, attention_mask, token_type_ids (int64) -> logits
    model.int8.onnx      dynamically quantized copy of model.onnx
    README.md            model card

Folders are built in a hidden temp sibling and renamed into place at the end, so a crash never
leaves a half-written folder under the final name. The ONNX files need only onnxruntime and the
tokenizer files to run (see the README snippet), never slimformer or torch.

This module writes the folder and owns its file names; the ONNX and int8 files come from
`onnx_export`, README.md from `model_card`, and `load` reads a folder back.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from slimformer.errors import ModelFormatError

# The folder format's torch-free half, shared with inference.py (which serves folders without torch).
from slimformer.model_format import FORMAT, FORMAT_VERSION
from slimformer.supernet.model_card import CARD_FILE, json_default, write_card
from slimformer.supernet.onnx_export import (
    INT8_FILE,
    ONNX_FILE,
    export_onnx,
    int8_weight_type,
    onnx_max_abs_diff,
    quantize_onnx,
)
from slimformer.supernet.subnet import SubNet

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"
DEFAULT_MAX_LENGTH = 128
# ONNX fp32 vs torch: the same float32 math in a different order; anything above this is a bug.
ONNX_TOLERANCE = 1e-4

# --- folder staging ----------------------------------------------------------------------------


@contextlib.contextmanager
def _staged(folder: Path) -> Iterator[Path]:
    """Yield a temp sibling of `folder`; on success swap it in for `folder`, on error delete it."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.parent / f".{folder.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if folder.exists():
        # Move the old folder aside first: a rename onto a non-empty directory fails.
        old = folder.parent / f".{folder.name}.old-{uuid.uuid4().hex[:8]}"
        folder.rename(old)
    try:
        tmp.rename(folder)
    except BaseException:
        if old is not None:  # put the previous folder back rather than leave none
            old.rename(folder)
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _write_json(path: Path, doc: dict[str, Any]) -> None:
    path.write_text(json.dumps(doc, indent=2, default=json_default) + "\n", encoding="utf-8")


# --- save --------------------------------------------------------------------------------------


def folder_config(model: SubNet, tokenizer: Any, max_length: int = DEFAULT_MAX_LENGTH) -> dict[str, Any]:
    """The config.json document for `model`: SubNetConfig plus format tag, hash, labels, tokenizer.

    Args:
        model: the SubNet to describe.
        tokenizer: its tokenizer (only its class name is recorded).
        max_length: tokens per text at inference; capped at the model's position table.

    Returns:
        A JSON-ready dict.
    """
    cfg = model.config
    doc = cfg.to_dict()
    doc.update(
        format=FORMAT,
        format_version=FORMAT_VERSION,
        arch_hash=model.arch.hash,
        num_params=model.num_params(),
        label2id={name: i for i, name in enumerate(cfg.labels)},
        tokenizer={"class": type(tokenizer).__name__, "max_length": min(int(max_length), cfg.max_position)},
    )
    return doc


def _write_subnet(
    model: SubNet, tokenizer: Any, folder: Path, metrics: dict[str, Any] | None, max_length: int
) -> dict[str, Any]:
    """Write weights, config, tokenizer, metrics and card into an existing (staging) folder."""
    from safetensors.torch import save_file

    # safetensors refuses non-contiguous tensors and shared storage; clone each into its own.
    state = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    save_file(state, str(folder / WEIGHTS_FILE), metadata={"format": FORMAT, "arch_hash": model.arch.hash})
    config = folder_config(model, tokenizer, max_length)
    _write_json(folder / CONFIG_FILE, config)
    tokenizer.save_pretrained(str(folder))
    if metrics is not None:
        _write_json(folder / METRICS_FILE, dict(metrics))
    write_card(folder, config, metrics)
    return config


def save_subnet(
    model: SubNet,
    tokenizer: Any,
    folder: Path,
    metrics: dict[str, Any] | None = None,
    *,
    max_length: int = DEFAULT_MAX_LENGTH,
) -> Path:
    """Save `model` and `tokenizer` as a slimformer model folder (replacing `folder` if it exists).

    Args:
        model: the standalone student.
        tokenizer: a transformers tokenizer (anything with `save_pretrained`).
        folder: the destination folder; built beside it and renamed into place at the end.
        metrics: optional numbers to store in metrics.json and show in the model card.
        max_length: tokens per text at inference, recorded in config.json.

    Returns:
        The folder path.
    """
    folder = Path(folder)
    with _staged(folder) as tmp:
        _write_subnet(model, tokenizer, tmp, metrics, max_length)
    return folder


# --- everything at once ------------------------------------------------------------------------


def export_folder(
    model: SubNet,
    tokenizer: Any,
    folder: Path,
    metrics: dict[str, Any] | None = None,
    onnx: bool = True,
    int8: bool = True,
    *,
    max_length: int = DEFAULT_MAX_LENGTH,
    opset: int = 17,
) -> dict[str, Any]:
    """Save the model folder plus ONNX fp32 and int8 files, all staged and renamed into place at once.

    Args:
        model: the standalone student.
        tokenizer: its transformers tokenizer.
        folder: the destination (replaced if it exists).
        metrics: optional numbers for metrics.json and the model card.
        onnx: write model.onnx (checked against torch on a padded batch).
        int8: write model.int8.onnx (needs `onnx`).
        max_length: tokens per text at inference, recorded in config.json.
        opset: ONNX opset version.

    Returns:
        JSON-ready dict: "folder"; "paths" {file name: str path}; "sizes" {file name: bytes};
        "onnx_max_abs_diff" (None without ONNX); "int8_weight_type"; "seconds" {step: wall time}.

    Raises:
        ModelFormatError: if model.onnx differs from torch by more than 1e-4.
        SlimformerError: if ONNX export or quantization fails.
    """
    folder = Path(folder)
    seconds: dict[str, float] = {}
    diff = None
    weight_type = None
    with _staged(folder) as tmp:
        t0 = time.perf_counter()
        config = _write_subnet(model, tokenizer, tmp, metrics, max_length)
        seconds["save"] = time.perf_counter() - t0
        if onnx:
            t0 = time.perf_counter()
            onnx_path = export_onnx(model, tmp, opset)
            seconds["onnx"] = time.perf_counter() - t0
            diff = onnx_max_abs_diff(model, onnx_path)
            if not diff <= ONNX_TOLERANCE:  # also catches NaN
                raise ModelFormatError(
                    f"{ONNX_FILE}: ONNX logits differ from torch by {diff:.3g} (> {ONNX_TOLERANCE})"
                )
            if int8:
                t0 = time.perf_counter()
                weight_type = int8_weight_type(quantize_onnx(onnx_path, tmp / INT8_FILE))
                seconds["int8"] = time.perf_counter() - t0
        sizes = {p.name: p.stat().st_size for p in sorted(tmp.iterdir()) if p.is_file()}
        # Rewrite the card now that the ONNX files and their sizes are known.
        write_card(tmp, config, metrics, sizes)
        sizes[CARD_FILE] = (tmp / CARD_FILE).stat().st_size
    return {
        "folder": str(folder),
        "paths": {name: str(folder / name) for name in sizes},
        "sizes": sizes,
        "onnx_max_abs_diff": diff,
        "int8_weight_type": weight_type,
        "seconds": seconds,
    }


def update_metrics(folder: Path, metrics: dict[str, Any]) -> None:
    """Rewrite an exported folder's metrics.json and model card with figures measured after export.

    The files are written in place (same inodes), so download folders hard-linked to them follow.
    """
    folder = Path(folder)
    config = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
    _write_json(folder / METRICS_FILE, dict(metrics))
    sizes = {p.name: p.stat().st_size for p in sorted(folder.iterdir()) if p.is_file() and p.name != CARD_FILE}
    write_card(folder, config, metrics, sizes)
