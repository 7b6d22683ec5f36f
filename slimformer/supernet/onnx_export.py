"""Export a SubNet to ONNX, quantise it to int8, and check the ONNX file against torch.

`model.onnx` takes int64 input_ids / attention_mask / token_type_ids of shape [batch, sequence]
and returns float logits; `model.int8.onnx` is its dynamically quantized copy. Both are written
under a temp name and renamed into place, so a failed export never leaves a broken file behind.
`check_batch` (random ids with ragged padding and a sentence pair) and `onnx_max_abs_diff` are
the agreement check `export.export_folder` runs before it accepts an export.
"""

from __future__ import annotations

import json
import os
import uuid
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from slimformer.errors import SlimformerError
from slimformer.model_format import FORMAT, INPUT_NAMES
from slimformer.supernet.subnet import SubNet, SubNetConfig

ONNX_FILE = "model.onnx"
INT8_FILE = "model.int8.onnx"
OUTPUT_NAME = "logits"

# --- ONNX --------------------------------------------------------------------------------------


class _LogitsOnly(nn.Module):
    """ONNX wants tensors out, not SubNet's dict; also fixes the input order and names."""

    def __init__(self, model: SubNet):
        super().__init__()
        self.model = model

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor
    ) -> torch.Tensor:
        return self.model(input_ids, attention_mask, token_type_ids)["logits"]


def check_batch(cfg: SubNetConfig, batch: int, seq: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """A random int64 batch with ragged padding (row i loses i * seq // (2 * batch) tokens).

    Args:
        cfg: the model config (vocabulary and position limits).
        batch, seq: the batch shape; seq is capped at the position table.
        seed: makes the batch reproducible.

    Returns:
        {"input_ids", "attention_mask", "token_type_ids"}, each [batch, seq] int64.
    """
    seq = min(seq, cfg.max_position)
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, cfg.vocab_size, (batch, seq), generator=g)
    mask = torch.ones_like(ids)
    for i in range(batch):
        keep = max(1, seq - i * seq // (2 * batch))
        mask[i, keep:] = 0
    ids = ids.masked_fill(mask == 0, cfg.pad_token_id)
    types = torch.zeros_like(ids)
    if seq > 2:  # a sentence pair in the last row, so segment embeddings are exercised too
        types[-1, seq // 2 :] = 1
    types = types.clamp(max=cfg.type_vocab_size - 1)
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}


def _export_torchscript(module: nn.Module, args: tuple[torch.Tensor, ...], path: Path, opset: int) -> None:
    axes = {name: {0: "batch", 1: "sequence"} for name in INPUT_NAMES}
    axes[OUTPUT_NAME] = {0: "batch"}
    with warnings.catch_warnings():
        # The legacy exporter warns that it is deprecated and that `math.sqrt(head_size)` is traced
        # as a constant; both are expected (head size is fixed per model).
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module, args, str(path), dynamo=False, input_names=list(INPUT_NAMES), output_names=[OUTPUT_NAME],
            dynamic_axes=axes, opset_version=opset, do_constant_folding=True,
        )


def _export_dynamo(
    module: nn.Module, args: tuple[torch.Tensor, ...], path: Path, opset: int, max_seq: int
) -> None:
    batch = torch.export.Dim("batch")
    seq = torch.export.Dim("sequence", max=max_seq)
    shapes = {name: {0: batch, 1: seq} for name in INPUT_NAMES}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module, args, str(path), dynamo=True, input_names=list(INPUT_NAMES), output_names=[OUTPUT_NAME],
            dynamic_shapes=shapes, opset_version=opset, external_data=False, verbose=False,
        )


def export_onnx(model: SubNet, folder: Path, opset: int = 17) -> Path:
    """Write `folder/model.onnx`: int64 input_ids/attention_mask/token_type_ids -> float logits.

    Batch and sequence axes are dynamic. Uses the legacy TorchScript exporter (fast, no extra
    dependencies, exact dynamic axes); falls back to the dynamo exporter if that one fails or is
    gone. The file is checked with `onnx.checker` and carries the labels and arch hash as metadata.

    Args:
        model: the SubNet to export (not modified; exported in eval mode).
        folder: an existing folder (created if missing).
        opset: ONNX opset version.

    Returns:
        The path of model.onnx.

    Raises:
        SlimformerError: if both exporters fail (the message carries both errors).
    """
    import onnx

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    dst = folder / ONNX_FILE
    tmp = folder / f".{ONNX_FILE}.tmp-{uuid.uuid4().hex[:8]}"
    was_training = model.training
    module = _LogitsOnly(model).eval()
    dummy = check_batch(model.config, batch=2, seq=16, seed=1)
    args = tuple(dummy[name] for name in INPUT_NAMES)
    try:
        with torch.no_grad():
            try:
                _export_torchscript(module, args, tmp, opset)
                exporter = "torchscript"
            except Exception as first:  # removed or broken legacy exporter: try the new one
                try:
                    _export_dynamo(module, args, tmp, opset, model.config.max_position)
                    exporter = "dynamo"
                except Exception as second:
                    raise SlimformerError(
                        f"ONNX export failed: torchscript exporter: {first}; dynamo exporter: {second}"
                    ) from second
        proto = onnx.load(str(tmp))
        meta = {
            "slimformer.format": FORMAT,
            "slimformer.arch_hash": model.arch.hash,
            "slimformer.labels": json.dumps(model.config.labels),
            "slimformer.exporter": exporter,
        }
        for key, value in meta.items():
            proto.metadata_props.add(key=key, value=value)
        onnx.checker.check_model(proto, full_check=True)
        onnx.save(proto, str(tmp))
        os.replace(tmp, dst)
    finally:
        model.train(was_training)
        tmp.unlink(missing_ok=True)
    return dst


def onnx_session(path: Path) -> Any:
    """A CPU onnxruntime session for `path`."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3  # errors only; ORT otherwise logs every unused initializer
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def onnx_logits(path_or_session: Any, batch: dict[str, Any]) -> Any:
    """Run an exported model on a batch of int64 arrays or tensors; returns logits as numpy."""
    import numpy as np

    sess = onnx_session(path_or_session) if isinstance(path_or_session, str | Path) else path_or_session
    arrays = {k: v.numpy() if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
    feed = {k: np.asarray(arrays[k], dtype=np.int64) for k in INPUT_NAMES}
    return sess.run([OUTPUT_NAME], feed)[0]


def onnx_max_abs_diff(model: SubNet, onnx_path: Path, batch: int = 3, seq: int = 11, seed: int = 0) -> float:
    """Largest |torch logits - ONNX logits| on a padded check batch (default shape differs from export's).

    Args:
        model: the SubNet the file was exported from.
        onnx_path: the ONNX file.
        batch, seq, seed: the check batch (see `check_batch`).

    Returns:
        The max absolute difference.
    """
    inputs = check_batch(model.config, batch, seq, seed)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        ref = model(**inputs)["logits"].numpy()
    model.train(was_training)
    return float(abs(onnx_logits(onnx_path, inputs) - ref).max())


# --- int8 --------------------------------------------------------------------------------------


def _smoke_run(path: Path) -> None:
    """Open and run the model once: some quantized ops only fail when a session is created."""
    import numpy as np

    ones = np.ones((2, 4), dtype=np.int64)
    onnx_logits(path, {"input_ids": ones, "attention_mask": ones, "token_type_ids": ones * 0})


def quantize_onnx(src: Path, dst: Path) -> Path:
    """Dynamically quantize an ONNX model's weights to int8 (`onnxruntime.quantization.quantize_dynamic`).

    Runs `quant_pre_process` (shape inference + graph cleanup) first when available. Tries QInt8
    weights and falls back to QUInt8 only if the QInt8 model cannot run; with onnxruntime 1.31
    QInt8 works for every op this model has (MatMul, Gemm, Gather, depthwise Conv). The weight type
    used is stored in the file's metadata as `slimformer.int8_weight_type`.

    Args:
        src: the fp32 ONNX file.
        dst: the output file, or a folder to write `model.int8.onnx` into.

    Returns:
        The path of the quantized file.

    Raises:
        SlimformerError: if neither weight type gives a runnable model.
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    src, dst = Path(src), Path(dst)
    if dst.is_dir():
        dst = dst / INT8_FILE
    dst.parent.mkdir(parents=True, exist_ok=True)
    tag = uuid.uuid4().hex[:8]
    pre = dst.parent / f".{dst.name}.pre-{tag}.onnx"
    tmp = dst.parent / f".{dst.name}.tmp-{tag}.onnx"
    try:
        source = src
        try:
            from onnxruntime.quantization.shape_inference import quant_pre_process

            quant_pre_process(str(src), str(pre))
            source = pre
        except Exception:  # optional step: missing or failing pre-processing only costs size/speed
            source = src
        errors = []
        for weight_type in (QuantType.QInt8, QuantType.QUInt8):
            try:
                quantize_dynamic(str(source), str(tmp), weight_type=weight_type)
                _smoke_run(tmp)
            except Exception as exc:
                errors.append(f"{weight_type.name}: {exc}")
                continue
            proto = onnx.load(str(tmp))
            proto.metadata_props.add(key="slimformer.int8_weight_type", value=weight_type.name)
            onnx.save(proto, str(tmp))
            os.replace(tmp, dst)
            return dst
        raise SlimformerError(f"int8 quantization of {src} failed: " + "; ".join(errors))
    finally:
        pre.unlink(missing_ok=True)
        tmp.unlink(missing_ok=True)


def int8_weight_type(path: Path) -> str | None:
    """The weight type `quantize_onnx` used for `path` ("QInt8" / "QUInt8"), from its metadata."""
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    return next((p.value for p in proto.metadata_props if p.key == "slimformer.int8_weight_type"), None)
