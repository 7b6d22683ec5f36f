"""The last wave of a fan-out takes the cores the others leave idle, and never more than a node has."""

from __future__ import annotations

from slimformer.workers.fanout import thread_shares


def test_seven_finalists_on_two_cores_train_the_seventh_on_both() -> None:
    assert thread_shares(7, base=1, cpus=2, node_cpus=2) == [1] * 6 + [2]


def test_three_blocks_on_two_cores_and_a_full_last_wave() -> None:
    assert thread_shares(3, base=1, cpus=2, node_cpus=2) == [1, 1, 2]
    assert thread_shares(4, base=1, cpus=2, node_cpus=2) == [1, 1, 1, 1]  # no idle core to hand out


def test_a_fan_out_smaller_than_one_wave_shares_every_core() -> None:
    assert thread_shares(1, base=1, cpus=2, node_cpus=2) == [2]
    assert thread_shares(2, base=1, cpus=8, node_cpus=8) == [4, 4]


def test_a_share_never_exceeds_the_largest_node() -> None:
    # Two nodes of 2 CPUs: 5 tasks leave one leftover, which could not run on 4 CPUs of one node.
    assert thread_shares(5, base=1, cpus=4, node_cpus=2) == [1, 1, 1, 1, 2]
    assert thread_shares(7, base=1, cpus=4, node_cpus=2) == [1] * 7  # 3 leftovers on 4 CPUs: 1 each


def test_base_threads_and_empty_fan_outs() -> None:
    assert thread_shares(3, base=2, cpus=4, node_cpus=4) == [2, 2, 4]
    assert thread_shares(0, base=1, cpus=2, node_cpus=2) == []
    assert thread_shares(3, base=4, cpus=2, node_cpus=2) == [4, 4, 4]  # more than the cluster: left as asked


def test_on_ray_the_wide_task_runs_alone_first_and_a_cancel_stops_the_rest(local_ray) -> None:
    import time

    import pytest
    import ray

    from slimformer.workers.fanout import run_tasks

    # On the one local Ray of 2 CPUs (tests/conftest.py).
    def spans(i: int, threads: int, seconds: float):
        started = time.time()
        time.sleep(seconds)
        return i, threads, started, time.time()

    probe = ray.remote(spans)
    runs = run_tasks(lambda i, threads: probe.options(num_cpus=threads).remote(i, threads, 0.5), 3, base=1)
    assert [(i, threads) for i, threads, _, _ in runs] == [(0, 1), (1, 1), (2, 2)]
    wide_end = runs[2][3]
    assert all(start >= wide_end for _, _, start, _ in runs[:2])  # nothing beside it: both cores were its

    seen: list[int] = []

    def stop(i: int, _result) -> None:
        seen.append(i)
        raise RuntimeError("job cancelled")

    began = time.time()
    with pytest.raises(RuntimeError, match="job cancelled"):
        run_tasks(lambda i, threads: probe.options(num_cpus=threads).remote(i, threads, 0.2 if i == 0 else 30),
                  4, base=1, on_done=stop)
    assert seen == [0] and time.time() - began < 20  # not after the 30 s tasks ran out
