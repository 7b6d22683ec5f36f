"""The task teacher's model: a BERT encoder with a masked-mean-pooling classification head.

Also the two things every stage asks of it: hidden states for distillation, and accuracy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from slimformer.data.types import Example, iter_batches

if TYPE_CHECKING:
    from transformers import BertModel

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
        device = next(model.parameters()).device
        for batch in iter_batches(tokenizer, texts, labels, batch_size=batch_size, max_length=max_length,
                                  group_by_length=True):
            batch = {k: v.to(device) for k, v in batch.items()}
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

