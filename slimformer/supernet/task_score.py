"""Shared-weight scoring on the task: what a sub-network of the task-aware supernet does on held-out data.

whittle / plm_pruning score sub-networks directly on dev with the shared weights, no retraining.
We report two figures per architecture: accuracy on the held-out examples, and the mean KL
divergence from the task teacher's predictive distribution (smooth where accuracy is a step
function of a few hundred examples, so it orders near-equal candidates better).

Held-out batches are tokenised once per scorer; a score then costs one forward pass per batch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from slimformer.data.types import Example, batch_order, encode_batch, token_lengths
from slimformer.metrics import classification_metrics
from slimformer.search_space import Arch
from slimformer.supernet.device import to_device

# "f1_error" (1 - macro-F1) stands in for "error" when the job's metric is macro-F1 (an imbalanced task).
SCORE_METRICS = ("kl", "error", "f1_error")


def logits_of(output: Any) -> torch.Tensor:
    """The logits of a model output: a dict (SubNet, Supernet) or an object with `.logits` (the teacher)."""
    return output["logits"] if isinstance(output, dict) else output.logits


@torch.no_grad()
def predict_rows(
    model: nn.Module, tokenizer: Any, texts: Sequence[str], max_length: int,
    readouts: Sequence[Callable[[Any, dict], torch.Tensor]], batch_size: int = 64, **model_kwargs: Any,
) -> list[torch.Tensor]:
    """One [N, *] tensor per readout, row i for texts[i], computed on the model's device in one pass.

    Each readout maps (model output, encoded batch) to that batch's rows; the tensors come back on
    the CPU in float32. With no texts every tensor is [0, 0].
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    outs: list[torch.Tensor] = []
    try:
        # Batches of similar length pad less; each row is written back to its text's place.
        for idx in batch_order(len(texts), batch_size, lengths=token_lengths(tokenizer, texts, max_length)):
            batch = to_device(encode_batch(tokenizer, [texts[i] for i in idx], max_length=max_length), device)
            output = model(**batch, **model_kwargs)
            rows = [read(output, batch).float().cpu() for read in readouts]
            if not outs:
                outs = [torch.empty(len(texts), *r.shape[1:]) for r in rows]
            for out, r in zip(outs, rows, strict=True):
                out[idx] = r
    finally:
        model.train(was_training)
    return outs or [torch.zeros(0, 0) for _ in readouts]


def predict_logits(
    model: nn.Module, tokenizer: Any, texts: Sequence[str], max_length: int, batch_size: int = 64
) -> torch.Tensor:
    """[N, C] logits of `model` for `texts`, in order, computed on the model's device, returned on the CPU."""
    (logits,) = predict_rows(model, tokenizer, texts, max_length, [lambda out, _: logits_of(out)], batch_size)
    return logits


@dataclass(frozen=True)
class TaskScore:
    """One architecture's figures on the held-out examples, measured with the shared weights."""

    accuracy: float
    kl: float  # mean KL(teacher || student) at temperature 1, nats
    macro_f1: float | None = None  # None: scored before macro-F1 was measured (an older cache)

    def value(self, metric: str = "kl") -> float:
        """The number to minimise: the KL, the error rate (1 - accuracy), or 1 - macro-F1."""
        if metric not in SCORE_METRICS:
            raise ValueError(f"metric: {metric!r} not in {list(SCORE_METRICS)}")
        if metric == "f1_error":
            if self.macro_f1 is None:
                raise ValueError("this score has no macro-F1 (scored by an older version)")
            return 1.0 - self.macro_f1
        return self.kl if metric == "kl" else 1.0 - self.accuracy


class SharedWeightScorer:
    """Scores architectures inside a supernet on fixed held-out examples.

    Args:
        tokenizer: the teacher's tokenizer.
        examples: held-out labelled examples (e.g. the first n of dev).
        teacher_logits: [len(examples), C] the task teacher's logits on them.
        max_length: truncation length (the teacher's).
        batch_size: examples per forward pass.
    """

    def __init__(self, tokenizer: Any, examples: Sequence[Example], teacher_logits: torch.Tensor, max_length: int,
                 batch_size: int = 128):
        if len(examples) != len(teacher_logits):
            raise ValueError(f"teacher_logits: {len(teacher_logits)} rows for {len(examples)} examples")
        if not examples:
            raise ValueError("examples: need at least one held-out example to score on")
        lengths = token_lengths(tokenizer, [ex.text for ex in examples], max_length)  # similar lengths pad less
        self.batches = [
            (encode_batch(tokenizer, [examples[i].text for i in idx], [examples[i].label for i in idx], max_length),
             teacher_logits[idx])
            for idx in batch_order(len(examples), batch_size, lengths=lengths)
        ]
        self.count = len(examples)
        self.num_labels = int(teacher_logits.shape[-1])

    def score(self, supernet: nn.Module, arch: Arch) -> TaskScore:
        """Accuracy and KL of `arch` as a path of `supernet` (any module with `set_active` and forward)."""
        supernet.set_active(arch)
        return self.score_model(supernet)

    @torch.no_grad()
    def score_model(self, model: nn.Module) -> TaskScore:
        """Accuracy and KL of any classifier with the student's forward (a path set active, an extracted SubNet)."""
        was_training = model.training
        model.eval()
        device = next(model.parameters()).device
        correct, kl_sum = 0, 0.0
        predicted: list[int] = []
        labels: list[int] = []
        try:
            for batch, teacher in self.batches:
                batch = to_device(dict(batch), device)
                gold = batch.pop("labels")
                logits = logits_of(model(**batch)).float()
                correct += int((logits.argmax(-1) == gold).sum())
                predicted += logits.argmax(-1).tolist()
                labels += gold.tolist()
                log_p_student = F.log_softmax(logits, -1)
                kl_sum += float(F.kl_div(log_p_student, F.log_softmax(teacher.to(device), -1), log_target=True,
                                         reduction="sum"))
        finally:
            model.train(was_training)
        f1 = classification_metrics(predicted, labels, self.num_labels)["macro_f1"]
        return TaskScore(accuracy=correct / self.count, kl=kl_sum / self.count, macro_f1=f1)
