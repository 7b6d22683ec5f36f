"""Measure a torch latency table's entries in context: profiling SubNets timed slot by slot with hooks.

How table entries are measured (and why): an op timed alone in a loop keeps its weights in the
core's 2 MB L2 cache, but inside a model the other ops' weights pass through the cache in
between, so isolated timings came out 15-40% below what the op costs in a forward pass. Entries
are therefore measured *in context*: per hidden size, a few profiling SubNets are built whose
slots together hold every op `copies` times in shuffled order; forward hooks time each slot, the
embeddings and the classifier inside real `SubNet.forward` calls; an entry is the median over all
of its slots and rounds. What the hooks cannot see (mask bias, mean pool, Python between modules)
is the residual of plain, hook-free forwards of the same models: its median over the profiling
models is `overhead_ms`. It is a fitted residual, not a timed call: it also absorbs what the
hooks add to or hide from the parts, and can come out slightly negative.

Memory: on the 4 KB pages of the dev VM the same arch's latency depended on when its weights
were allocated (10-30% between copies). Processes that profile or serve can set
THP_MEM_ALLOC_ENABLE=1 before importing torch (bench/latency.py does) to put large tensors on
huge pages; `table.meta["thp_alloc"]` records which way a table was measured.

The clock and the order of the forwards are those of every measurement (see `timing`);
`latency_build` runs a `TableProfiler` and checks its table against whole models.
"""

from __future__ import annotations

import os
import random
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

from slimformer.search_space import Arch, SearchSpace
from slimformer.search_space.latency import LatencySetting, LatencyTable
from slimformer.supernet.model_timing import random_inputs
from slimformer.supernet.subnet import SubNet, SubNetConfig
from slimformer.supernet.timing import clock_for, summarize_ms, visit_order


def profiling_archs(space: SearchSpace, hidden: int, copies: int = 3, seed: int = 0) -> list[Arch]:
    """Archs at `hidden` whose slots hold every op of the space at least `copies` times.

    Identity is included like any op, so each op's neighbours look like those in uniformly
    sampled archs. Ops are shuffled with a seeded RNG and cut into archs; the last is topped up
    with random ops. Word-embedding ranks (`space.ranks_at(hidden)`, plain first) go round the
    archs, with archs added until every rank has one, so the table times every embedding variant.
    """
    rng = random.Random(f"{seed}-{hidden}")
    ops = [op for op in space.slot_ops() for _ in range(copies)]
    rng.shuffle(ops)
    per_arch = space.num_blocks * space.slots_per_block
    while len(ops) % per_arch:
        ops.append(rng.choice(space.slot_ops()))
    ranks = space.ranks_at(hidden)
    while len(ops) < len(ranks) * per_arch:
        ops.append(rng.choice(space.slot_ops()))
    archs = []
    for i, start in enumerate(range(0, len(ops), per_arch)):
        flat = ops[start : start + per_arch]
        k = space.slots_per_block
        blocks = tuple(tuple(flat[b * k : (b + 1) * k]) for b in range(space.num_blocks))
        archs.append(space.validate(Arch(hidden, blocks, ranks[i % len(ranks)])))
    return archs


class _HookTimer:
    """Times one module inside a forward pass with a pre-hook and a post-hook."""

    def __init__(self, clock: Callable[[], int]):
        self.clock = clock
        self.start = 0
        self.samples: list[int] = []
        self.recording = False

    def pre(self, module: torch.nn.Module, args: Any) -> None:
        self.start = self.clock()

    def post(self, module: torch.nn.Module, args: Any, output: Any) -> None:
        elapsed = self.clock() - self.start
        if self.recording:
            self.samples.append(elapsed)


class _ProfiledModel:
    """One profiling SubNet: a hook timer per slot, one for the embeddings, one for the classifier."""

    def __init__(self, arch: Arch, space: SearchSpace, setting: LatencySetting, clock: Callable[[], int]):
        self.arch = arch
        self.model = SubNet(SubNetConfig.for_arch(arch, space)).eval()
        self.inputs = random_inputs(self.model.config, setting)
        self.clock = clock
        slots = [m for block in self.model.blocks for m in block]
        self.timed_modules = [self.model.embeddings, *slots, self.model.classifier]
        self.timers = [_HookTimer(clock) for _ in self.timed_modules]
        self.plain: list[int] = []

    @property
    def slot_timers(self) -> list[_HookTimer]:
        return self.timers[1:-1]

    def step(self, record: bool) -> None:
        """Plain (untimed), hooked, plain (timed): both timed forwards follow one of this model."""
        self.model(*self.inputs)
        handles = []
        for timer, module in zip(self.timers, self.timed_modules, strict=True):
            timer.recording = record
            handles += [module.register_forward_pre_hook(timer.pre), module.register_forward_hook(timer.post)]
        try:
            self.model(*self.inputs)
        finally:
            for h in handles:
                h.remove()
        start = self.clock()
        self.model(*self.inputs)
        elapsed = self.clock() - start
        if record:
            self.plain.append(elapsed)


class TableProfiler:
    """Measures a torch latency table in context (module docstring); a Stepper for `run_rounds`.

    Args:
        space: the search space; every slot op at every hidden size gets an entry.
        setting: shape and threads; the table is a torch table whatever `setting.runtime` says.
        copies: slots per op per hidden size (more = smoother medians, longer rounds).
        seed: seeds the profiling archs and their random weights.
    """

    def __init__(self, space: SearchSpace, setting: LatencySetting, copies: int = 3, seed: int = 0):
        self.space = space
        self.setting = LatencySetting(setting.batch, setting.seq_len, setting.threads, "torch")
        self.clock, self.clock_name = clock_for(setting.threads)
        self.copies, self.seed = copies, seed
        archs = [arch for h in space.hidden_sizes for arch in profiling_archs(space, h, copies, seed)]
        # Allocator warm-up: the first weights a process allocates ran slower than copies made
        # later (module docstring, "Memory"), and the models a table predicts are built later.
        # Building the set once and dropping it puts the measured copies where later models go;
        # on the idle dev VM it took the table's bias over 40 archs from about +6% to +1-2%.
        torch.manual_seed(seed)
        warmup_models = [SubNet(SubNetConfig.for_arch(arch, space)) for arch in archs]
        del warmup_models
        torch.manual_seed(seed)
        self.models = [_ProfiledModel(arch, space, self.setting, self.clock) for arch in archs]
        self.rounds = 0
        self.rng = random.Random(seed)
        self.t0 = time.perf_counter()

    def step(self, record: bool) -> None:
        for i in visit_order(len(self.models), self.rng):
            self.models[i].step(record)
        self.rounds += record

    def table(self, stat: str = "median") -> LatencyTable:
        """The table from the rounds recorded so far, each entry summarised by `stat`.

        Raises:
            ValueError: if no round has been recorded, or for an unknown stat.
        """
        if not self.rounds:
            raise ValueError("TableProfiler.table: no recorded rounds yet")
        table = LatencyTable(setting=self.setting, torch_version=torch.__version__)
        for h in self.space.hidden_sizes:
            at_h = [m for m in self.models if m.arch.hidden == h]
            by_op: dict[str, list[int]] = {}
            for m in at_h:
                for op, timer in zip(m.arch.ops(), m.slot_timers, strict=True):
                    by_op.setdefault(str(op), []).extend(timer.samples)
            for op_key, samples in by_op.items():
                table.ops[(op_key, h)] = summarize_ms(samples, stat)
            for rank in self.space.ranks_at(h):
                ms = summarize_ms([s for m in at_h if m.arch.embedding_rank == rank for s in m.timers[0].samples], stat)
                if rank is None:
                    table.embeddings[h] = ms
                else:
                    table.factorised[(h, rank)] = ms
            table.head[h] = summarize_ms([s for m in at_h for s in m.timers[-1].samples], stat)
        # One overhead for all hidden sizes: the mean pool and mask bias it holds cost microseconds
        # at any H here, and a per-H residual from a handful of models would mostly fit noise.
        residual = {m.arch: summarize_ms(m.plain, stat) - table.raw_predict(m.arch) for m in self.models}
        table.overhead_ms = statistics.median(residual.values())
        table.meta.update(
            method="in-context hooks",
            clock=self.clock_name,
            stat=stat,
            # Huge pages change latencies on some VMs (see bench/latency.py); record the setting.
            thp_alloc=os.environ.get("THP_MEM_ALLOC_ENABLE", "0"),
            rounds=self.rounds,
            copies=self.copies,
            seed=self.seed,
            profiling_models=len(self.models),
            residual_ms={a.hash: round(v, 4) for a, v in residual.items()},
            build_s=round(time.perf_counter() - self.t0, 2),
        )
        return table
