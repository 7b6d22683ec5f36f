"""Finalists are spread evenly over the front's latency range, not its ranks."""

from __future__ import annotations

from slimformer.search.study import TrialRecord
from slimformer.workers.stages.search import spread_along_front


def _record(i: int, latency: float, proxy: float) -> TrialRecord:
    return TrialRecord(i, {}, f"h{i}", proxy, latency, 1.0, 1, True, "COMPLETE")


def test_a_dense_cheap_end_does_not_take_every_finalist():
    # Ten cheap points between 4 and 6 ms, then three near the teacher: rank spacing would give the
    # cheap end most picks; latency spacing gives one pick per part of the range.
    front = [_record(i, 4 + 0.2 * i, 1 - 0.01 * i) for i in range(10)]
    front += [_record(10, 13.0, 0.5), _record(11, 19.0, 0.3), _record(12, 26.0, 0.1)]
    picked = [r.latency_ms for r in spread_along_front(front, 4)]
    assert picked == [4.0, 13.0, 19.0, 26.0]
    # Within a band the better score wins: a point 0.4 ms slower but clearly better replaces the nearest.
    better = front + [_record(13, 13.4, 0.35)]
    assert [r.hash for r in spread_along_front(better, 4)] == ["h0", "h13", "h11", "h12"]
    assert len({r.hash for r in spread_along_front(front, 6)}) == 6  # never the same point twice
    assert [r.hash for r in spread_along_front(front, 1)] == ["h12"]  # one finalist: the best score
    assert len(spread_along_front(front[:3], 5)) == 3
