"""Load a model folder written by `export` back into a SubNet and its tokenizer.

Every failure is a ModelFormatError naming the file at fault (config.json, model.safetensors,
the tokenizer) and, for weights that do not fit the architecture in config.json, the first
tensor that does not, so a broken or mismatched folder is reported before anything runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from slimformer.errors import ModelFormatError
from slimformer.model_format import read_config
from slimformer.supernet.export import CONFIG_FILE, WEIGHTS_FILE
from slimformer.supernet.subnet import SubNet, SubNetConfig


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
