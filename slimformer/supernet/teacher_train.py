"""Fine-tuning the teacher's classifier on a task: settings, the sequence length, and the loop.

The loop trains for at most `epochs` passes and scores dev after each, by the job's metric (accuracy,
or macro-F1 on a job that optimises it: `TeacherSettings.select`); it stops once that has not
improved for `patience` evaluations and keeps the best state it saw (early stopping with the best
checkpoint), so a teacher is neither undertrained nor overfitted whatever the data set's size.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import torch

from slimformer.data.types import Example, iter_batches
from slimformer.errors import TeacherError
from slimformer.metrics import classification_metrics
from slimformer.supernet.device import to_device, training_device
from slimformer.supernet.task_score import predict_logits
from slimformer.supernet.teacher_model import TeacherClassifier

ProgressFn = Callable[[dict[str, Any]], None]

# Sequence length chosen from the data: this percentile of training-text token counts, rounded up
# to a multiple of 8 and kept within [MIN, MAX]. Rotten Tomatoes reviews get 64, long news
# articles 256. With batches grouped by length (data.types.batch_order) only the longest texts pay
# for a long max_length, so it can cover 99% of texts rather than 95%.
LENGTH_PERCENTILE = 99
MIN_MAX_LENGTH, MAX_MAX_LENGTH = 16, 256
# The most epochs the step floor (`TeacherSettings.min_steps`) may ask for, to bound what a tiny split
# costs. The news-topics teacher (1,010 documents, 256 tokens) ran all 10 in 2,221 s on 2 cores; its
# best dev accuracy came at epoch 8.
MAX_FLOOR_EPOCHS = 10
SELECT_METRICS = ("accuracy", "macro_f1")


@dataclass(frozen=True)
class TeacherSettings:
    """How the teacher is fine-tuned on a task.

    Attributes:
        epochs: At most this many passes over the training examples.
        patience: Stop after this many epochs without a better dev accuracy (0: never stop early).
        lr: Peak AdamW learning rate (linear warmup, then linear decay to 0 over `epochs`).
        batch_size: Examples per step.
        max_length: Truncation length in tokens; None picks it from the data (`pick_max_length`).
        seed: Seeds head initialisation, dropout and shuffling.
        max_train_examples: Train on the first n examples only (None = all); the tiny preset uses it.
        threads: torch threads while training (None = leave as is). Not part of the cache key:
            it changes speed, not what is learned.
        warmup_ratio: Share of steps spent warming the learning rate up.
        weight_decay: AdamW weight decay (not applied to biases and LayerNorm weights).
        min_steps: a small training split gets more epochs, up to `MAX_FLOOR_EPOCHS`, so that training
            runs at least this many optimizer steps (0: epochs as given). See `with_step_floor`.
        select: the dev metric that stops training and picks the kept state: "accuracy", or "macro_f1"
            on a job that optimises it, as its students are picked. Part of the cache key only when
            not "accuracy", so a teacher cached before it existed keeps its key.
    """

    epochs: int = 4
    patience: int = 1
    lr: float = 5e-5
    batch_size: int = 32
    max_length: int | None = None
    seed: int = 0
    max_train_examples: int | None = None
    threads: int | None = None
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    min_steps: int = 0
    select: str = "accuracy"

    def __post_init__(self) -> None:
        if self.select not in SELECT_METRICS:
            raise ValueError(f"select: {self.select!r} is not one of {', '.join(SELECT_METRICS)}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def key_dict(self) -> dict[str, Any]:
        """The settings that change the fine-tuned model, once `resolved`: all but threads, and min_steps,
        whose whole effect is on the resolved epochs and patience (so a teacher cached before it existed
        keeps its key where the floor changes nothing)."""
        doc = asdict(self)
        doc.pop("threads")
        doc.pop("min_steps")
        if doc["select"] == "accuracy":
            doc.pop("select")
        return doc

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> TeacherSettings:
        return cls(**doc)

    def resolved(self, tokenizer: Any, texts: Sequence[str]) -> TeacherSettings:
        """These settings for training on `texts`: `max_length` picked from them when it was left to the
        data, and epochs raised to the step floor for their number."""
        settings = self.with_step_floor(len(texts))
        if settings.max_length is not None:
            return settings
        return replace(settings, max_length=pick_max_length(tokenizer, texts))

    def with_step_floor(self, rows: int) -> TeacherSettings:
        """Enough epochs over `rows` examples for `min_steps` optimizer steps, at most `MAX_FLOOR_EPOCHS`.

        Three epochs are plenty for 10,000 reviews (957 steps) but leave a 1,000-document task at 96:
        the news-topics teacher (bench/unseen_tasks.py) was still climbing when they ran out (dev
        accuracy 0.56, 0.70, 0.71 after each). Where epochs are raised, patience is at least 2, since
        one worse epoch on a small dev split is as likely noise as a peak.
        """
        if not self.min_steps or rows <= 0:
            return self
        per_epoch = math.ceil(rows / self.batch_size)
        epochs = min(MAX_FLOOR_EPOCHS, math.ceil(self.min_steps / per_epoch))
        if epochs <= self.epochs:
            return self
        return replace(self, epochs=epochs, patience=max(self.patience, 2) if self.patience else 0)


def pick_max_length(tokenizer: Any, texts: Sequence[str], sample: int = 2000) -> int:
    """A sequence length that covers LENGTH_PERCENTILE% of `texts` without truncation.

    Args:
        tokenizer: The teacher's tokenizer.
        texts: Training texts; an evenly spaced sample of at most `sample` is tokenised.

    Returns:
        The percentile token count (with special tokens), rounded up to a multiple of 8, clamped
        to [MIN_MAX_LENGTH, MAX_MAX_LENGTH].
    """
    if not texts:
        return MIN_MAX_LENGTH
    step = max(1, len(texts) // sample)
    picked = list(texts[::step])[:sample]
    # Untruncated on purpose, so verbose=False: the "longer than the maximum sequence length" warning is
    # about running such ids through the model, which nothing here does.
    lengths = sorted(len(ids) for ids in tokenizer(picked, truncation=False, verbose=False)["input_ids"])
    at = lengths[min(len(lengths) - 1, math.ceil(LENGTH_PERCENTILE / 100 * len(lengths)) - 1)]
    return int(min(MAX_MAX_LENGTH, max(MIN_MAX_LENGTH, 8 * math.ceil(at / 8))))


def train_classifier(
    model: TeacherClassifier,
    tokenizer: Any,
    train: Sequence[Example],
    dev: Sequence[Example],
    settings: TeacherSettings,
    emit: ProgressFn,
) -> tuple[list[float], list[float], list[float]]:
    """AdamW with linear warmup and decay, early stopping on dev (`settings.select`), best state kept.

    Trains on the best available device (CUDA when present) and returns the model on the CPU.

    Returns:
        (mean training loss of each epoch run, dev accuracy after each epoch run, dev `settings.select`
        after each epoch run: the figure that stopped training and picked the state).

    Raises:
        TeacherError: no training examples.
    """
    if not train:
        raise TeacherError("cannot fine-tune the teacher: the task has no training examples")
    device = training_device()
    model.to(device)
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]  # biases and LayerNorm weights
    # PyTorch's default AdamW, not supernet/optim.py's fused one: a cached teacher is keyed by its
    # recipe, so one trained on a fresh machine must come out as the entries trained before (the fused
    # kernel rounds differently). Training the teacher is once per task; the fused step pays in the job.
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
    losses: list[float] = []
    dev_history: list[float] = []
    select_history: list[float] = []
    best_state, best_dev, stale = None, -math.inf, 0
    step = 0
    for epoch in range(settings.epochs):
        model.train()
        epoch_loss = 0.0
        batches = iter_batches(
            tokenizer, texts, labels, settings.batch_size, settings.max_length, shuffle=True,
            seed=settings.seed + epoch, group_by_length=True,
        )
        for batch in batches:
            batch = to_device(batch, device)
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
        if not dev:
            continue  # nothing to stop on: train every epoch
        figures = dev_figures(model, tokenizer, dev, settings)
        dev_history.append(figures["accuracy"])
        select_history.append(figures[settings.select])
        emit({"stage": "teacher", "event": "epoch", "epoch": epoch + 1, "dev_accuracy": figures["accuracy"],
              f"dev_{settings.select}": figures[settings.select]})
        if select_history[-1] > best_dev:
            best_dev, stale = select_history[-1], 0
            best_state = copy.deepcopy({k: v.detach().cpu() for k, v in model.state_dict().items()})
        else:
            stale += 1
            if settings.patience and stale >= settings.patience:
                break
    model.to("cpu")
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return losses, dev_history, select_history


def dev_figures(model: TeacherClassifier, tokenizer: Any, dev: Sequence[Example],
                settings: TeacherSettings) -> dict[str, float]:
    """Accuracy and macro-F1 of `model` on `dev`, from one pass (the model back in training mode after)."""
    logits = predict_logits(model, tokenizer, [e.text for e in dev], settings.max_length, settings.batch_size)
    m = classification_metrics(logits.argmax(-1).tolist(), [e.label for e in dev], logits.shape[-1])
    return {"accuracy": m["accuracy"], "macro_f1": m["macro_f1"]}
