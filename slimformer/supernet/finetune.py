"""Fine-tune an extracted sub-network (or a baseline) on the task with distillation from the task teacher.

loss = ce_weight * CE(student, labels)
     + kd_weight * T^2 * KL(teacher/T || student/T)                      (logits)
     + hidden_weight * mean_b relative_MSE(P_b(student_b), teacher_b)     (hidden states, optional)
     + pooled_weight * relative_MSE(P(pooled student), pooled teacher)   (pooled last state, optional)

where student_b is the student's state after block b, teacher_b the teacher's state at the same
boundary, and P_b a learned H -> D projection, started from the supernet's output bridge of block
b and dropped after training. The teacher's logits can be given precomputed (one row per training
example); with the hidden-state loss off, the teacher then never runs during training. So can its
pooled last states (supernet/pooled_kd.py).

Training runs to convergence: the dev metric (`settings.select`: accuracy, or macro-F1 on a job that
optimises it) is measured every `eval_every` steps (default: twice per epoch), training stops after
`patience` evaluations without improvement or at `epochs`, and the best state is kept. Every student,
found or baseline, gets this same recipe.
"""

from __future__ import annotations

import copy
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from slimformer.data.types import Example, batch_order, encode_batch, token_lengths
from slimformer.search_space import TeacherFacts
from slimformer.supernet.device import to_device, training_device
from slimformer.supernet.distill import relative_mse
from slimformer.supernet.optim import adamw
from slimformer.supernet.pooled_kd import pooled_loss, pooled_projection, teacher_outputs
from slimformer.supernet.sparse_table import clip_grad_norm, sparse_word_table
from slimformer.supernet.task_score import logits_of, predict_logits


@dataclass
class FinetuneSettings:
    epochs: float = 1.0  # at most this many passes over the training examples
    lr: float = 2e-4
    batch_size: int = 32
    max_length: int = 128
    ce_weight: float = 1.0
    kd_weight: float = 1.0
    hidden_weight: float = 0.0
    pooled_weight: float = 0.0  # pooled-state distillation (supernet/pooled_kd.py); 0: off
    temperature: float = 2.0
    max_train_examples: int | None = None
    seed: int = 0
    threads: int = 1
    patience: int = 2  # evaluations without a better dev metric before stopping (0: never early)
    evals_per_epoch: int = 2
    select: str = "accuracy"  # the dev metric that picks the best state: "accuracy" or "macro_f1"
    sparse_word_table: bool = False  # step only the word-table rows a batch touches (supernet/sparse_table.py)


@dataclass
class FinetuneResult:
    dev_accuracy: float
    test_accuracy: float
    steps: int
    seconds: float
    loss_history: list[float] = field(default_factory=list)
    dev_history: list[tuple[int, float]] = field(default_factory=list)  # (step, dev metric of `select`)
    best_step: int = 0
    # The returned model's argmax class per dev and test example, in order: what the figures above
    # count, kept so a caller can derive more metrics without another pass (workers/finalist_export.py).
    dev_predictions: list[int] = field(default_factory=list)
    test_predictions: list[int] = field(default_factory=list)


def _predicted(model: nn.Module, tokenizer: Any, examples: Sequence[Example], max_length: int,
               batch_size: int = 64) -> tuple[list[int], int]:
    """(argmax class per example, in order; how many classes the model's logits have)."""
    logits = predict_logits(model, tokenizer, [e.text for e in examples], max_length, batch_size)
    return logits.argmax(-1).tolist(), logits.shape[-1]


def predictions(model: nn.Module, tokenizer: Any, examples: Sequence[Example], max_length: int = 128,
                batch_size: int = 64) -> list[int]:
    """The argmax class of `model` for each of `examples`, in order."""
    return _predicted(model, tokenizer, examples, max_length, batch_size)[0] if examples else []


def accuracy_of(predicted: Sequence[int], examples: Sequence[Example]) -> float:
    """Share of `examples` whose prediction equals the label (nan for none)."""
    if not examples:
        return float("nan")
    return sum(int(p == e.label) for p, e in zip(predicted, examples, strict=True)) / len(examples)


def score_of(predicted: Sequence[int], examples: Sequence[Example], select: str, num_labels: int) -> float:
    """The metric `select` ("accuracy" or "macro_f1") of `predicted` on `examples`."""
    if select == "accuracy":
        return accuracy_of(predicted, examples)
    if select != "macro_f1":
        raise ValueError(f"select: {select!r} is not 'accuracy' or 'macro_f1'")
    from slimformer.metrics import classification_metrics

    return classification_metrics(list(predicted), [e.label for e in examples], num_labels)["macro_f1"]


def dev_score(model: nn.Module, tokenizer: Any, examples: Sequence[Example], select: str, max_length: int) -> float:
    """The metric `select` ("accuracy" or "macro_f1") of `model` on `examples`."""
    if select not in ("accuracy", "macro_f1"):
        raise ValueError(f"select: {select!r} is not 'accuracy' or 'macro_f1'")
    predicted, classes = _predicted(model, tokenizer, examples, max_length)
    return score_of(predicted, examples, select, classes)


def boundary_indices(num_teacher_layers: int, num_blocks: int) -> list[int]:
    """Teacher hidden-state indices at the end of each block (index 0 is the embedding output)."""
    step = num_teacher_layers // num_blocks
    return [step * (b + 1) for b in range(num_blocks)]


def _projections(student: nn.Module, facts: TeacherFacts, bridges) -> nn.ModuleList:
    out = nn.ModuleList()
    for b in range(len(student.blocks)):
        if bridges is not None:
            w, bias = bridges[b]
            proj = nn.Linear(w.shape[1], w.shape[0])
            with torch.no_grad():
                proj.weight.copy_(w)
                proj.bias.copy_(bias)
        else:
            proj = nn.Linear(student.arch.hidden, facts.hidden_size)
        out.append(proj)
    return out


def _row_targets(
    teacher: nn.Module, tokenizer: Any, texts: Sequence[str], rows: Sequence[int], settings: FinetuneSettings,
    use_hidden: bool, teacher_logits: torch.Tensor | None, teacher_pooled: torch.Tensor | None,
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """The teacher's (logits, pooled states) for the sampled `rows` (`texts` are theirs), given or computed.

    At most one teacher pass: the pooled states come with the logits when both are missing. Logits
    stay None where the hidden-state loss runs the teacher each step anyway (it reads them there).
    """
    use_pooled = settings.pooled_weight > 0
    rows_logits = teacher_logits[rows] if teacher_logits is not None else None
    rows_pooled = teacher_pooled[rows] if use_pooled and teacher_pooled is not None else None
    if use_pooled and rows_pooled is None:
        logits, rows_pooled = teacher_outputs(teacher, tokenizer, texts, settings.max_length)
        rows_logits = logits if rows_logits is None else rows_logits
    elif rows_logits is None and not use_hidden and settings.kd_weight > 0:
        rows_logits = predict_logits(teacher, tokenizer, texts, settings.max_length)
    return rows_logits, rows_pooled


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
    teacher_logits: torch.Tensor | None = None,
    teacher_pooled: torch.Tensor | None = None,
) -> FinetuneResult:
    """Train `student` in place to its best dev metric (`settings.select`); return its dev and test accuracy.

    The student is normally a SubNet; any classifier with the same forward signature works when
    the hidden-state loss is off, e.g. a truncated teacher baseline.

    Args:
        teacher: the task teacher (returns logits and, with output_hidden_states=True, states).
        bridges: per block, (weight [D, H], bias [D]) to start each hidden-state projection from.
        teacher_facts: teacher depth and width, to find its states at block boundaries; without
            them the hidden-state loss is off.
        teacher_logits: [len(train), C] the teacher's logits on `train` (before `max_train_examples`
            sampling); computed here when None and no hidden-state loss needs the teacher anyway.
        teacher_pooled: [len(train), D] the teacher's mean-pooled last states on `train`, for
            `settings.pooled_weight`; computed here (with the logits) when None. The student must
            return its hidden states (a SubNet, or the teacher's own classifier). A student extracted
            from a supernet needs `bridges` for this loss: its hidden basis is a permutation of the
            teacher's, and without them the projection starts as the identity.
    """
    torch.set_num_threads(settings.threads)
    torch.manual_seed(settings.seed)
    started = time.perf_counter()
    train = list(train)
    rows = list(range(len(train)))
    if settings.max_train_examples is not None and settings.max_train_examples < len(train):
        rows = sorted(random.Random(settings.seed).sample(rows, settings.max_train_examples))
    use_hidden = settings.hidden_weight > 0 and teacher_facts is not None
    use_pooled = settings.pooled_weight > 0
    rows_logits, rows_pooled = _row_targets(teacher, tokenizer, [train[i].text for i in rows], rows, settings,
                                            use_hidden, teacher_logits, teacher_pooled)
    device = training_device()
    student.to(device)
    teacher.to(device)
    projections = _projections(student, teacher_facts, bridges).to(device) if use_hidden else nn.ModuleList()
    targets = boundary_indices(teacher_facts.num_layers, len(student.blocks)) if use_hidden else []
    pooled_proj = (pooled_projection(student.classifier.in_features, rows_pooled.shape[-1],
                                     bridges[-1] if bridges is not None else None).to(device) if use_pooled else None)
    table = sparse_word_table(student) if settings.sparse_word_table else None
    sparse = [table.weight] if table is not None else []
    params = [*(p for p in student.parameters() if table is None or p is not table.weight),
              *projections.parameters(), *(pooled_proj.parameters() if use_pooled else ())]
    optimizers = [adamw(params, lr=settings.lr, weight_decay=0.01)]
    if table is not None:
        table.sparse = True
        optimizers.append(torch.optim.SparseAdam(sparse, lr=settings.lr))
    per_epoch = math.ceil(len(rows) / settings.batch_size)
    # Batches of texts of similar length pad less (see batch_order).
    row_lengths = token_lengths(tokenizer, [train[i].text for i in rows], settings.max_length)
    total_steps = max(1, int(per_epoch * settings.epochs))
    eval_every = max(1, per_epoch // max(1, settings.evals_per_epoch))
    schedules = [torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / max(1, total_steps // 10)) * max(0.0, 1 - s / total_steps)
    ) for optimizer in optimizers]
    teacher.eval()
    history: list[float] = []
    dev_history: list[tuple[int, float]] = []
    best_state, best_dev, best_step, stale, best_predicted = None, -math.inf, 0, 0, []
    temp = settings.temperature
    step = 0
    while step < total_steps and not (settings.patience and stale >= settings.patience):
        epoch = step // per_epoch
        for idx in batch_order(len(rows), settings.batch_size, shuffle=True, seed=settings.seed + epoch,
                               lengths=row_lengths):
            if step >= total_steps or (settings.patience and stale >= settings.patience):
                break
            student.train()
            batch = to_device(encode_batch(tokenizer, [train[rows[i]].text for i in idx],
                                           [train[rows[i]].label for i in idx], settings.max_length), device)
            gold = batch.pop("labels")
            t_out = None
            if use_hidden:
                with torch.no_grad():
                    t_out = teacher(**batch, output_hidden_states=True)
            s_out = student(**batch, output_hidden_states=use_hidden or use_pooled)
            s_logits = logits_of(s_out)
            loss = settings.ce_weight * F.cross_entropy(s_logits, gold)
            if settings.kd_weight > 0:
                t_logits = logits_of(t_out) if rows_logits is None else rows_logits[idx].to(device)
                kl = F.kl_div(F.log_softmax(s_logits / temp, -1), F.log_softmax(t_logits / temp, -1),
                              log_target=True, reduction="batchmean")
                loss = loss + settings.kd_weight * temp**2 * kl
            if use_hidden:
                t_states = t_out["hidden_states"] if isinstance(t_out, dict) else t_out.hidden_states
                mask = batch["attention_mask"]
                hidden_loss = sum(
                    relative_mse(projections[b](s_out["hidden_states"][b + 1]), t_states[targets[b]], mask)
                    for b in range(len(projections))
                )
                loss = loss + settings.hidden_weight * hidden_loss / len(projections)
            if use_pooled:
                pooled = pooled_loss(s_out, batch["attention_mask"], pooled_proj, rows_pooled[idx].to(device))
                loss = loss + settings.pooled_weight * pooled
            for optimizer in optimizers:
                optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if sparse:
                clip_grad_norm(params, sparse, 1.0)
            else:
                nn.utils.clip_grad_norm_(params, 1.0)
            for optimizer, schedule in zip(optimizers, schedules, strict=True):
                optimizer.step()
                schedule.step()
            step += 1
            history.append(loss.item())
            if progress:
                progress(step, total_steps, history[-1])
            if dev and (step % eval_every == 0 or step == total_steps):
                predicted, classes = _predicted(student, tokenizer, dev, settings.max_length)
                score = score_of(predicted, dev, settings.select, classes)
                dev_history.append((step, score))
                if score > best_dev:
                    best_dev, best_step, stale, best_predicted = score, step, 0, predicted
                    best_state = copy.deepcopy({k: v.detach().cpu() for k, v in student.state_dict().items()})
                else:
                    stale += 1
    student.to("cpu")
    teacher.to("cpu")
    if table is not None:  # a dense gradient again for whoever trains the student next
        table.sparse = False
    if best_state is not None:
        student.load_state_dict(best_state)
    student.eval()
    # The best state's dev predictions were made when it was kept, by the same call.
    dev_predicted = best_predicted if best_state is not None else predictions(student, tokenizer, dev,
                                                                              settings.max_length)
    test_predicted = predictions(student, tokenizer, test, settings.max_length)
    return FinetuneResult(
        dev_accuracy=accuracy_of(dev_predicted, dev), test_accuracy=accuracy_of(test_predicted, test),
        steps=step, seconds=time.perf_counter() - started, loss_history=history, dev_history=dev_history,
        best_step=best_step, dev_predictions=dev_predicted, test_predictions=test_predicted,
    )


def subnet_bridges(supernet: Any, hidden: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The supernet's output bridges at width `hidden`, as projection starts for finetune_subnet."""
    out = []
    for block in supernet.blocks:
        w, b = block.bridge_out.sliced(hidden, block.space.teacher.hidden_size)
        out.append((w.detach().clone(), b.detach().clone()))
    return out
