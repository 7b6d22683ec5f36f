"""Block-wise distillation of one block supernet (NAS-BERT), with checkpoints and exact resume.

Each step samples a batch of stored teacher states and trains the block on a few paths (largest,
smallest and one random sub-architecture of its region: the "sandwich rule", configurable), the
loss being the relative MSE between the bridged block output and the teacher's next hidden state.
Block 0 also trains the student embeddings to produce what its input bridge makes of the
teacher's embedding output, so the chain embeddings -> block 0 is trained too.

Everything random in step t is drawn from a generator seeded by (seed, block, t), so a run resumed
from a checkpoint continues exactly as the uninterrupted run would have.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from slimformer.errors import CheckpointError
from slimformer.search_space import Op, SearchSpace
from slimformer.supernet import functional as SF
from slimformer.supernet.block import BlockSupernet
from slimformer.supernet.device import to_device, training_device
from slimformer.supernet.elastic import ElasticEmbeddings
from slimformer.supernet.optim import adamw
from slimformer.supernet.states import TeacherStates


@dataclass
class BlockTrainSettings:
    steps: int = 300
    batch_size: int = 32
    lr: float = 5e-4
    weight_decay: float = 0.01
    warmup_steps: int = 20
    paths: tuple[str, ...] = ("largest", "smallest", "random")
    checkpoint_every: int = 50
    seed: int = 0
    threads: int = 1
    val_batches: int = 4

    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:12]


@dataclass
class Region:
    """The part of the space a (sub-)supernet is trained on. None: everything (one-shot)."""

    hidden: int | None = None

    def hidden_sizes(self, space: SearchSpace) -> tuple[int, ...]:
        return (self.hidden,) if self.hidden is not None else space.hidden_sizes

    def key(self) -> str:
        return "all" if self.hidden is None else f"H{self.hidden}"


@dataclass
class BlockResult:
    block: int
    region: str
    state: dict[str, torch.Tensor]  # block (and, for block 0, embeddings) weights
    loss_start: float
    loss_end: float
    steps: int
    seconds: float
    history: list[tuple[int, float]] = field(default_factory=list)


def relative_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """MSE over real tokens divided by the target's mean square: 1.0 means 'predicts zeros'."""
    m = mask[..., None].to(pred.dtype)
    err = ((pred - target) ** 2 * m).sum()
    return err / ((target**2) * m).sum().clamp(min=1e-12)


class BlockTrainer(nn.Module):
    """The trainable part for one block: the block supernet, plus the embeddings for block 0."""

    def __init__(self, space: SearchSpace, index: int):
        super().__init__()
        self.block = BlockSupernet(space, index)
        t = space.teacher
        self.embeddings = (
            ElasticEmbeddings(t.vocab_size, t.max_position, t.type_vocab_size, space.max_hidden, 1e-12)
            if index == 0
            else None
        )

    def loss(self, batch: dict[str, torch.Tensor], ops: tuple[Op, ...], hidden: int) -> torch.Tensor:
        self.block.set_active(ops, hidden)
        mask = batch["attention_mask"]
        bias = SF.mask_bias(mask, torch.float32)
        student_in = self.block.to_student(batch["teacher_in"])
        loss = relative_mse(self.block.to_teacher(self.block(student_in, bias, mask)), batch["teacher_out"], mask)
        if self.embeddings is not None:
            emb = self.embeddings(batch["input_ids"], batch["token_type_ids"], hidden)
            loss = loss + relative_mse(emb, student_in.detach(), mask)
        return loss


def path_ops(space: SearchSpace, block: int, kind: str, rng: random.Random) -> tuple[Op, ...]:
    if kind == "largest":
        return space.largest().blocks[block]
    if kind == "smallest":
        return space.smallest().blocks[block]
    return space.sample_block(rng)


@torch.no_grad()
def validation_loss(
    trainer: BlockTrainer, states: TeacherStates, ops: tuple[Op, ...], hidden: int, settings: BlockTrainSettings
) -> float:
    """Mean relative MSE of one sub-architecture on the held-out rows (the block's proxy)."""
    was_training = trainer.training
    trainer.eval()
    idx = states.val_indices()
    device = next(trainer.parameters()).device
    total, count = 0.0, 0
    for start in range(0, min(len(idx), settings.val_batches * settings.batch_size), settings.batch_size):
        batch = to_device(states.rows(idx[start : start + settings.batch_size], trainer.block.index), device)
        total += trainer.loss(batch, ops, hidden).item()
        count += 1
    trainer.train(was_training)
    return total / max(1, count)


def _lr_factor(step: int, settings: BlockTrainSettings) -> float:
    if step < settings.warmup_steps:
        return (step + 1) / settings.warmup_steps
    span = max(1, settings.steps - settings.warmup_steps)
    return max(0.05, 1.0 - (step - settings.warmup_steps) / span)


def _save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)  # atomic: a crash mid-write leaves the previous checkpoint intact


def train_block(
    space: SearchSpace,
    index: int,
    states: TeacherStates,
    settings: BlockTrainSettings,
    checkpoint: Path | None = None,
    init_state: dict[str, torch.Tensor] | None = None,
    region: Region | None = None,
    stop_after: int | None = None,
    progress: Callable[[int, int, float], None] | None = None,
) -> BlockResult:
    """Train block `index` (of `region`) and return its weights and loss curve.

    Args:
        states: stored teacher states (must hold boundaries index and index + 1).
        checkpoint: file to save to every `checkpoint_every` steps and to resume from if present.
        init_state: starting weights (teacher warm start, or the one-shot weights for a few-shot
            sub-supernet). Ignored when resuming.
        stop_after: return after this many steps in total (simulates an interruption; tests).

    Raises:
        CheckpointError: the checkpoint was written by a run with other settings, block or region.
    """
    region = region or Region()
    torch.set_num_threads(settings.threads)
    started = time.perf_counter()
    with torch.random.fork_rng():  # a seeded init: equal settings give equal runs, resumed or not
        torch.manual_seed(settings.seed * 1000 + index)
        trainer = BlockTrainer(space, index)
    if init_state is not None:
        trainer.load_state_dict(init_state, strict=True)
    device = training_device()
    trainer.to(device)
    optimizer = adamw(trainer.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    identity = {"settings": settings.fingerprint(), "block": index, "region": region.key(), "space": space.to_dict()}
    step, history, loss_start = 0, [], None
    if checkpoint is not None and Path(checkpoint).exists():
        saved = torch.load(checkpoint, weights_only=False, map_location=device)
        if saved["identity"] != identity:
            diff = [k for k in identity if saved["identity"].get(k) != identity[k]]
            raise CheckpointError(f"{checkpoint}: written by another run (differs in {', '.join(diff)})")
        trainer.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        step, history, loss_start = saved["step"], saved["history"], saved["loss_start"]

    sizes = region.hidden_sizes(space)
    largest_ops = path_ops(space, index, "largest", random.Random(0))
    if loss_start is None:
        loss_start = validation_loss(trainer, states, largest_ops, max(sizes), settings)
    trainer.train()
    end = settings.steps if stop_after is None else min(settings.steps, stop_after)
    while step < end:
        rng = random.Random(f"{settings.seed}-{index}-{region.key()}-{step}")
        gen = torch.Generator().manual_seed(rng.randrange(2**31))
        idx = torch.randint(0, states.num_train, (settings.batch_size,), generator=gen)
        batch = to_device(states.rows(idx, index), device)
        for group in optimizer.param_groups:
            group["lr"] = settings.lr * _lr_factor(step, settings)
        optimizer.zero_grad(set_to_none=True)
        total = 0.0
        for kind in settings.paths:
            hidden = {"largest": max(sizes), "smallest": min(sizes)}.get(kind) or rng.choice(sizes)
            loss = trainer.loss(batch, path_ops(space, index, kind, rng), hidden) / len(settings.paths)
            loss.backward()
            total += loss.item()
        nn.utils.clip_grad_norm_(trainer.parameters(), 1.0)
        optimizer.step()
        step += 1
        history.append((step, total))
        if progress:
            progress(step, settings.steps, total)
        if checkpoint is not None and (step % settings.checkpoint_every == 0 or step == settings.steps):
            _save_checkpoint(
                Path(checkpoint),
                {"identity": identity, "model": trainer.state_dict(), "optimizer": optimizer.state_dict(),
                 "step": step, "history": history, "loss_start": loss_start},
            )
    loss_end = validation_loss(trainer, states, largest_ops, max(sizes), settings)
    return BlockResult(
        block=index, region=region.key(), state={k: v.detach().cpu().clone() for k, v in trainer.state_dict().items()},
        loss_start=loss_start, loss_end=loss_end, steps=step, seconds=time.perf_counter() - started,
        history=history,
    )
