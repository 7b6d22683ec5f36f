"""Finalists are spread evenly over the latency range, and each band's pick weighs score and size."""

from __future__ import annotations

from slimformer.search.finalists import (
    candidate_pool,
    choose_finalists,
    one_cut_per_depth,
    reference_records,
    tier_picks,
)
from slimformer.search.study import TrialRecord


def choose_below_cuts(*args, **kw) -> list[TrialRecord]:
    return tier_picks(*args, **kw)[0]


def _record(i: int, latency: float, proxy: float, params: int = 1, feasible: bool = True) -> TrialRecord:
    return TrialRecord(i, {}, f"h{i}", proxy, latency, 1.0, params, feasible, "COMPLETE")


def _picks(records, k, **kw) -> list[str]:
    return [r.hash for r in choose_finalists(records, k, **kw)]


def test_a_dense_cheap_end_does_not_take_every_finalist():
    # Ten cheap points between 4 and 6 ms, then three near the teacher: rank spacing would give the
    # cheap end most picks; latency spacing gives one pick per part of the range.
    front = [_record(i, 4 + 0.2 * i, 1 - 0.01 * i) for i in range(10)]
    front += [_record(10, 13.0, 0.5), _record(11, 19.0, 0.3), _record(12, 26.0, 0.1)]
    picked = [r.latency_ms for r in choose_finalists(front, 4)]
    assert picked[1:] == [13.0, 19.0, 26.0] and 4.0 <= picked[0] <= 6.0
    # Within a band the better score wins when sizes are equal: 0.4 ms slower but clearly better.
    better = front + [_record(13, 13.4, 0.35)]
    assert _picks(better, 4)[1:] == ["h13", "h11", "h12"]
    assert len(set(_picks(front, 6))) == 6  # never the same point twice
    assert _picks(front, 1) == ["h12"]  # one finalist: the best score
    assert len(choose_finalists(front[:3], 5)) == 3


def test_a_wide_model_off_the_score_front_wins_its_band():
    # At ~12.5 ms a narrow full-depth model (7.5M params) scores a little better than a wide
    # layer-dropped one (17.2M) that is also a little slower: the wide one is off the
    # score-vs-latency front, yet fine-tuned it is the better model. Combined rank picks it.
    narrow = _record(1, 12.5, 0.30, params=7_500_000)
    wide = _record(2, 12.9, 0.31, params=17_200_000)
    cheap = _record(0, 4.0, 0.60, params=4_700_000)
    slow = _record(3, 20.0, 0.10, params=20_800_000)
    assert _picks([cheap, narrow, wide, slow], 3) == ["h0", "h2", "h3"]
    # But size alone does not decide: a big model with a clearly worse score than two others loses.
    bloated = _record(4, 12.7, 0.90, params=18_000_000)
    good = _record(5, 12.6, 0.20, params=12_000_000)
    assert _picks([cheap, narrow, bloated, good, slow], 3) == ["h0", "h5", "h3"]


def test_the_pool_drops_infeasible_unscored_dominated_and_excluded_records():
    ok = _record(0, 5.0, 0.5, params=10)
    dominated = _record(1, 6.0, 0.6, params=9)  # slower, worse and smaller than ok
    infeasible = _record(2, 4.0, 0.1, params=50, feasible=False)
    unscored = TrialRecord(3, {}, "h3", None, 3.0, 1.0, 5, True, "COMPLETE")
    teacher = _record(4, 25.0, 0.0, params=99)
    duplicate = TrialRecord(5, {}, "h0", 0.5, 5.0, 1.0, 10, True, "COMPLETE")  # same arch, later trial
    pool = candidate_pool([ok, dominated, infeasible, unscored, teacher, duplicate], exclude={"h4"})
    assert [r.hash for r in pool] == ["h0"]


def test_reference_records_keep_the_given_order_and_only_feasible_scored_ones():
    cut1, cut2 = _record(1, 6.0, 0.5), _record(2, 11.0, 0.4)
    over_budget = _record(3, 17.0, 0.3, feasible=False)
    unscored = TrialRecord(4, {}, "h4", None, 20.0, 1.0, 1, True, "FAIL")
    again = TrialRecord(5, {}, "h2", 0.9, 11.5, 1.0, 1, True, "COMPLETE")  # cut 2 again: the first one counts
    records = [cut2, over_budget, unscored, cut1, again]
    picked = reference_records(records, ["h1", "h2", "h3", "h4", "h9"])
    assert [r.hash for r in picked] == ["h1", "h2"] and picked[1].proxy == 0.4
    # The band picks leave the references to them: choose_finalists never returns an excluded hash.
    assert not {"h1", "h2"} & set(_picks([cut1, cut2, _record(6, 7.0, 0.2), _record(7, 12.0, 0.1)], 2,
                                         exclude={"h1", "h2"}))


def test_one_pick_at_most_as_slow_as_each_cut():
    # Cuts at 8, 11, 17, 22, 28 ms open four tiers, none wide: (8, 11], (11, 17], (17, 22], (22, 28].
    cuts = [8.0, 11.0, 17.0, 22.0, 28.0]
    just_over = _record(1, 11.2, 0.1, params=9)  # slower than the 2-layer cut: tier 3, not tier 2
    tier2 = [_record(2, 10.5, 0.4, params=5), _record(3, 10.9, 0.3, params=6)]
    tier3 = [just_over, _record(4, 16.0, 0.5, params=4)]
    tier5 = [_record(5, 27.0, 0.2, params=10)]
    records = tier2 + tier3 + tier5
    picks = choose_below_cuts(records, cuts, 4)
    assert [r.hash for r in picks] == ["h3", "h1", "h5"]  # tier (17, 22] is empty: no pick there
    assert all(any(lo < r.latency_ms <= hi for lo, hi in zip(cuts, cuts[1:], strict=False)) for r in picks)
    # Fewer picks than tiers: evenly spaced tiers (the first and the last) are kept.
    assert [r.hash for r in choose_below_cuts(records, cuts, 2)] == ["h3", "h5"]
    assert choose_below_cuts(records, [6.0], 4) == [] and choose_below_cuts(records, cuts, 0) == []


def test_below_the_cheapest_cut_the_best_model_that_is_not_a_swap_is_a_pick():
    # Nothing plain is faster than the 1-layer cut (6 ms): the best other model there is one more pick.
    cuts = [6.0, 11.0, 17.0]
    one_layer_swap = _record(1, 6.0, 0.5, params=9)  # the teacher's layer 5 alone: the cut stands for it
    below = [_record(2, 4.0, 0.6, params=3), _record(3, 5.5, 0.4, params=4)]
    tier = [_record(4, 10.0, 0.3, params=6)]
    picks, answered = tier_picks([one_layer_swap, *below, *tier], cuts, 2, stand_ins={"h1"})
    assert [r.hash for r in picks] == ["h3", "h4"] and answered == 0
    assert [r.hash for r in choose_below_cuts([one_layer_swap, *below], [6.0], 4, stand_ins={"h1"})] == ["h3"]
    assert choose_below_cuts([one_layer_swap], cuts, 4, stand_ins={"h1"}) == []


def test_a_wide_tier_also_gets_its_best_model_that_is_not_a_swap_of_its_cut():
    # Cuts at 7, 13.5, 20 ms: (7, 13.5] is 1.93x wide, (13.5, 20] only 1.48x.
    cuts = [7.0, 13.5, 20.0]
    swap = _record(1, 13.5, 0.3, params=10)  # a same-cost layer swap of the 2-layer cut: the tier's best
    narrowed = [_record(2, 12.6, 0.35, params=8), _record(3, 12.9, 0.5, params=7), _record(4, 13.4, 0.4, params=6)]
    upper = [_record(5, 19.0, 0.3, params=12), _record(6, 18.0, 0.4, params=11)]
    picks = choose_below_cuts([swap, *narrowed, *upper], cuts, 4, stand_ins={"h1"})
    # Beside the swap (answered by the cut), the wide tier's best other model: h2 beats h3 and h4 on
    # the combined rank.
    assert [r.hash for r in picks] == ["h2", "h5"]
    # Only swaps in the wide tier: nothing from it.
    assert [r.hash for r in choose_below_cuts([swap, *upper], cuts, 4, stand_ins={"h1"})] == ["h5"]
    # A non-swap at nearly the cut's cost is a candidate too (the old rule wanted 95% of the cut's latency).
    assert [r.hash for r in choose_below_cuts([swap, narrowed[2], *upper], cuts, 4, stand_ins={"h1"})] == ["h4", "h5"]
    # The narrow tier gets no second pick.
    assert [r.hash for r in choose_below_cuts(upper, cuts, 4)] == ["h5"]


def test_a_wide_tier_with_a_teacher_shaped_anchor_gives_that_anchor_alone():
    # The stop-28 tier (3.7, 7.3 ms]: a hybrid scored best, its factorised near-copy next; the H192
    # half-depth anchor scored worse but fine-tuned better. The anchor is the tier's one pick.
    # The tier's candidates as that run scored them (latency ms, shared KL, parameters).
    cuts = [3.7, 7.3, 11.0]
    hybrid, near_copy = _record(1, 7.02, 0.284, params=5_761_986), _record(2, 7.21, 0.282, params=5_018_626)
    anchor, other_anchor = _record(3, 6.45, 0.331, params=5_841_602), _record(4, 5.03, 0.365, params=3_897_090)
    rest = [_record(5, 5.10, 0.362, params=2_521_538), _record(6, 5.78, 0.330, params=2_333_090),
            _record(7, 6.42, 0.298, params=2_964_002)]
    records = [hybrid, near_copy, anchor, other_anchor, *rest]
    assert [r.hash for r in choose_below_cuts(records, cuts, 2)] == ["h1", "h2"]  # no anchors named
    picks = choose_below_cuts(records, cuts, 2, anchors={"h3", "h4"})
    assert [r.hash for r in picks] == ["h3"]  # the better of the two anchors by combined rank, and no hybrid
    assert [r.hash for r in choose_below_cuts([anchor, near_copy], cuts, 2, anchors={"h3"})] == ["h3"]
    # An anchor that is a layer swap of the cut is the cut's: the tier falls back to its other picks.
    assert [r.hash for r in choose_below_cuts(records, cuts, 2, anchors={"h3"}, stand_ins={"h3"})] == ["h1", "h2"]
    # The narrow tier (7.3, 11] gets no second pick, anchor or not.
    upper = [_record(5, 10.0, 0.2, params=9), _record(6, 9.0, 0.3, params=8)]
    assert [r.hash for r in choose_below_cuts(upper, cuts, 2, anchors={"h6"})] == ["h5"]


def test_a_tier_whose_best_is_a_layer_swap_of_its_cut_gives_no_pick():
    # The cut stands for a same-cost swap of itself: fine-tuning the swap costs a finalist for a model
    # that measured within 0.7 point of the cut in stop 19.
    cuts = [7.0, 13.5, 20.0]
    swap = _record(1, 13.5, 0.3, params=10)
    narrowed = _record(2, 12.6, 0.35, params=8)  # not a swap: the wide tier's second pick
    upper_swap, upper = _record(5, 19.0, 0.3, params=12), _record(6, 18.0, 0.4, params=11)
    records = [swap, narrowed, upper_swap, upper]
    assert [r.hash for r in choose_below_cuts(records, cuts, 4)] == ["h2", "h1", "h5"]
    picks, answered = tier_picks(records, cuts, 4, stand_ins={"h1", "h5"})
    # Both tiers' best are swaps: no ordinary pick; the wide tier's best non-swap stays.
    assert [r.hash for r in picks] == ["h2"] and answered == 2
    # A tier whose best is not a swap keeps its pick, though a swap is in the band.
    picks, answered = tier_picks([swap, narrowed, upper], cuts, 4, stand_ins={"h1"})
    assert [r.hash for r in picks] == ["h2", "h6"] and answered == 1


def test_one_cut_per_depth_keeps_the_better_scored_of_two_cuts_with_as_many_layers():
    # A 6-layer teacher's first 3 layers and every other layer cost the same: one fine-tune, not two.
    first1, first3, every_other, first4 = (_record(1, 5.0, 0.6), _record(3, 15.0, 0.30),
                                           _record(7, 15.1, 0.25), _record(4, 20.0, 0.2))
    other = _record(9, 12.0, 0.1)  # not a plain cut: never dropped
    depth = {"h1": 1, "h3": 3, "h7": 3, "h4": 4}.get
    kept = one_cut_per_depth([first1, first3, every_other, first4, other], lambda r: depth(r.hash))
    assert [r.hash for r in kept] == ["h1", "h7", "h4", "h9"]
    # The score decides, not the order or the latency.
    worse = _record(7, 15.1, 0.35)
    assert [r.hash for r in one_cut_per_depth([first3, worse], lambda r: depth(r.hash))] == ["h3"]
