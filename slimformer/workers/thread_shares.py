"""How many torch threads each task of a stage's fan-out gets, so that its last wave leaves no core idle.

A stage fans out N tasks of `base` threads over a Ray cluster of C CPUs, C // base at a time.
When N is not a multiple of that, the last wave has fewer tasks than slots, and the other cores
idle for a whole task's time. On 2 cores, 7 finalists train in 4 waves, the seventh alone, and
3 block distillations train in 2 waves, the third alone. The leftover tasks of that last wave get
the idle cores' threads instead. They ask Ray for them as CPUs, so nothing else is scheduled on
those cores: a torch thread that shares its core with another task's thread is what makes two
threads slower than one (up to 10-50x on this machine). The figures these shares save are in
docs/method.md#job-time.

The leftover tasks are the last ones of the list (finalists: the slowest, whose larger matrices
gain most from a second thread). Ray need not run them last: a task that asks for every core may
also start first, and the waves keep the same count.
"""

from __future__ import annotations


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
