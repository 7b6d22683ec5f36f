"""The task teacher: the teacher fine-tuned on a task, cached on disk by content hash.

A folder with its own sequence-classification head is the exception: it is used as given
(teacher_given.py), never fine-tuned. Otherwise, before distillation the teacher is fine-tuned on the
task with a mean-pooling classification head (`TeacherClassifier`, teacher_model.py) until dev accuracy
stops improving (teacher_train.py); the result is cached on disk, keyed by a content hash of teacher
files, task data and settings, so every later job on the same task reuses it. Folders are found and
checked by teacher_folder.py; this module re-exports their names so callers have one place to import the
teacher from.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from slimformer.contracts.teacher_labels import is_given_classifier
from slimformer.data.types import TaskData
from slimformer.errors import TeacherError
from slimformer.search_space.space import TeacherFacts
from slimformer.supernet.task_teacher import TaskTeacher, cache_entry_writer  # noqa: F401 - re-exported
from slimformer.supernet.teacher_folder import (  # noqa: F401 - re-exported
    BUILTIN_TEACHERS,
    SUPPORTED_MODEL_TYPES,
    TOKENIZER_FILES,
    WEIGHT_FILES,
    BuiltinTeacher,
    check_teacher_folder,
    file_digest,
    load_bert,
    load_teacher,
    load_tokenizer,
    quiet_transformers,
    resolve_teacher,
    teacher_fingerprint,
    weight_keys,
    weights_file,
)
from slimformer.supernet.teacher_given import given_teacher
from slimformer.supernet.teacher_model import (  # noqa: F401 - re-exported
    ClassifierOutput,
    TeacherClassifier,
    evaluate_accuracy,
    mean_pool,
    teacher_hidden_states,
)
from slimformer.supernet.teacher_outputs import compute_train_outputs, save_train_outputs
from slimformer.supernet.teacher_train import ProgressFn, TeacherSettings, pick_max_length, train_classifier  # noqa: F401

log = logging.getLogger(__name__)

# Marks a folder whose weights hold a TeacherClassifier (bert.* + classifier.*), e.g. a cache entry.
HEAD_MARKER = "slimformer_head"
# v2: early stopping, max_length from the data. v3: batches grouped by length, max_length at the
# 99th percentile (a different teacher from the same settings, so v2 entries are not reused).
CACHE_FORMAT = "slimformer-teacher-cache-v3"


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

    A Hugging Face ...ForSequenceClassification head is not one: such a folder is used as given
    (teacher_given.py), its own head included.
    """
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    if config.get(HEAD_MARKER) != "mean_pool":
        return False
    return "classifier.weight" in weight_keys(weights_file(folder))


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
    bert = load_bert(folder, add_pooling_layer=False)
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
    return model.eval(), load_tokenizer(folder), facts


def fine_tune_teacher(
    teacher_name_or_path: str | os.PathLike[str],
    task: TaskData,
    settings: TeacherSettings | None,
    cache_dir: str | os.PathLike[str],
    progress: ProgressFn | None = None,
) -> TaskTeacher:
    """The teacher fine-tuned on `task`, from the cache when this exact job was done before.

    A folder that already holds a mean-pooling head with the task's labels (such as a cache entry) is
    only evaluated; a Hugging Face sequence classifier is used as given (`given_teacher`). Otherwise
    TeacherClassifier is trained on task.train, evaluated on dev and test, and saved under
    `cache_dir/<key>/` (model.safetensors, config.json, tokenizer files, meta.json). The entry is
    written to a temporary folder and renamed into place, so a crash never leaves half an entry and
    concurrent workers never see one.

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
        tokenizer = load_tokenizer(folder)
        train = task.train[: settings.max_train_examples]  # a None bound keeps them all
        settings = settings.resolved(tokenizer, [ex.text for ex in train])  # max_length from the data
        if has_classification_head(folder):
            return _evaluate_existing_head(folder, task, settings, emit)
        if is_given_classifier(json.loads((folder / "config.json").read_text(encoding="utf-8"))):
            return given_teacher(folder, task, settings, Path(cache_dir), emit)

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
        bert = load_bert(folder, add_pooling_layer=False)
        # fork_rng: seeding here must not move the caller's global RNG stream.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(settings.seed)
            model = TeacherClassifier(bert, task.num_labels)
            losses, dev_history, select_history = train_classifier(model, tokenizer, train, task.dev, settings,
                                                                   emit)
        model.eval()
        dev = evaluate_accuracy(model, tokenizer, task.dev, settings.batch_size, settings.max_length)
        test = evaluate_accuracy(model, tokenizer, task.test, settings.batch_size, settings.max_length)
        emit({"stage": "teacher", "event": "evaluated", "dev_accuracy": dev, "test_accuracy": test})
        # Every job on the task distils from these; kept in the entry, they are computed once (teacher_outputs.py).
        outputs = compute_train_outputs(model, tokenizer, [ex.text for ex in task.train], settings.max_length)
        meta = {
            "key": key,
            "source": "fine_tuned",
            "teacher": os.fspath(teacher_name_or_path),
            "teacher_path": str(folder),
            "task": task.name,
            "task_fingerprint": task.fingerprint(),
            "labels": list(task.labels),
            "num_labels": task.num_labels,
            "train_examples": len(train),
            "train_losses": losses,
            "dev_history": dev_history,
            "selected_by": settings.select,
            "dev_select_history": select_history,
            "epochs_run": len(losses),
            "dev_accuracy": _json_float(dev),
            "test_accuracy": _json_float(test),
            "params": sum(p.numel() for p in model.parameters()),
            "settings": settings.to_dict(),
            "seconds": round(time.monotonic() - start, 3),
            "created_at": time.time(),
        }
        _write_entry(cache_root, entry, model, tokenizer, task.labels, meta, outputs)
        facts = TeacherFacts.from_hf_config(model.config, num_labels=task.num_labels)
        return TaskTeacher(model, tokenizer, facts, dev, test, entry, False, losses, meta)




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
    outputs: dict[str, torch.Tensor],
) -> None:
    """Save a cache entry through a temporary sibling folder and one atomic rename."""
    from safetensors.torch import save_file

    with cache_entry_writer(cache_root, entry) as tmp:
        save_train_outputs(tmp, outputs)
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
        "key": None, "source": "head", "teacher": str(folder), "teacher_path": str(folder), "task": task.name,
        "task_fingerprint": task.fingerprint(), "labels": head_labels, "num_labels": model.num_labels,
        "train_losses": [], "dev_accuracy": _json_float(dev), "test_accuracy": _json_float(test),
        "params": sum(p.numel() for p in model.parameters()), "settings": settings.to_dict(),
        "seconds": round(time.monotonic() - start, 3), "created_at": time.time(),
    }
    return TaskTeacher(model, tokenizer, facts, dev, test, folder, True, [], meta)
