"""The task-aware supernet: the assembled block supernet fine-tuned on the task with the sandwich rule.

Block-wise distillation (NAS-BERT) teaches every block to imitate the teacher's block, but it
cannot express "fewer layers, then fine-tuned": a shallow student's blocks were never trained to
feed a classifier. So after it, the whole supernet is fine-tuned on the task (whittle/plm_pruning,
BigNAS): every step trains the largest path, the smallest useful path (`shallowest_path`) and
`random_paths` random paths on one batch, accumulating their gradients before one optimiser step
(sandwich rule), each with in-place distillation from the task teacher's logits:

    loss(path) = ce_weight * CE(path, labels) + kd_weight * T^2 * KL(teacher/T || path/T)

The teacher's logits are computed once per job (`predict_logits`) rather than per step. With a
few-shot split, each region (one hidden size) is tuned on its own, its paths all at that H.

Resumable: every `checkpoint_every` steps the weights, optimiser and step are saved atomically;
batches and paths are functions of (seed, step), so a resumed run takes the same steps as an
uninterrupted one.
"""

from __future__ import annotations

import math
import os
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from slimformer.data.types import Example, batch_order, encode_batch, token_lengths
from slimformer.errors import ArchError, SpaceError
from slimformer.search_space import Arch, Op, SearchSpace
from slimformer.supernet.device import to_device, training_device
from slimformer.supernet.model import Supernet
from slimformer.supernet.optim import adamw


@dataclass
class TaskTuneSettings:
    steps: int = 200
    batch_size: int = 32
    lr: float = 1e-4
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    max_length: int = 64
    temperature: float = 2.0
    ce_weight: float = 0.5
    kd_weight: float = 1.0
    random_paths: int = 2
    seed: int = 0
    threads: int = 1
    checkpoint_every: int = 50


@dataclass
class TaskTuneResult:
    steps: int
    seconds: float
    # Mean loss per path kind ("largest", "smallest", "random") over the first and last tenth of steps.
    loss_start: dict[str, float] = field(default_factory=dict)
    loss_end: dict[str, float] = field(default_factory=dict)
    resumed_from: int = 0


def shallowest_path(space: SearchSpace, hidden: int) -> Arch:
    """The sandwich's smallest path: one teacher layer at the narrowest heads and FFN, at `hidden`.

    The space's `smallest()` has no layer at all (every slot identity), a path no front ever keeps;
    training it would spend a quarter of every step on nothing a user can download. Falls back to
    `smallest()` in spaces that do not map teacher layers onto slot pairs.
    """
    try:
        arch = space.layers_arch([0], hidden)
    except (SpaceError, ArchError):
        return Arch(hidden, space.smallest().blocks)
    blocks = [list(block) for block in arch.blocks]
    b, s = space.teacher_layer_slots()[0]
    blocks[b][s], blocks[b][s + 1] = Op("mha", min(space.heads)), Op("ffn", min(space.ffn_sizes))
    return space.validate(Arch(hidden, tuple(tuple(block) for block in blocks)))


def sample_layered(space: SearchSpace, rng: random.Random, hidden: int | None) -> Arch:
    """A random layer-dropped, narrowed teacher: each teacher layer kept with probability 1/2 (at least
    one), a kept layer's heads and FFN size drawn from the space. This is the part of the space fronts
    are made of (truncations, dropped layers, narrower widths); uniform samples rarely land there.
    """
    try:
        slots = space.teacher_layer_slots()
    except SpaceError:
        return space.sample(rng, hidden=hidden)
    layers = [i for i in range(len(slots)) if rng.random() < 0.5] or [rng.randrange(len(slots))]
    blocks = [[Op("id", 0)] * space.slots_per_block for _ in range(space.num_blocks)]
    for layer in layers:
        b, s = slots[layer]
        blocks[b][s], blocks[b][s + 1] = Op("mha", rng.choice(space.heads)), Op("ffn", rng.choice(space.ffn_sizes))
    h = hidden if hidden is not None else rng.choice(space.hidden_sizes)
    return space.validate(Arch(h, tuple(tuple(block) for block in blocks)))


def sandwich_paths(space: SearchSpace, step_rng: random.Random, hidden: int | None, random_paths: int) -> list[Arch]:
    """[largest, shallowest, random...] for one step; all at `hidden` when the region fixes it.

    Random paths alternate between a layer-dropped narrowed teacher (`sample_layered`) and a
    uniform sample of the whole space (every op, SepConv included), so the shared weights learn both
    the region fronts are made of and the rest the search may visit.
    """
    largest = space.largest() if hidden is None else Arch(hidden, space.largest().blocks)
    smallest = shallowest_path(space, hidden if hidden is not None else min(space.hidden_sizes))
    randoms = [sample_layered(space, step_rng, hidden) if i % 2 == 0 else space.sample(step_rng, hidden=hidden)
               for i in range(random_paths)]
    return [largest, smallest] + randoms


def path_loss(logits: torch.Tensor, labels: torch.Tensor, teacher_logits: torch.Tensor,
              settings: TaskTuneSettings) -> torch.Tensor:
    """CE to the labels plus temperature-scaled KL to the teacher's distribution."""
    t = settings.temperature
    kl = F.kl_div(F.log_softmax(logits / t, -1), F.log_softmax(teacher_logits / t, -1), log_target=True,
                  reduction="batchmean")
    return settings.ce_weight * F.cross_entropy(logits, labels) + settings.kd_weight * t * t * kl


def _schedule(optimizer: torch.optim.Optimizer, settings: TaskTuneSettings) -> torch.optim.lr_scheduler.LambdaLR:
    total = max(1, settings.steps)
    warmup = max(1, int(settings.warmup_ratio * total))
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / warmup) * max(0.0, (total - s) / max(1, total - warmup + 1))
    )


def _save_checkpoint(path: Path, supernet: Supernet, optimizer, scheduler, step: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"step": step, "model": supernet.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict()}, tmp)
    os.replace(tmp, path)


def train_task_supernet(
    supernet: Supernet,
    tokenizer: Any,
    train: Sequence[Example],
    teacher_logits: torch.Tensor,
    settings: TaskTuneSettings,
    hidden: int | None = None,
    checkpoint: Path | None = None,
    progress: Callable[[int, int, float], None] | None = None,
) -> TaskTuneResult:
    """Sandwich-rule fine-tuning of `supernet` on `train`, in place; returns loss figures.

    Args:
        teacher_logits: [len(train), C] the task teacher's logits, row i for train[i].
        hidden: the few-shot region's hidden size (every path at it), or None for the whole space.
        checkpoint: file to checkpoint to and resume from (None: no checkpoints).
        progress: called (step, total, loss) after each step; may raise to cancel.
    """
    if len(teacher_logits) != len(train):
        raise ValueError(f"teacher_logits: {len(teacher_logits)} rows for {len(train)} training examples")
    if not train:
        raise ValueError("train: no training examples to tune the supernet on")
    torch.set_num_threads(settings.threads)
    device = training_device()
    supernet.to(device).train()
    # Bridges are block-wise training aids that the assembled forward never uses. Word embeddings stay
    # as block-wise training left them: the largest share of the parameters, a dense gradient and optimiser
    # state each step, and for the task only a few hundred steps to move rows the task rarely uses.
    params = [p for name, p in supernet.named_parameters()
              if ".bridge_" not in name and name != "embeddings.word_embeddings"]
    optimizer = adamw(params, lr=settings.lr, weight_decay=settings.weight_decay)
    scheduler = _schedule(optimizer, settings)
    start = 0
    if checkpoint is not None and checkpoint.exists():
        state = torch.load(checkpoint, map_location=device, weights_only=True)
        supernet.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start = int(state["step"])
    texts, labels = [e.text for e in train], [e.label for e in train]
    per_epoch = math.ceil(len(train) / settings.batch_size)
    kinds = ["largest", "smallest"] + ["random"] * settings.random_paths
    history: list[dict[str, float]] = []
    started = time.perf_counter()
    lengths = token_lengths(tokenizer, texts, settings.max_length)  # batches of similar length pad less
    epoch_batches: tuple[int, list[list[int]]] = (-1, [])
    for step in range(start, settings.steps):
        epoch, position = divmod(step, per_epoch)
        if epoch_batches[0] != epoch:  # the epoch's batches depend only on the seed and epoch: a resume rebuilds them
            epoch_batches = (epoch, batch_order(len(train), settings.batch_size, shuffle=True,
                                                seed=settings.seed * 1009 + epoch, lengths=lengths))
        idx = epoch_batches[1][position]
        batch = to_device(encode_batch(tokenizer, [texts[i] for i in idx], [labels[i] for i in idx],
                                       settings.max_length), device)
        gold, target = batch.pop("labels"), teacher_logits[idx].to(device)
        paths = sandwich_paths(supernet.space, random.Random(f"{settings.seed}:{step}"), hidden, settings.random_paths)
        optimizer.zero_grad(set_to_none=True)
        losses: dict[str, list[float]] = {}
        for kind, arch in zip(kinds, paths, strict=True):
            supernet.set_active(arch)
            loss = path_loss(supernet(**batch)["logits"], gold, target, settings)
            (loss / len(paths)).backward()
            losses.setdefault(kind, []).append(loss.item())
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        scheduler.step()
        history.append({k: sum(v) / len(v) for k, v in losses.items()})
        if checkpoint is not None and (step + 1) % settings.checkpoint_every == 0 and step + 1 < settings.steps:
            _save_checkpoint(checkpoint, supernet, optimizer, scheduler, step + 1)
        if progress:
            progress(step + 1, settings.steps, history[-1]["largest"])
    supernet.set_active(supernet.space.largest() if hidden is None else Arch(hidden, supernet.space.largest().blocks))
    supernet.to("cpu").eval()
    tenth = max(1, len(history) // 10)

    def mean(rows: list[dict[str, float]]) -> dict[str, float]:
        return {k: round(sum(r[k] for r in rows) / len(rows), 4) for k in (rows[0] if rows else {})}

    return TaskTuneResult(
        steps=settings.steps, seconds=time.perf_counter() - started, loss_start=mean(history[:tenth]),
        loss_end=mean(history[-tenth:]), resumed_from=start,
    )
