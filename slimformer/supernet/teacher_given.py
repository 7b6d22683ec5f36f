"""The teacher as given: a folder with a sequence-classification head is distilled from unchanged.

Its own logits (reordered into the task's label order, contracts/teacher_labels.py) are the
distillation target and its accuracy the teacher's figures; nothing is fine-tuned. The students
pool by masked mean (their head is a Linear on the mean-pooled last hidden state), while a Hugging
Face head reads the [CLS] token through its own layers, so the students' head starts from a least
squares fit of the teacher's logits on the mean-pooled training states (`fit_mean_pool_head`): the
largest student starts as close to the teacher as a mean-pooling head can be. The fit and the
teacher's figures are cached per teacher, task and settings, so every process of a job (Ray tasks
included) reads them instead of recomputing them.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
from torch import nn

from slimformer.contracts.encoder_families import bert_shape
from slimformer.contracts.teacher_labels import TeacherLabelsMismatch, head_labels, label_order
from slimformer.data.types import TaskData, iter_batches
from slimformer.errors import TeacherError
from slimformer.search_space.space import TeacherFacts
from slimformer.supernet.task_teacher import TaskTeacher, cache_entry_writer
from slimformer.supernet.teacher_folder import (
    load_bert,
    load_tokenizer,
    quiet_transformers,
    teacher_fingerprint,
    weights_file,
)
from slimformer.supernet.teacher_model import ClassifierOutput, evaluate_accuracy, mean_pool
from slimformer.supernet.teacher_train import ProgressFn, TeacherSettings

CACHE_FORMAT = "slimformer-given-teacher-v1"
HEAD_FIT_EXAMPLES = 4096  # training texts the students' head is fitted on (enough for D + 1 unknowns)
_TOKEN_TYPES = ("bert", "electra")  # families whose forward takes token_type_ids


class GivenClassifier(nn.Module):
    """A Hugging Face sequence classifier used unchanged, seen as slimformer's teachers are.

    forward returns the model's own logits, columns in the task's label order, and its hidden
    states when asked. `encoder` is its encoder in the BERT layout (built on first use, for the
    supernet's warm start) and `classifier` the students' mean-pooling head; neither is a
    submodule, so parameter counts and devices are the given model's alone.

    Args:
        given: the loaded ...ForSequenceClassification in eval mode.
        order: for each task label, the index of the model's output that predicts it.
        head: the fitted mean-pooling head (Linear hidden -> labels).
        folder: the teacher folder (to build `encoder` from).
    """

    def __init__(self, given: nn.Module, order: Sequence[int], head: nn.Linear, folder: Path):
        super().__init__()
        self.given = given
        self.family = given.config.model_type
        self.num_labels = len(order)
        self.register_buffer("order", torch.tensor(list(order), dtype=torch.long), persistent=False)
        object.__setattr__(self, "classifier", head)
        object.__setattr__(self, "_folder", Path(folder))
        object.__setattr__(self, "_encoder", None)

    @property
    def config(self) -> Any:
        return self.given.config

    @property
    def encoder(self) -> nn.Module:
        """The encoder as a BertModel without pooler (equal outputs on every real token)."""
        if self._encoder is None:
            object.__setattr__(self, "_encoder", load_bert(self._folder, add_pooling_layer=False))
        return self._encoder

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        output_hidden_states: bool = False,
        labels: torch.Tensor | None = None,
    ) -> ClassifierOutput:
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None and self.family in _TOKEN_TYPES:
            inputs["token_type_ids"] = token_type_ids
        out = self.given(**inputs, output_hidden_states=output_hidden_states)
        logits = out.logits.index_select(1, self.order)
        loss = nn.functional.cross_entropy(logits, labels) if labels is not None else None
        return ClassifierOutput(logits, tuple(out.hidden_states) if output_hidden_states else None, loss)


def load_given_model(folder: Path) -> nn.Module:
    """AutoModelForSequenceClassification from a checked folder: eager attention, eval mode, every weight found.

    Raises:
        TeacherError: the weights cannot be loaded or do not hold the whole classifier.
    """
    from transformers import AutoModelForSequenceClassification

    file = weights_file(folder)
    try:
        with quiet_transformers():
            model, info = AutoModelForSequenceClassification.from_pretrained(
                folder, attn_implementation="eager", local_files_only=True, output_loading_info=True,
            )
    except Exception as exc:
        raise TeacherError(f"teacher weights {file} cannot be loaded as a sequence classifier "
                           f"({type(exc).__name__}: {str(exc)[:300]})") from exc
    bad = list(info.get("missing_keys", ())) or [str(k) for k in info.get("mismatched_keys", ())]
    if bad:
        raise TeacherError(
            f"teacher weights {file} do not hold the classifier config.json describes: {len(bad)} tensors "
            f"missing or of the wrong shape, e.g. {', '.join(sorted(bad)[:3])}"
        )
    return model.float().eval()


@torch.no_grad()
def fit_mean_pool_head(
    model: nn.Module, tokenizer: Any, texts: Sequence[str], max_length: int, batch_size: int = 32
) -> tuple[nn.Linear, dict[str, float]]:
    """A Linear on the mean-pooled last hidden state fitted to `model`'s logits by least squares.

    Ridge-regularised just enough to stay solvable with fewer texts than hidden dimensions.

    Returns:
        (the head, {"examples", "rmse", "r2"} of the fit on those texts).
    """
    if not texts:
        raise TeacherError("cannot fit the students' head to the given teacher: the task has no training examples")
    pooled, targets = [], []
    for batch in iter_batches(tokenizer, list(texts), None, batch_size, max_length):
        out = model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"], output_hidden_states=True)
        pooled.append(mean_pool(out.hidden_states[-1], batch["attention_mask"]))
        targets.append(out.logits)
    x, y = torch.cat(pooled).double(), torch.cat(targets).double()
    xa = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], dim=1)
    gram = xa.T @ xa
    ridge = 1e-6 * gram.diagonal().mean().clamp(min=1e-12) * torch.eye(gram.shape[0], dtype=x.dtype)
    w = torch.linalg.solve(gram + ridge, xa.T @ y)  # [D + 1, C]
    head = nn.Linear(x.shape[1], y.shape[1])
    with torch.no_grad():
        head.weight.copy_(w[:-1].T.float())
        head.bias.copy_(w[-1].float())
    residual = y - xa @ w
    spread = ((y - y.mean(0)) ** 2).sum()
    r2 = 1.0 - float((residual ** 2).sum() / spread) if spread > 0 else 1.0
    return head.eval(), {"examples": len(x), "rmse": float(residual.pow(2).mean().sqrt()), "r2": r2}


def given_cache_key(folder: Path, task: TaskData, settings: TeacherSettings) -> str:
    doc = {"format": CACHE_FORMAT, "teacher": teacher_fingerprint(folder), "task": task.fingerprint(),
           "settings": settings.key_dict()}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:20]


def given_teacher(
    folder: Path, task: TaskData, settings: TeacherSettings, cache_root: Path, emit: ProgressFn
) -> TaskTeacher:
    """The folder's own classifier as the task teacher: evaluated, its students' head fitted, nothing trained.

    Args:
        folder: a checked folder whose config.json is a ...ForSequenceClassification.
        task: the task (its labels must match the head's, by name or LABEL_i index).
        settings: resolved teacher settings (max_length; max_train_examples bounds the fit).
        cache_root: where the figures and the fitted head are kept (`given-<key>/`).
        emit: progress events ({"stage": "teacher", "event": "evaluated" | "cache_hit", ...}).

    Returns:
        TaskTeacher with a GivenClassifier, meta["source"] == "given".

    Raises:
        TeacherError: the head's labels are not the task's, or the weights are not the classifier.
    """
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    try:
        order = label_order(config, task.labels)
    except TeacherLabelsMismatch as exc:
        raise TeacherError(f"teacher folder {folder}: {exc}") from None
    facts = TeacherFacts.from_hf_config(SimpleNamespace(**bert_shape(config)), num_labels=task.num_labels)
    tokenizer = load_tokenizer(folder)
    given = load_given_model(folder)
    entry = cache_root / f"given-{given_cache_key(folder, task, settings)}"
    if (entry / "meta.json").is_file() and (entry / "head.safetensors").is_file():
        from safetensors.torch import load_file

        meta = json.loads((entry / "meta.json").read_text(encoding="utf-8"))
        state = load_file(str(entry / "head.safetensors"))
        head = nn.Linear(state["weight"].shape[1], state["weight"].shape[0])
        head.load_state_dict(state)
        emit({"stage": "teacher", "event": "cache_hit", "cache_path": str(entry)})
        model = GivenClassifier(given, order, head.eval(), folder).eval()
        return TaskTeacher(model, tokenizer, facts, _float(meta.get("dev_accuracy")),
                           _float(meta.get("test_accuracy")), entry, True, [], meta)

    start = time.monotonic()
    model = GivenClassifier(given, order, nn.Linear(facts.hidden_size, task.num_labels), folder).eval()
    bound = min(HEAD_FIT_EXAMPLES, settings.max_train_examples or HEAD_FIT_EXAMPLES)
    head, fit = fit_mean_pool_head(model, tokenizer, [ex.text for ex in task.train[:bound]], settings.max_length)
    object.__setattr__(model, "classifier", head)
    dev = evaluate_accuracy(model, tokenizer, task.dev, settings.batch_size, settings.max_length)
    test = evaluate_accuracy(model, tokenizer, task.test, settings.batch_size, settings.max_length)
    emit({"stage": "teacher", "event": "evaluated", "dev_accuracy": dev, "test_accuracy": test})
    meta = {
        "source": "given", "fine_tuned": False, "model_type": config.get("model_type"),
        "teacher": str(folder), "teacher_path": str(folder), "task": task.name,
        "task_fingerprint": task.fingerprint(), "labels": list(task.labels), "head_labels": head_labels(config),
        "label_order": order, "num_labels": task.num_labels, "train_losses": [],
        "dev_accuracy": _json_float(dev), "test_accuracy": _json_float(test),
        "params": sum(p.numel() for p in model.parameters()), "student_head_fit": fit,
        "settings": settings.to_dict(), "seconds": round(time.monotonic() - start, 3), "created_at": time.time(),
    }
    _write_entry(cache_root, entry, head, meta)
    return TaskTeacher(model, tokenizer, facts, dev, test, entry, False, [], meta)


def _write_entry(cache_root: Path, entry: Path, head: nn.Linear, meta: dict[str, Any]) -> None:
    """meta.json and head.safetensors through a temporary sibling and one atomic rename."""
    from safetensors.torch import save_file

    with cache_entry_writer(cache_root, entry) as tmp:
        save_file({k: v.detach().contiguous() for k, v in head.state_dict().items()}, str(tmp / "head.safetensors"))
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")


def _json_float(x: float) -> float | None:
    return None if math.isnan(x) else x


def _float(x: float | None) -> float:
    return math.nan if x is None else float(x)
