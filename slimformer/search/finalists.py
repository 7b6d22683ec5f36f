"""Which scored architectures become finalists: a few per latency band, chosen by two signals.

The search scores every candidate with shared weights (KL to the teacher, or the block-wise proxy).
That score alone picked narrow full-depth models over full-width layer-dropped ones at the same
latency, and the narrow ones fine-tuned 3-5 points worse (bench/results/quality.json, stop 12:
H128 full depth, shared KL 0.33, dev 0.76; H384 every other layer, KL 0.27, dev 0.81). Over the
same twelve fine-tuned architectures the parameter count ranked final accuracy better than the
score (Kendall tau 0.85 against 0.76). So within a latency band the finalist is the candidate with
the best combined rank of score (lower is better) and parameters (more is better), a Borda count
of the two signals: neither alone decides, and a big model with a poor score loses to a slightly
smaller one that scores well. Ties go to the larger model.

The pool is every feasible scored trial, not only the score-vs-latency front: a wide model with a
slightly worse score than a narrow one at the same latency is off that front, and it is exactly
the model we want to see.

Beside the band picks, the teacher's layer-dropped models (`SearchSpace.reference_finalists`) are
fine-tuned when the search scored them within budget (`reference_records`), one per layer count
(`one_cut_per_depth`): the front is then never worse than the cut kept at each depth, by
construction, and a band pick is handed over only where its measured figures beat the cut's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from slimformer.search.study import TrialRecord


def _dominated(r: TrialRecord, others: list[TrialRecord]) -> bool:
    """r is no better than some other record in score, latency and (more) parameters, and worse in one."""
    for o in others:
        if o is r:
            continue
        no_worse = o.proxy <= r.proxy and o.latency_ms <= r.latency_ms and _params(o) >= _params(r)
        better = o.proxy < r.proxy or o.latency_ms < r.latency_ms or _params(o) > _params(r)
        if no_worse and better:
            return True
    return False


def candidate_pool(records: Iterable[TrialRecord], exclude: set[str] = frozenset()) -> list[TrialRecord]:
    """Feasible scored records, one per architecture, not dominated in (score, latency, -params)."""
    unique: dict[str, TrialRecord] = {}
    for r in records:
        if r.feasible and r.proxy is not None and r.latency_ms is not None and r.hash not in exclude:
            unique.setdefault(r.hash, r)
    pool = list(unique.values())
    return [r for r in pool if not _dominated(r, pool)]


def _params(r: TrialRecord) -> int:
    return r.params or 0  # a record without a count (older studies) ranks as the smallest model


def _borda_best(band: list[TrialRecord]) -> TrialRecord:
    by_score = {r.hash: i for i, r in enumerate(sorted(band, key=lambda r: r.proxy))}
    by_params = {r.hash: i for i, r in enumerate(sorted(band, key=lambda r: -_params(r)))}
    # A tie (always so between two candidates that each win one signal) goes to the larger model:
    # parameters ranked fine-tuned accuracy better than the score did.
    return min(band, key=lambda r: (by_score[r.hash] + by_params[r.hash], -_params(r), r.proxy, r.latency_ms))


def choose_finalists(records: Iterable[TrialRecord], k: int, exclude: set[str] = frozenset()) -> list[TrialRecord]:
    """k finalists spread over the pool's predicted latency range, fastest first (all if k >= pool).

    The range from the fastest to the slowest candidate is cut into k bands of equal width around
    evenly spaced latency targets; each band gives its best unused candidate by combined rank (the
    nearest unused candidate when the band is empty). Even spacing in latency, not in rank, because
    pools are dense where many cheap archs score alike and sparse near the teacher, and a user
    choosing a model for a latency budget needs choices at every budget. With k == 1 the single
    finalist is the best score. `exclude` names hashes that are references, not results (the
    teacher itself).
    """
    pool = sorted(candidate_pool(records, exclude), key=lambda r: (r.latency_ms, r.proxy))
    if len(pool) <= k:
        return pool
    if k == 1:
        return [min(pool, key=lambda r: (r.proxy, r.latency_ms))]
    lo, hi = pool[0].latency_ms, pool[-1].latency_ms
    half = (hi - lo) / (k - 1) / 2
    taken: list[TrialRecord] = []
    for i in range(k):
        target = lo + (hi - lo) * i / (k - 1)
        used = {r.hash for r in taken}
        rest = [r for r in pool if r.hash not in used]
        band = [r for r in rest if abs(r.latency_ms - target) <= half]
        taken.append(_borda_best(band) if band else min(rest, key=lambda r: (abs(r.latency_ms - target), r.proxy)))
    return sorted(taken, key=lambda r: (r.latency_ms, r.proxy))


def reference_records(records: Iterable[TrialRecord], hashes: list[str]) -> list[TrialRecord]:
    """The feasible scored records of `hashes` (the layer-dropped references), in the order given.

    A reference outside the budgets, or not scored (the search ran without its seed
    architectures), is left out: only what the user may be handed goes to finalize.
    """
    by_hash: dict[str, TrialRecord] = {}
    for r in records:
        if r.feasible and r.proxy is not None and r.latency_ms is not None:
            by_hash.setdefault(r.hash, r)
    return [by_hash[h] for h in dict.fromkeys(hashes) if h in by_hash]


def one_cut_per_depth(references: list[TrialRecord], depth: Callable[[TrialRecord], int | None]) -> list[TrialRecord]:
    """`references` with one plain cut per layer count: the one with the best shared-weight score.

    Two cuts that keep as many teacher layers (a 6-layer teacher's first 3 and every other layer)
    cost the same, so both on the front is one point fine-tuned twice: a whole finalist's fine-tune,
    the stage that decides the job's time. The score the search ranks everything by picks which one
    is fine-tuned. The order of `references` is kept; a record whose depth is None stays.
    """
    best: dict[int, TrialRecord] = {}
    for r in references:
        d = depth(r)
        if d is not None and (d not in best or r.proxy < best[d].proxy):
            best[d] = r
    kept = {r.hash for r in best.values()}
    return [r for r in references if depth(r) is None or r.hash in kept]


# A tier whose cut is at least this many times slower than the cut below it leaves a wide range of
# budgets with nothing but the cheaper cut: on MiniLM-L6 the first two layers measure 1.96x the
# first one, and nothing on the stop-18 front lay between 7.0 and 13.5 ms, where a 3x budget falls.
# Such a tier also gets its best candidate that is not a layer swap of the cut, since its ordinary
# pick is usually one (stop 19's was; its second pick, an H192 3-layer model, kept 97.7% at 3.15x).
WIDE_TIER_RATIO = 1.6


def tier_picks(records: Iterable[TrialRecord], cut_latencies: list[float], k: int,
               exclude: set[str] = frozenset(), stand_ins: set[str] = frozenset(),
               anchors: set[str] = frozenset()) -> tuple[list[TrialRecord], int]:
    """One band pick per tier between consecutive plain cuts of the teacher, at most k, fastest first,
    and how many tiers their cut answered (see `stand_ins`).

    A tier is (latency of the cut with one layer fewer, latency of this cut]: its pick is a model
    at most as slow as the cut, which is what a user holding that cut would swap it for. A teacher
    with L layers gives L-2 such tiers; with more than k, k of them evenly spaced are kept. Each
    tier's pick is its best candidate by combined rank (`_borda_best`); an empty tier gives none,
    since the cut itself is a finalist there. A wide tier (WIDE_TIER_RATIO) gives its best
    teacher-shaped anchor instead, or without one a second pick, its best candidate that is not a
    stand-in (see below). Below the cheapest cut, the best candidate that is not a stand-in is one
    more pick: nothing plain is faster than that cut, where the job's 1-layer cut scored below the
    same cut from the teacher's weights in stops 19 and 20 and TF-IDF beats both. So up to
    k + (wide tiers) + 1 in all.

    `stand_ins` names candidates a cut already stands for: the teacher keeping other layers at the
    same count (`SearchSpace.teacher_layers_of`), which cost what the cut costs. A tier whose best
    candidate is one gives no pick either: in stop 19 all four such swaps fine-tuned within 0.7
    point of their cut, either way (bench/results/quality.json), and each cost a finalist's whole
    fine-tune, the stage that decides the job's time.

    `anchors` names the teacher-shaped candidates (`SearchSpace.anchors`: the teacher's own MHA/FFN
    pattern at a narrower H, every slot or every other one; `width_scaled_anchors`: the same with heads
    and FFN scaled to H, which at MiniLM-L6's 2-layer tier fine-tuned 1 point above the 12-head H192 anchor
    in stop 33, bench/results/tier_alternatives_k2.json). A wide tier whose band holds one gives
    its best anchor as its only pick: the shared-weight score ranks anchors below conv/FFN hybrids
    that fine-tune worse. In the stop-28 quality run the (3.7, 7.3 ms] tier's ordinary pick, an H192
    conv/FFN hybrid (shared KL 0.284), fine-tuned to dev 0.809 / test 0.795, and a rank-128 near-copy
    of it (KL 0.282, 10 of 12 slots the same) to 0.792 / 0.777; the tier's H192 half-depth anchor
    (KL 0.331), fine-tuned the same way, reached 0.810 / 0.804, as the same anchor did in stops 19-21
    (test 0.803-0.807). In stop 31's quality job the tier's hybrid pick reached 0.803 / 0.799 and its
    anchor 0.805 / 0.808. Until stop 32 the tier took both, the hybrid as its ordinary pick and the
    anchor as a second: one fine-tune more (about 190 core-seconds, some 95 s of the quick job on
    2 cores) for a model the anchor beat each time. A wide tier without an anchor still gets a
    second pick, its best other candidate that is not a stand-in.
    """
    cuts = sorted(cut_latencies)
    tiers = list(zip(cuts, cuts[1:], strict=False))
    if k <= 0 or not cuts:
        return [], 0
    if len(tiers) > k:
        tiers = [tiers[round(i * (len(tiers) - 1) / max(1, k - 1))] for i in range(k)] if k > 1 else [tiers[-1]]
    pool = candidate_pool(records, exclude)
    bottom = [r for r in pool if r.latency_ms <= cuts[0] and r.hash not in stand_ins]
    taken: list[TrialRecord] = [_borda_best(bottom)] if bottom else []
    answered = 0
    for lo, hi in tiers:
        band = [r for r in pool if lo < r.latency_ms <= hi]
        wide = lo > 0 and hi / lo >= WIDE_TIER_RATIO
        shaped = [r for r in band if r.hash in anchors and r.hash not in stand_ins]
        if wide and shaped:  # the anchor alone (see above)
            taken.append(_borda_best(shaped))
            continue
        if band:
            best = _borda_best(band)
            if best.hash in stand_ins:
                answered += 1
            else:
                taken.append(best)
        if wide:
            used = {r.hash for r in taken}
            other = [r for r in band if r.hash not in used and r.hash not in stand_ins]
            if other:
                taken.append(_borda_best(other))
    return sorted(taken, key=lambda r: (r.latency_ms, r.proxy)), answered
