"""Measure latencies: single callables, whole SubNets (torch or onnxruntime) and latency tables.

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

Clock: with one thread the forward runs entirely on the calling thread, so it is timed with that
thread's CPU clock (CLOCK_THREAD_CPUTIME_ID), which stops while the scheduler runs another
process. On a shared machine that removes the largest noise term without changing what is
measured (a forward pass never sleeps or waits on I/O). With more threads the work is spread
over a pool, so the wall clock is used.

Order: every timed forward directly follows a forward of the same model (the latency of a model
serving requests back to back; one that follows a different model finds the caches full of that
model's weights and runs ~15% slower). Items are measured in interleaved rounds (`run_rounds`),
in a fresh random order each round, so a burst of load from other processes lands on all of
them alike; every estimate is a median unless `stat` says otherwise (`summarize_ms`).

Memory: on the 4 KB pages of the dev VM the same arch's latency depended on when its weights
were allocated (10-30% between copies). Processes that profile or serve can set
THP_MEM_ALLOC_ENABLE=1 before importing torch (bench/latency.py does) to put large tensors on
huge pages; `table.meta["thp_alloc"]` records which way a table was measured.
"""

from __future__ import annotations

import contextlib
import os
import random
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

import torch

from slimformer.search_space import Arch, SearchSpace
from slimformer.search_space.latency import (
    LatencySetting,
    LatencyTable,
    hardware_fingerprint,
    table_cache_path,
)
from slimformer.supernet.subnet import SubNet, SubNetConfig

Progress = Callable[[float, str], None]

# --- clocks, threads, rounds -------------------------------------------------------------------


def clock_for(threads: int) -> tuple[Callable[[], int], str]:
    """The clock (ns) and its name for `threads` intra-op threads (see the module docstring)."""
    if threads == 1:
        return time.thread_time_ns, "thread_cpu"
    return time.perf_counter_ns, "wall"


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """Run the body with `torch.set_num_threads(threads)`, restoring the old count afterwards."""
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(old)


class Stepper(Protocol):
    """Something measured a little per round: `step(record)` runs one round's share."""

    def step(self, record: bool) -> None: ...


def run_rounds(
    steppers: Sequence[Stepper],
    threads: int,
    repeats: int,
    warmup: int = 3,
    progress: Progress | None = None,
) -> None:
    """Run `warmup` untimed then `repeats` timed rounds, each stepping every stepper in turn.

    Interleaving several steppers (say a TableProfiler and a ModelTimer) makes them see the same
    machine: load from other processes changes over seconds to minutes, far slower than a round.

    Args:
        steppers: what to measure.
        threads: torch intra-op threads while measuring (restored afterwards).
        repeats: recorded rounds.
        warmup: unrecorded rounds first (allocator, oneDNN primitive caches).
        progress: called as progress(fraction done, message) after each round.
    """
    if repeats <= 0:
        raise ValueError(f"repeats: must be positive, got {repeats}")
    total = warmup + repeats
    with torch_threads(threads), torch.inference_mode():
        for r in range(total):
            for s in steppers:
                s.step(r >= warmup)
            if progress is not None:
                progress((r + 1) / total, f"round {r + 1}/{total}")


STATS = ("median", "low_half_mean")


def summarize_ms(samples_ns: Sequence[int], stat: str = "median") -> float:
    """One number (ms) for repeated timings (ns).

    "median" is the default. "low_half_mean" is the mean of the samples at or below the median:
    on a shared machine the upper half holds the runs other processes disturbed, and this
    statistic drifted about a third less than the median between repeated measurements on the
    2-core dev box under load. Tables and measurements compared with each other should use the
    same statistic.

    Raises:
        ValueError: for an unknown stat or no samples.
    """
    if not samples_ns:
        raise ValueError("summarize_ms: no samples")
    if stat == "median":
        return statistics.median(samples_ns) / 1e6
    if stat == "low_half_mean":
        low = sorted(samples_ns)[: (len(samples_ns) + 1) // 2]
        return sum(low) / len(low) / 1e6
    raise ValueError(f"stat: {stat!r} not in {list(STATS)}")


def measure_module(
    fn: Callable[[], Any], repeats: int = 30, warmup: int = 5, threads: int = 1, stat: str = "median"
) -> float:
    """Median milliseconds of one call of `fn`, under inference mode and `threads` torch threads.

    Args:
        fn: a no-argument callable (e.g. `lambda: op(x, bias, mask)`).
        repeats: timed calls.
        warmup: untimed calls first.
        threads: torch intra-op threads while measuring; the caller's setting is restored.
        stat: how the timings are summarised (see `summarize_ms`).

    Returns:
        The median (or `stat`) time in ms.

    Raises:
        ValueError: if repeats is not positive.
    """
    if repeats <= 0:
        raise ValueError(f"repeats: must be positive, got {repeats}")
    clock, _ = clock_for(threads)
    samples = []
    with torch_threads(threads), torch.inference_mode():
        for _ in range(warmup):
            fn()
        for _ in range(repeats):
            start = clock()
            fn()
            samples.append(clock() - start)
    return summarize_ms(samples, stat)


# --- whole models ------------------------------------------------------------------------------


def random_inputs(cfg: SubNetConfig, setting: LatencySetting, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """(input_ids, attention_mask, token_type_ids) of shape [batch, seq_len]: random ids, no padding.

    Raises:
        ValueError: if seq_len exceeds the model's position table.
    """
    if setting.seq_len > cfg.max_position:
        raise ValueError(f"seq_len: {setting.seq_len} exceeds the model's {cfg.max_position} positions")
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, cfg.vocab_size, (setting.batch, setting.seq_len), generator=g)
    return ids, torch.ones_like(ids), torch.zeros_like(ids)


def _visit_order(n: int, rng: random.Random) -> list[int]:
    """A fresh order per round, so no model always follows the same one or sits at a round's start."""
    order = list(range(n))
    rng.shuffle(order)
    return order


class ModelTimer:
    """Times whole torch SubNets, one visit per round: one untimed forward, then `timed` timed ones.

    Models are visited in a seeded random order each round.

    Attributes:
        samples: per model, the recorded forward times in ns.
    """

    def __init__(self, models: Sequence[SubNet], setting: LatencySetting, timed: int = 2, seed: int = 0):
        if setting.runtime != "torch":
            raise ValueError(f"ModelTimer times torch models; setting.runtime is {setting.runtime!r}")
        self.models = [m.eval() for m in models]
        self.inputs = [random_inputs(m.config, setting) for m in self.models]
        self.clock, self.clock_name = clock_for(setting.threads)
        self.timed = timed
        self.rng = random.Random(seed)
        self.samples: list[list[int]] = [[] for _ in self.models]

    def step(self, record: bool) -> None:
        for i in _visit_order(len(self.models), self.rng):
            model, args = self.models[i], self.inputs[i]
            model(*args)  # settle the caches on this model
            for _ in range(self.timed):
                start = self.clock()
                model(*args)
                if record:
                    self.samples[i].append(self.clock() - start)

    def latencies(self, stat: str = "median") -> list[float]:
        """Median (or `stat`, see `summarize_ms`) ms per model, in order."""
        return [summarize_ms(s, stat) for s in self.samples]


def measure_models_latency(
    models: Sequence[SubNet], setting: LatencySetting, repeats: int = 30, warmup: int = 3, stat: str = "median"
) -> list[float]:
    """Median forward latency (ms) of each torch SubNet, measured in interleaved rounds.

    Args:
        models: SubNets (put in eval mode here).
        setting: shape and threads (runtime must be "torch").
        repeats: rounds; each records two forwards per model.
        warmup: unrecorded rounds first.
        stat: how each model's timings are summarised (see `summarize_ms`).

    Returns:
        One median (or `stat`) per model, in order.

    Raises:
        ValueError: if setting.runtime is not "torch" or seq_len exceeds a model's positions.
    """
    timer = ModelTimer(models, setting)
    run_rounds([timer], setting.threads, repeats, warmup)
    return timer.latencies(stat)


def measure_model_latency(
    model: SubNet, setting: LatencySetting, repeats: int = 30, warmup: int = 3, stat: str = "median"
) -> float:
    """Median forward latency of one torch SubNet in ms (see `measure_models_latency`)."""
    return measure_models_latency([model], setting, repeats, warmup, stat)[0]


class OnnxTimer:
    """Times ONNX models under onnxruntime, one visit per round like `ModelTimer`.

    Sessions use `setting.threads` intra-op threads, one inter-op thread, sequential execution
    and all graph optimisations. Inputs are random ids below `vocab_size`, a full mask and zero
    token types (whichever of those the graph takes).
    """

    def __init__(
        self, onnx_paths: Sequence[str | Path], setting: LatencySetting, vocab_size: int, timed: int = 2
    ):
        import numpy as np
        import onnxruntime as ort

        self.sessions = []
        self.feeds = []
        rng = np.random.default_rng(0)
        shape = (setting.batch, setting.seq_len)
        for path in onnx_paths:
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = setting.threads
            opts.inter_op_num_threads = 1
            opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            opts.log_severity_level = 3
            sess = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
            feed = {}
            for inp in sess.get_inputs():
                if inp.name == "input_ids":
                    feed[inp.name] = rng.integers(0, vocab_size, size=shape, dtype=np.int64)
                elif inp.name == "attention_mask":
                    feed[inp.name] = np.ones(shape, dtype=np.int64)
                else:
                    feed[inp.name] = np.zeros(shape, dtype=np.int64)
            self.sessions.append(sess)
            self.feeds.append(feed)
        # With one intra-op thread onnxruntime runs the graph on the calling thread, as torch does.
        self.clock, self.clock_name = clock_for(setting.threads)
        self.timed = timed
        self.rng = random.Random(0)
        self.samples: list[list[int]] = [[] for _ in self.sessions]

    def step(self, record: bool) -> None:
        for i in _visit_order(len(self.sessions), self.rng):
            sess, feed = self.sessions[i], self.feeds[i]
            sess.run(None, feed)  # settle the caches on this model
            for _ in range(self.timed):
                start = self.clock()
                sess.run(None, feed)
                if record:
                    self.samples[i].append(self.clock() - start)

    def latencies(self, stat: str = "median") -> list[float]:
        """Median (or `stat`, see `summarize_ms`) ms per model, in order."""
        return [summarize_ms(s, stat) for s in self.samples]


def measure_onnx_models_latency(
    onnx_paths: Sequence[str | Path],
    setting: LatencySetting,
    vocab_size: int = 100,
    repeats: int = 30,
    warmup: int = 3,
    stat: str = "median",
) -> list[float]:
    """Median onnxruntime latency (ms) of each ONNX model, in interleaved rounds (see `OnnxTimer`).

    Args:
        onnx_paths: ONNX files taking input_ids / attention_mask / token_type_ids.
        setting: shape and threads (the runtime field is not checked).
        vocab_size: upper bound for the random ids.
        repeats, warmup: recorded and unrecorded rounds.
        stat: how each model's timings are summarised (see `summarize_ms`).

    Returns:
        One median (or `stat`) per file, in order.
    """
    timer = OnnxTimer(onnx_paths, setting, vocab_size)
    run_rounds([timer], setting.threads, repeats, warmup)
    return timer.latencies(stat)


def measure_onnx_latency(
    onnx_path: str | Path,
    setting: LatencySetting,
    vocab_size: int = 100,
    repeats: int = 30,
    warmup: int = 3,
    stat: str = "median",
) -> float:
    """Median onnxruntime latency of one ONNX model in ms (see `measure_onnx_models_latency`)."""
    return measure_onnx_models_latency([onnx_path], setting, vocab_size, repeats, warmup, stat)[0]


def export_for_latency(model: SubNet, folder: Path) -> Path:
    """Export `model` to `folder/model.onnx` with the project's exporter (`supernet.export`)."""
    from slimformer.supernet.export import export_onnx

    return export_onnx(model, folder)


# --- latency tables ----------------------------------------------------------------------------


def profiling_archs(space: SearchSpace, hidden: int, copies: int = 3, seed: int = 0) -> list[Arch]:
    """Archs at `hidden` whose slots hold every op of the space at least `copies` times.

    Identity is included like any op, so each op's neighbours look like those in uniformly
    sampled archs. Ops are shuffled with a seeded RNG and cut into archs; the last is topped up
    with random ops.
    """
    rng = random.Random(f"{seed}-{hidden}")
    ops = [op for op in space.slot_ops() for _ in range(copies)]
    rng.shuffle(ops)
    per_arch = space.num_blocks * space.slots_per_block
    while len(ops) % per_arch:
        ops.append(rng.choice(space.slot_ops()))
    archs = []
    for start in range(0, len(ops), per_arch):
        flat = ops[start : start + per_arch]
        k = space.slots_per_block
        blocks = tuple(tuple(flat[b * k : (b + 1) * k]) for b in range(space.num_blocks))
        archs.append(space.validate(Arch(hidden, blocks)))
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
        for i in _visit_order(len(self.models), self.rng):
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
            table.embeddings[h] = summarize_ms([s for m in at_h for s in m.timers[0].samples], stat)
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


def calibration_set(space: SearchSpace, n: int, seed: int = 0) -> list[Arch]:
    """`n` seeded random archs, cycling through the hidden sizes so every size is represented."""
    rng = random.Random(f"calibration-{seed}")
    return [space.sample(rng, hidden=space.hidden_sizes[i % len(space.hidden_sizes)]) for i in range(n)]


def calibration_models(space: SearchSpace, n: int = 8, seed: int = 0) -> tuple[list[Arch], list[SubNet]]:
    """The `calibration_set` archs and seeded random-weight SubNets of them (eval mode).

    Whoever times the check archs again (finalize re-checks the table next to the finalists)
    gets the very models `check_against_models` and `calibrate_onnx` timed.
    """
    archs = calibration_set(space, n, seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        models = [SubNet(SubNetConfig.for_arch(a, space)).eval() for a in archs]
    return archs, models


def calibrate_onnx(
    table: LatencyTable,
    space: SearchSpace,
    setting: LatencySetting,
    n: int = 8,
    seed: int = 0,
    repeats: int = 20,
    stat: str = "median",
) -> LatencyTable:
    """Turn a torch table into an onnxruntime table by a linear fit on `n` whole ONNX models.

    The `n` calibration archs (`calibration_set`) are exported with the project's exporter and
    timed under onnxruntime; `table.calibrate` then fits scale and offset, and the table's setting
    becomes `setting` (runtime "onnxruntime"). Per-op ONNX tables were not built: onnxruntime
    fuses across op boundaries (MatMul+Add, LayerNorm, Gelu) and adds a per-session-call cost, so
    ops exported one by one would not time as they run inside a whole graph.

    Raises:
        ValueError: if n < 2 (scale and offset need two points).
    """
    if n < 2:
        raise ValueError(f"calibration archs: an onnxruntime table needs at least 2, got {n}")
    t0 = time.perf_counter()
    archs, models = calibration_models(space, n, seed)
    with tempfile.TemporaryDirectory(prefix="slimformer-latency-") as tmp:
        paths = [export_for_latency(model, Path(tmp) / f"m{i}") for i, model in enumerate(models)]
        measured = measure_onnx_models_latency(paths, setting, space.teacher.vocab_size, repeats=repeats, stat=stat)
    table.setting = setting
    table.calibrate(zip(archs, measured, strict=True))
    table.meta.update(
        base_runtime="torch",
        onnx_calibration={
            "archs": [a.to_dict() for a in archs],
            "measured_ms": [round(m, 4) for m in measured],
            "seconds": round(time.perf_counter() - t0, 2),
        },
    )
    return table


def check_against_models(
    table: LatencyTable,
    space: SearchSpace,
    setting: LatencySetting,
    n: int = 8,
    seed: int = 0,
    repeats: int = 20,
    stat: str = "median",
) -> LatencyTable:
    """Correct `table` for how fast this machine runs *now*, from `n` whole models measured now.

    Why: a table is cached per machine, but a shared VM's speed drifts by a few percent from one
    minute to the next (noisy neighbours, frequency); on the idle dev VM a table profiled a minute
    before the measurement of 40 archs under- or over-predicted all of them alike by up to 6%,
    while a scale fitted on 8 other archs measured alongside them brought the error to 1-3%.
    Torch: the scale alone is fitted (drift is a factor; the in-context entries already carry
    the overhead). Onnxruntime: `calibrate_onnx`, which fits scale and offset on exported models.

    Returns:
        `table`, corrected in place; `table.meta["checked"]` holds the archs' measured and
        predicted ms and the fitted scale.
    """
    if setting.runtime == "onnxruntime":
        return calibrate_onnx(table, space, setting, n, seed, repeats, stat)
    t0 = time.perf_counter()
    archs, models = calibration_models(space, n, seed)
    measured = measure_models_latency(models, setting, repeats=repeats, stat=stat)
    table.calibrate(zip(archs, measured, strict=True), fit_offset=False)
    table.meta["checked"] = {
        "archs": [a.hash for a in archs],
        "measured_ms": [round(m, 4) for m in measured],
        "predicted_ms": [round(table.predict(a), 4) for a in archs],
        "scale": round(table.scale, 4),
        "seconds": round(time.perf_counter() - t0, 2),
    }
    return table


def build_latency_table(
    space: SearchSpace,
    setting: LatencySetting,
    cache_dir: str | Path | None = None,
    repeats: int = 20,
    warmup: int = 3,
    copies: int = 3,
    seed: int = 0,
    calibration_archs: int = 8,
    stat: str = "median",
    progress: Progress | None = None,
) -> LatencyTable:
    """Measure (or load from cache) the latency table of `space` on this machine under `setting`.

    Runtime "torch": every (op, H) entry, embeddings[H], head[H] and the overhead are measured in
    context by a `TableProfiler`. Runtime "onnxruntime": the torch table is measured the same way,
    then `calibrate_onnx` fits its scale and offset on `calibration_archs` whole ONNX models.
    Every table handed out, fresh or from the cache, has been checked against
    `calibration_archs` whole models measured just now (`check_against_models`), so it predicts
    the machine's speed at the time of use.

    Args:
        space: the search space.
        setting: batch, sequence length, threads and runtime.
        cache_dir: if given, the table is loaded from / saved to `table_cache_path(...)` there; a
            cached table that lacks entries for `space` is measured again.
        repeats: recorded rounds over the profiling models.
        warmup: unrecorded rounds first.
        copies: slots per op per hidden size.
        seed: seeds the profiling and calibration archs and weights.
        calibration_archs: whole models every table is checked against (0: torch tables are not checked).
        stat: how timings are summarised (see `summarize_ms`); a cached table made with another
            statistic is measured again.
        progress: called as progress(fraction, message) while profiling.

    Returns:
        The LatencyTable; `table.meta["loaded_from"]` is set when it came from the cache.
    """
    path = None
    if cache_dir is not None:
        path = table_cache_path(cache_dir, hardware_fingerprint(), setting, torch.__version__, space)
        if path.exists():
            table = LatencyTable.load(path)
            if not table.missing(space) and table.meta.get("stat", "median") == stat:
                table.meta["loaded_from"] = str(path)
                if calibration_archs:
                    check_against_models(table, space, setting, calibration_archs, seed, repeats, stat)
                return table
    summarize_ms([1], stat)  # reject an unknown stat before minutes of measuring
    profiler = TableProfiler(space, setting, copies, seed)
    run_rounds([profiler], setting.threads, repeats, warmup, progress)
    table = profiler.table(stat)
    if setting.runtime == "onnxruntime" or calibration_archs:
        check_against_models(table, space, setting, calibration_archs, seed, repeats, stat)
    if path is not None:
        table.save(path)
    return table
