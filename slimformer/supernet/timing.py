"""Time work on the CPU: the clock, torch's thread count, interleaved rounds and the statistic.

The common ground of every latency measurement in slimformer: `model_timing` times whole models,
`op_profiler` the parts of a latency table and `latency_build` puts the two together; all of them
run their work through `run_rounds` and summarise it with `summarize_ms`.

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
"""

from __future__ import annotations

import contextlib
import random
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

import torch

Progress = Callable[[float, str], None]


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


def visit_order(n: int, rng: random.Random) -> list[int]:
    """A fresh order per round, so no model always follows the same one or sits at a round's start."""
    order = list(range(n))
    rng.shuffle(order)
    return order


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
