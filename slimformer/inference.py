"""Serve an exported model folder: `slimformer.load(path).predict(texts)`.

Two backends compute the same logits: "torch" (the SubNet from model.safetensors) and "onnx"
(model.onnx, or model.int8.onnx with `quantized=True`, through onnxruntime). The ONNX backend
never imports torch or the search machinery, so a serving image needs only onnxruntime,
tokenizers and numpy. Both backends tokenize the same way (tokenizer.json via `tokenizers`), so
their predictions differ only by floating point.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from slimformer.errors import ModelFormatError
from slimformer.model_format import FORMAT, FORMAT_VERSION, INPUT_NAMES, read_config  # noqa: F401 - re-exported

BACKENDS = ("torch", "onnx")


class _Encoder:
    """Texts -> padded int64 arrays, from tokenizer.json (fast, torch-free)."""

    def __init__(self, folder: Path, max_length: int, pad_id: int):
        path = folder / "tokenizer.json"
        if not path.is_file():
            raise ModelFormatError(f"{path}: missing; the folder has no tokenizer")
        from tokenizers import Tokenizer

        try:
            self.tokenizer = Tokenizer.from_file(str(path))
        except Exception as exc:  # tokenizers raises a bare Exception for malformed files
            raise ModelFormatError(f"{path}: unreadable ({exc})") from None
        self.tokenizer.enable_truncation(max_length)
        pad_token = self.tokenizer.id_to_token(pad_id) or "[PAD]"
        self.tokenizer.enable_padding(pad_id=pad_id, pad_token=pad_token)

    def __call__(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        enc = self.tokenizer.encode_batch(list(texts))
        return {
            "input_ids": np.array([e.ids for e in enc], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in enc], dtype=np.int64),
            "token_type_ids": np.array([e.type_ids for e in enc], dtype=np.int64),
        }


class _TorchBackend:
    def __init__(self, folder: Path):
        import torch

        from slimformer.supernet.load import load_subnet

        self._torch = torch
        self.model, _, _ = load_subnet(folder)

    def __call__(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        torch = self._torch
        with torch.inference_mode():
            out = self.model(**{k: torch.from_numpy(batch[k]) for k in INPUT_NAMES})
        return out["logits"].float().numpy()


class _OnnxBackend:
    def __init__(self, folder: Path, quantized: bool, threads: int | None = None):
        import onnxruntime as ort

        path = folder / ("model.int8.onnx" if quantized else "model.onnx")
        if not path.is_file():
            raise ModelFormatError(f"{path}: missing; export the folder with ONNX (export_folder)")
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        if threads is not None:  # else onnxruntime's default: one thread per physical core
            opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
        try:
            self.session = ort.InferenceSession(
                str(path), sess_options=opts, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
            raise ModelFormatError(f"{path}: onnxruntime cannot load it ({exc})") from None

    def __call__(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        return self.session.run(["logits"], {k: batch[k] for k in INPUT_NAMES})[0]


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)  # shift so exp never overflows
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


class TextClassifier:
    """A loaded model folder. `clf(texts)` == `clf.predict(texts)` -> label names.

    Attributes:
        labels: label names, index = class id.
        backend: "torch" or "onnx".
        config: the folder's config.json document.
    """

    def __init__(
        self, folder: Path | str, backend: str = "torch", quantized: bool = False, batch_size: int = 32,
        threads: int | None = None,
    ):
        if backend not in BACKENDS:
            raise ValueError(f"backend: {backend!r} is not one of {list(BACKENDS)}")
        if quantized and backend != "onnx":
            raise ValueError("quantized=True needs backend='onnx' (the int8 model is an ONNX file)")
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
            raise ValueError(f"threads: expected a positive integer or None, got {threads!r}")
        self.folder = Path(folder)
        self.config = read_config(self.folder)
        self.labels: list[str] = list(self.config["labels"])
        self.backend = backend
        self.batch_size = max(1, int(batch_size))
        tok = self.config.get("tokenizer") or {}
        max_length = min(int(tok.get("max_length", 128)), int(self.config.get("max_position", 512)))
        self._encode = _Encoder(self.folder, max_length, int(self.config.get("pad_token_id", 0)))
        self._run = (_TorchBackend(self.folder) if backend == "torch"
                     else _OnnxBackend(self.folder, quantized, threads))

    def logits(self, texts: Sequence[str]) -> np.ndarray:
        """Raw logits [len(texts), num_labels] as float32, computed in batches of `batch_size`.

        Raises:
            TypeError: if `texts` is a single string or holds non-strings.
        """
        if isinstance(texts, str):
            raise TypeError("texts: pass a list of strings, not one string")
        texts = list(texts)
        if not all(isinstance(t, str) for t in texts):
            raise TypeError("texts: every item must be a string")
        if not texts:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        # Batches of texts of similar length pad less (longest first); rows go back to their texts' places.
        order = np.argsort([-len(t) for t in texts], kind="stable")
        step = self.batch_size
        parts = [self._run(self._encode([texts[j] for j in order[i : i + step]])) for i in range(0, len(texts), step)]
        out = np.empty((len(texts), parts[0].shape[-1]), dtype=parts[0].dtype)
        out[order] = np.concatenate(parts, axis=0)
        return out

    def predict(self, texts: Sequence[str]) -> list[str]:
        """The most likely label name for each text."""
        return [self.labels[i] for i in self.logits(texts).argmax(axis=-1)]

    def predict_proba(self, texts: Sequence[str]) -> list[dict[str, float]]:
        """Per text, {label name: probability} (softmax of the logits)."""
        probs = _softmax(self.logits(texts).astype(np.float64))
        return [dict(zip(self.labels, map(float, row), strict=True)) for row in probs]

    def __call__(self, texts: Sequence[str]) -> list[str]:
        return self.predict(texts)

    def __repr__(self) -> str:
        return f"TextClassifier({str(self.folder)!r}, backend={self.backend!r}, labels={self.labels})"


def load(
    path: Path | str, backend: str = "torch", quantized: bool = False, batch_size: int = 32,
    threads: int | None = None,
) -> TextClassifier:
    """Load an exported model folder for inference.

    Args:
        path: a folder written by `slimformer.supernet.export.export_folder` / `save_subnet`.
        backend: "torch" (model.safetensors) or "onnx" (onnxruntime only; no torch import).
        quantized: with backend="onnx", use model.int8.onnx instead of model.onnx.
        batch_size: texts per forward pass.
        threads: with backend="onnx", onnxruntime's intra-op threads (None: one per physical core).
            The torch backend follows `torch.set_num_threads`.

    Returns:
        A TextClassifier.

    Raises:
        ModelFormatError: naming the missing or bad file.
        ValueError: unknown backend, quantized without the ONNX backend, or threads not a positive integer.
    """
    return TextClassifier(path, backend=backend, quantized=quantized, batch_size=batch_size, threads=threads)
