"""A stage's fan-out of Ray tasks: how many cores each task gets, and the waves they run in.

A stage fans out N tasks of `base` threads over a Ray cluster of C CPUs, C // base at a time.
When N is not a multiple of that, one wave has fewer tasks than slots, and the other cores idle
for a whole task's time. On 2 cores, 7 finalists train in 4 waves, one of them alone, and 3 block
distillations in 2 waves, one alone. Those leftover tasks get the idle cores' threads instead
(`thread_shares`; a second thread fit the teacher's first 1 and 5 layers 1.5-1.6x faster, an H128
student only 1.25x). They ask Ray for them as CPUs,
so nothing else is scheduled on those cores: a torch thread that shares its core with another
task's thread is what makes two threads slower than one (up to 10-50x on this machine).

The leftover tasks are the last ones of the list (finalists: the slowest, whose larger matrices
gain most from a second thread), and `run_tasks` runs them first, as a wave of their own, while
every core is free. Submitted beside the others, a task that asks for every core waits until all
of them are free at once, and the cores the quicker tasks free meanwhile idle: in the stop-29
quality job, the third block asked for both cores after the first two had started, waited 25 s
for the slower of them, and ended 9 s later than on one thread. It gains where the tasks take
about as long (finalists), not where one of the others is much slower (blocks): there the
one-thread order already filled the gap. Job times: docs/method.md#job-time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def thread_shares(n_tasks: int, base: int, cpus: int, node_cpus: int) -> list[int]:
    """Threads per task, in task order: `base` each, the last wave's leftover tasks sharing the idle cores.

    Args:
        n_tasks: tasks in the fan-out.
        base: threads (and Ray CPUs) of an ordinary task.
        cpus: CPUs of the whole cluster.
        node_cpus: CPUs of its largest node (a task runs on one node; asking for more never runs).
    """
    if n_tasks <= 0:
        return []
    base = max(1, base)
    slots = max(1, cpus // base)
    shares = [base] * n_tasks
    leftover = n_tasks % slots
    if leftover:  # also a fan-out smaller than one wave: its tasks share every core
        share = max(base, min(node_cpus, cpus // leftover))
        shares[n_tasks - leftover:] = [share] * leftover
    return shares


def ray_thread_shares(n_tasks: int, base: int) -> list[int]:
    """`thread_shares` on the running Ray cluster; `base` for every task where the tasks train on GPUs."""
    import ray

    from slimformer.supernet.device import ray_gpus_per_task

    if ray_gpus_per_task() > 0:
        return [base] * n_tasks
    cpus = int(ray.cluster_resources().get("CPU", base))
    node_cpus = max((int(node.get("Resources", {}).get("CPU", 0)) for node in ray.nodes() if node.get("Alive")),
                    default=base)
    return thread_shares(n_tasks, base, cpus, node_cpus)


def run_tasks(submit: Callable[[int, int], Any], n_tasks: int, base: int,
              on_done: Callable[[int, Any], None] | None = None,
              poll: Callable[[], None] | None = None) -> list[Any]:
    """Run a fan-out of `n_tasks` Ray tasks, the wide ones first (see above); their results in task order.

    Args:
        submit: `submit(i, threads)` starts task i on `threads` cores (its Ray CPUs and its torch
            threads) and returns its ObjectRef.
        base: threads of an ordinary task.
        on_done: called with (i, result) as each task finishes.
        poll: called every few seconds while tasks run. What it or `on_done` raises (a cancelled job)
            cancels the tasks that have not finished, then propagates.
    """
    import ray

    shares = ray_thread_shares(n_tasks, base)
    results: list[Any] = [None] * n_tasks
    wide = [i for i in range(n_tasks) if shares[i] > base]
    for wave in (wide, [i for i in range(n_tasks) if shares[i] <= base]):
        index = {submit(i, shares[i]): i for i in wave}
        pending = list(index)
        try:
            while pending:
                done, pending = ray.wait(pending, num_returns=1, timeout=5.0)
                for ref in done:
                    results[index[ref]] = ray.get(ref)
                    if on_done:
                        on_done(index[ref], results[index[ref]])
                if poll:
                    poll()
        except BaseException:
            for ref in pending:
                ray.cancel(ref, force=True)
            raise
    return results
