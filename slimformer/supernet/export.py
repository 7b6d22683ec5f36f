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
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from slimformer.errors import ModelFormatError, SlimformerError

# The folder format's torch-free half, shared with inference.py (which serves folders without torch).
from slimformer.model_format import FORMAT, FORMAT_VERSION, INPUT_NAMES, read_config
from slimformer.supernet.subnet import SubNet, SubNetConfig

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"
CARD_FILE = "README.md"
ONNX_FILE = "model.onnx"
INT8_FILE = "model.int8.onnx"
OUTPUT_NAME = "logits"
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


def _json_default(value: Any) -> Any:
    # Metrics often arrive as numpy or torch scalars; store their Python value.
    return value.item() if hasattr(value, "item") else str(value)


def _write_json(path: Path, doc: dict[str, Any]) -> None:
    path.write_text(json.dumps(doc, indent=2, default=_json_default) + "\n", encoding="utf-8")


# --- save / load -------------------------------------------------------------------------------


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


def _parse_config(folder: Path, doc: dict[str, Any]) -> SubNetConfig:
    path = folder / CONFIG_FILE
    try:
        cfg = SubNetConfig.from_dict(doc)
        cfg.parsed_arch  # noqa: B018 - validates the arch document, raising ArchError
    except (TypeError, ValueError) as exc:  # ArchError is a ValueError
        raise ModelFormatError(f"{path}: bad model config ({exc})") from None
    return cfg


def _check_weights(folder: Path, state: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    """Raise ModelFormatError naming the first tensor that does not fit the config's architecture."""
    path = folder / WEIGHTS_FILE
    for name, ref in expected.items():  # model order, so the first mismatch is the earliest layer
        if name not in state:
            raise ModelFormatError(
                f"{path}: tensor {name!r} missing; the architecture in config.json needs it"
            )
        if tuple(state[name].shape) != tuple(ref.shape):
            raise ModelFormatError(
                f"{path}: tensor {name!r} has shape {list(state[name].shape)}, "
                f"the architecture in config.json needs {list(ref.shape)}"
            )
    extra = [k for k in state if k not in expected]
    if extra:
        raise ModelFormatError(f"{path}: tensor {extra[0]!r} is not part of the architecture in config.json")


def load_tokenizer(folder: Path, vocab_size: int | None = None) -> Any:
    """The transformers tokenizer saved in a model folder.

    Raises:
        ModelFormatError: no tokenizer files, unreadable ones, or a vocabulary larger than the model's.
    """
    folder = Path(folder)
    if not any((folder / f).is_file() for f in ("tokenizer.json", "vocab.txt")):
        raise ModelFormatError(f"{folder / 'tokenizer.json'}: missing; the folder has no tokenizer files")
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except Exception as exc:  # transformers raises many types for a broken tokenizer
        raise ModelFormatError(f"{folder / 'tokenizer.json'}: cannot load the tokenizer ({exc})") from None
    if vocab_size is not None and len(tokenizer) > vocab_size:
        raise ModelFormatError(
            f"{folder / 'tokenizer.json'}: {len(tokenizer)} tokens but the model embeds only {vocab_size}"
        )
    return tokenizer


def load_subnet(folder: Path) -> tuple[SubNet, Any, dict[str, Any]]:
    """Load a model folder written by `save_subnet` / `export_folder`.

    Args:
        folder: the model folder.

    Returns:
        (SubNet in eval mode, tokenizer, config.json document).

    Raises:
        ModelFormatError: naming the missing or bad file (config.json, model.safetensors, tokenizer)
            and, for weights that do not fit the architecture, the first mismatching tensor.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = Path(folder)
    doc = read_config(folder)
    cfg = _parse_config(folder, doc)
    path = folder / WEIGHTS_FILE
    if not path.is_file():
        raise ModelFormatError(f"{path}: missing; the folder has no weights")
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelFormatError(f"{path}: unreadable ({exc})") from None
    model = SubNet(cfg)
    _check_weights(folder, state, model.state_dict())
    model.load_state_dict(state, strict=True)
    tokenizer = load_tokenizer(folder, cfg.vocab_size)
    return model.eval(), tokenizer, doc


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


# --- model card --------------------------------------------------------------------------------

_ONNX_SNIPPET = """```python
import json
import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

folder = "path/to/this/folder"
config = json.load(open(f"{folder}/config.json"))
tok = Tokenizer.from_file(f"{folder}/tokenizer.json")
tok.enable_truncation(config["tokenizer"]["max_length"])
tok.enable_padding(pad_id=config["pad_token_id"])
enc = tok.encode_batch(["a first text", "another one"])
feed = {
    "input_ids": np.array([e.ids for e in enc], dtype=np.int64),
    "attention_mask": np.array([e.attention_mask for e in enc], dtype=np.int64),
    "token_type_ids": np.array([e.type_ids for e in enc], dtype=np.int64),
}
sess = ort.InferenceSession(f"{folder}/model.onnx", providers=["CPUExecutionProvider"])
logits = sess.run(["logits"], feed)[0]
print([config["labels"][i] for i in logits.argmax(-1)])
```"""


def _format_number(value: Any) -> str:
    value = value.item() if hasattr(value, "item") else value
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def write_card(
    folder: Path, config: dict[str, Any], metrics: dict[str, Any] | None, sizes: dict[str, int] | None = None
) -> Path:
    """Write README.md: architecture, parameters, metrics, files and how to load the model.

    Args:
        folder: the model folder.
        config: its config.json document.
        metrics: optional metrics; nested values are shown as JSON.
        sizes: optional {file name: bytes} for a files table.

    Returns:
        The README path.
    """
    from slimformer.search_space import Arch

    arch = Arch.from_dict(config["arch"])
    lines = [
        f"# slimformer student `{config['arch_hash']}`",
        "",
        "A compressed BERT-style text classifier found by slimformer's architecture search.",
        "",
        f"- parameters: {config['num_params']:,}",
        f"- hidden size: {arch.hidden}, non-identity sub-layers: {arch.depth()}",
        f"- labels: {', '.join(config['labels'])}",
        f"- max tokens per text: {config['tokenizer']['max_length']}",
        "",
        "## Architecture",
        "",
        "| block | " + " | ".join(f"slot {s}" for s in range(len(arch.blocks[0]))) + " |",
        "|---" * (len(arch.blocks[0]) + 1) + "|",
    ]
    lines += [f"| {b} | " + " | ".join(str(op) for op in block) + " |" for b, block in enumerate(arch.blocks)]
    lines += ["", "```json", json.dumps(config["arch"]), "```", ""]
    if metrics:
        lines += ["## Metrics", "", "| metric | value |", "|---|---|"]
        for key, value in metrics.items():
            nested = isinstance(value, dict | list)
            shown = json.dumps(value, default=_json_default) if nested else _format_number(value)
            lines.append(f"| {key} | {shown} |")
        lines.append("")
    if sizes:
        lines += ["## Files", "", "| file | bytes |", "|---|---|"]
        lines += [f"| {name} | {size:,} |" for name, size in sizes.items()]
        lines.append("")
    lines += [
        "## Use with slimformer",
        "",
        "```python",
        "import slimformer",
        'clf = slimformer.load("path/to/this/folder")            # torch',
        'clf = slimformer.load("path/to/this/folder", backend="onnx")  # onnxruntime only',
        'clf.predict(["a first text", "another one"])            # label names',
        "```",
        "",
        "## Use with plain onnxruntime",
        "",
        "`model.onnx` (and the smaller, slightly less exact `model.int8.onnx`) take int64 `input_ids`,",
        "`attention_mask` and `token_type_ids` of shape [batch, sequence] and return `logits`",
        "[batch, labels]. Only onnxruntime, tokenizers and numpy are needed:",
        "",
        _ONNX_SNIPPET,
        "",
    ]
    path = Path(folder) / CARD_FILE
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


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

