"""Fine-tune an extracted sub-network on the task with distillation from the task teacher.

loss = ce_weight * CE(student, labels)
     + kd_weight * T^2 * KL(teacher/T || student/T)                      (logits)
     + hidden_weight * mean_b relative_MSE(P_b(student_b), teacher_b)     (hidden states)

where student_b is the student's state after block b, teacher_b the teacher's state at the same
boundary, and P_b a learned H -> D projection, started from the supernet's output bridge of block
b (the map the block was trained through), and dropped after training.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from slimformer.data.types import Example, iter_batches
from slimformer.search_space import TeacherFacts
from slimformer.supernet.distill import relative_mse


@dataclass
class FinetuneSettings:
    epochs: float = 1.0
    lr: float = 2e-4
    batch_size: int = 32
    max_length: int = 128
    ce_weight: float = 1.0
    kd_weight: float = 1.0
    hidden_weight: float = 1.0
    temperature: float = 2.0
    max_train_examples: int | None = None
    seed: int = 0
    threads: int = 1


@dataclass
class FinetuneResult:
    dev_accuracy: float
    test_accuracy: float
    steps: int
    seconds: float
    loss_history: list[float] = field(default_factory=list)


def logits_of(output: Any) -> torch.Tensor:
    return output["logits"] if isinstance(output, dict) else output.logits


@torch.no_grad()
def accuracy(model: nn.Module, tokenizer: Any, examples: Sequence[Example], batch_size: int = 64,
             max_length: int = 128) -> float:
    """Share of `examples` whose argmax prediction equals the label."""
    if not examples:
        return float("nan")
    was_training = model.training
    model.eval()
    correct = 0
    texts, labels = [e.text for e in examples], [e.label for e in examples]
    for batch in iter_batches(tokenizer, texts, labels, batch_size, max_length):
        gold = batch.pop("labels")
        correct += int((logits_of(model(**batch)).argmax(-1) == gold).sum())
    model.train(was_training)
    return correct / len(examples)


def boundary_indices(num_teacher_layers: int, num_blocks: int) -> list[int]:
    """Teacher hidden-state indices at the end of each block (index 0 is the embedding output)."""
    step = num_teacher_layers // num_blocks
    return [step * (b + 1) for b in range(num_blocks)]


def finetune_subnet(
    student: nn.Module,
    teacher: nn.Module,
    tokenizer: Any,
    train: Sequence[Example],
    dev: Sequence[Example],
    test: Sequence[Example],
    settings: FinetuneSettings,
    bridges: Sequence[tuple[torch.Tensor, torch.Tensor]] | None = None,
    teacher_facts: TeacherFacts | None = None,
    progress: Callable[[int, int, float], None] | None = None,
) -> FinetuneResult:
    """Train `student` in place; return its dev and test accuracy.

    The student is normally a SubNet; any classifier with the same forward signature works when
    the hidden-state loss is off (`teacher_facts=None`), e.g. a truncated teacher baseline.

    Args:
        teacher: the task teacher (returns logits and, with output_hidden_states=True, states).
        bridges: per block, (weight [D, H], bias [D]) to start each hidden-state projection from.
            Without them the projections start random (and hidden_weight still applies).
        teacher_facts: teacher depth and width, to find its states at block boundaries; without
            them the hidden-state loss is off.
    """
    torch.set_num_threads(settings.threads)
    torch.manual_seed(settings.seed)
    started = time.perf_counter()
    train = list(train)
    if settings.max_train_examples is not None:
        train = random.Random(settings.seed).sample(train, min(len(train), settings.max_train_examples))
    use_hidden = settings.hidden_weight > 0 and teacher_facts is not None
    num_blocks = len(student.blocks) if use_hidden else 0
    projections = nn.ModuleList()
    if use_hidden:
        for b in range(num_blocks):
            if bridges is not None:
                w, bias = bridges[b]
                proj = nn.Linear(w.shape[1], w.shape[0])
                with torch.no_grad():
                    proj.weight.copy_(w)
                    proj.bias.copy_(bias)
            else:
                proj = nn.Linear(student.arch.hidden, teacher_facts.hidden_size)
            projections.append(proj)
        targets = boundary_indices(teacher_facts.num_layers, num_blocks)
    params = list(student.parameters()) + list(projections.parameters())
    optimizer = torch.optim.AdamW(params, lr=settings.lr, weight_decay=0.01)
    steps_per_epoch = math.ceil(len(train) / settings.batch_size)
    total_steps = max(1, int(steps_per_epoch * settings.epochs))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / max(1, total_steps // 10)) * max(0.0, 1 - s / total_steps)
    )
    teacher.eval()
    student.train()
    history: list[float] = []
    texts, labels = [e.text for e in train], [e.label for e in train]
    step, epoch = 0, 0
    temp = settings.temperature
    while step < total_steps:
        for batch in iter_batches(tokenizer, texts, labels, settings.batch_size, settings.max_length, True,
                                  settings.seed + epoch):
            if step >= total_steps:
                break
            gold = batch.pop("labels")
            with torch.no_grad():
                t_out = teacher(**batch, output_hidden_states=use_hidden)
            s_out = student(**batch, output_hidden_states=use_hidden)
            s_logits, t_logits = logits_of(s_out), logits_of(t_out)
            loss = settings.ce_weight * F.cross_entropy(s_logits, gold)
            if settings.kd_weight > 0:
                kl = F.kl_div(F.log_softmax(s_logits / temp, -1), F.softmax(t_logits / temp, -1), reduction="batchmean")
                loss = loss + settings.kd_weight * temp**2 * kl
            if use_hidden:
                t_states = t_out["hidden_states"] if isinstance(t_out, dict) else t_out.hidden_states
                mask = batch["attention_mask"]
                hidden_loss = sum(
                    relative_mse(projections[b](s_out["hidden_states"][b + 1]), t_states[targets[b]], mask)
                    for b in range(num_blocks)
                )
                loss = loss + settings.hidden_weight * hidden_loss / num_blocks
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            schedule.step()
            step += 1
            history.append(loss.item())
            if progress:
                progress(step, total_steps, history[-1])
        epoch += 1
    student.eval()
    return FinetuneResult(
        dev_accuracy=accuracy(student, tokenizer, dev, max_length=settings.max_length),
        test_accuracy=accuracy(student, tokenizer, test, max_length=settings.max_length),
        steps=step, seconds=time.perf_counter() - started, loss_history=history,
    )


def subnet_bridges(supernet: Any, hidden: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The supernet's output bridges at width `hidden`, as projection starts for finetune_subnet."""
    out = []
    for block in supernet.blocks:
        w, b = block.bridge_out.sliced(hidden, block.space.teacher.hidden_size)
        out.append((w.detach().clone(), b.detach().clone()))
    return out
