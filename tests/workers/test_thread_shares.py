"""The last wave of a fan-out takes the cores the others leave idle, and never more than a node has."""

from __future__ import annotations

from slimformer.workers.thread_shares import thread_shares


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
