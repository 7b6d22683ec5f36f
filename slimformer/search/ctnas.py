"""The "ctnas" strategy: a comparator ranks large pools of feasible candidates, the proxy scores only the best.

Loop (Chen et al., CTNAS, adapted to a budgeted multi-objective search):

1. Warm-up: `n_init` random feasible candidates are scored by the proxy.
2. Each round: sample a pool of feasible, not yet scored candidates (half uniformly at random,
   half mutations of the best scored ones); fit the comparator on all scored candidates; rank
   the pool by P(candidate beats the baseline); score the top `per_round` with the proxy. The
   baseline is the best candidate scored so far, so it hardens as the search improves
   (CTNAS' curriculum).
3. Stop when `trials` candidates have been scored.

The comparator compares proxy quality only; the cost trade-off comes from picking the top
candidates per cost stratum (pool split into `strata` bands of the first cost objective), so
each round adds good candidates across the latency range instead of only the largest feasible
ones. Sampling is bounded (at most `attempts_factor` draws per wanted candidate, then mutation
of known feasible ones); when nothing feasible and new turns up the search stops early rather
than loop. Every scored candidate is added to the Optuna study as a COMPLETE trial with fixed
params, so storage, resume and dashboards work as for the other strategies.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import optuna
from optuna.trial import TrialState, create_trial

from slimformer.search.budgets import AXES, cheapest_arch
from slimformer.search.candidates import Candidate, Scorer
from slimformer.search.comparator import Comparator
from slimformer.search.study import (
    OBJECTIVES,
    RECORD_KEY,
    TrialRecord,
    arch_from_params,
    distributions,
    params_of,
    record_attrs,
    stored_record,
)
from slimformer.search_space import Arch, SearchSpace


@dataclass
class CTNASSettings:
    """Knobs of the CTNAS loop.

    Attributes:
        n_init: random feasible candidates scored before the comparator is used
            (default: a quarter of the trials, at least 4).
        pool_size: candidates ranked by the comparator per round.
        per_round: candidates scored by the proxy per round (default: a tenth of the trials, 1..8).
        mutation_fraction: share of the pool made by mutating the best scored candidates.
        strata: cost bands the per-round picks are spread over (1: plain top-k).
        references: best scored candidates that, with the baseline, a candidate is compared to.
        fit_steps, lr, weight_decay, hidden: comparator training (see `Comparator.fit`).
        attempts_factor: sampling draws allowed per wanted candidate (bounds the search for
            feasible ones).
    """

    n_init: int | None = None
    pool_size: int = 200
    per_round: int | None = None
    mutation_fraction: float = 0.5
    strata: int = 3
    references: int = 4
    fit_steps: int = 300
    lr: float = 1e-2
    weight_decay: float = 1e-2
    hidden: int = 64
    attempts_factor: int = 20


def mutate(arch: Arch, space: SearchSpace, rng: random.Random) -> Arch:
    """A neighbour of `arch`: another hidden size (1 in 5), another embedding rank (1 in 8 of the rest,
    in spaces with ranks), else one or two slots changed. A rank the new H cannot take becomes the
    nearest one it can (the plain table when none)."""
    if len(space.hidden_sizes) > 1 and rng.random() < 0.2:
        h = rng.choice([h for h in space.hidden_sizes if h != arch.hidden])
        return Arch(h, arch.blocks, space.fit_rank(arch.embedding_rank, h))
    if space.embedding_ranks and rng.random() < 0.125:
        others = [r for r in space.ranks_at(arch.hidden) if r != arch.embedding_rank]
        if others:
            return arch.with_rank(rng.choice(others))
    blocks = [list(b) for b in arch.blocks]
    ops = space.slot_ops()
    for _ in range(rng.choice((1, 2))):
        b, s = rng.randrange(space.num_blocks), rng.randrange(space.slots_per_block)
        blocks[b][s] = rng.choice(ops)
    return Arch(arch.hidden, tuple(tuple(b) for b in blocks), arch.embedding_rank)


class _Pool:
    """Bounded sampling of feasible candidates not seen before."""

    def __init__(self, space: SearchSpace, scorer: Scorer, seen: set[str], attempts_factor: int):
        self.space, self.scorer, self.seen, self.attempts_factor = space, scorer, seen, attempts_factor

    def add(self, arch: Arch, out: dict[str, Candidate]) -> None:
        """Put `arch` in `out` if it is new and feasible."""
        if arch.hash in self.seen or arch.hash in out:
            return
        cand = self.scorer.candidate(arch)
        if cand.feasible:
            out[arch.hash] = cand

    def sample(self, n: int, rng: random.Random, out: dict[str, Candidate]) -> None:
        start = len(out)
        for _ in range(self.attempts_factor * n):
            if len(out) - start >= n:
                return
            self.add(self.space.sample(rng), out)

    def mutations(self, parents: Sequence[Arch], n: int, rng: random.Random, out: dict[str, Candidate]) -> None:
        if not parents:
            return
        start = len(out)
        for _ in range(self.attempts_factor * n):
            if len(out) - start >= n:
                return
            self.add(mutate(rng.choice(parents), self.space, rng), out)


def _stratified(
    ranked: Sequence[tuple[int, float]], pool: Sequence[Candidate], axis: str, strata: int, k: int
) -> list[Candidate]:
    """The top `k` by rank, spread round-robin over `strata` bands of `axis` (best band first)."""
    by_cost = sorted(range(len(pool)), key=lambda i: (pool[i].costs[axis], i))
    n = max(1, min(strata, len(pool)))
    band = {i: min(n - 1, pos * n // len(pool)) for pos, i in enumerate(by_cost)}
    queues: list[list[int]] = [[] for _ in range(n)]
    for i, _ in ranked:  # each band's queue keeps the comparator's order
        queues[band[i]].append(i)
    position = {i: pos for pos, (i, _) in enumerate(ranked)}
    queues = sorted((q for q in queues if q), key=lambda q: position[q[0]])
    picks: list[int] = []
    while len(picks) < k and any(queues):
        for q in queues:
            if q and len(picks) < k:
                picks.append(q.pop(0))
    return [pool[i] for i in picks]


def run_ctnas(
    study: optuna.Study,
    scorer: Scorer,
    space: SearchSpace,
    trials: int,
    seed: int,
    objectives: Sequence[str],
    on_trial: Callable[[TrialRecord], None] | None,
    settings: CTNASSettings,
    seed_archs: Sequence[Arch] = (),
) -> None:
    """Run the CTNAS loop until the study holds `trials` scored candidates (see module doc).

    Args:
        study: an open study (possibly resumed: its COMPLETE trials count as scored).
        scorer: costs candidates and evaluates the proxy (deduplicated, counted).
        trials: total proxy-scored candidates wanted in the study.
        seed: seeds pools and the comparator; a resumed study derives its stream from the count
            already scored, so it does not retrace the first run.
        on_trial: called with each new trial's record.
        seed_archs: put first into the initial batch (those that meet the budgets).
    """
    dists = distributions(space)
    stored = study.get_trials(deepcopy=False)
    complete = [t for t in stored if t.state == TrialState.COMPLETE]
    scored: list[tuple[Arch, float]] = []
    for t in complete:
        record = stored_record(t)
        proxy = record.get("proxy")
        if proxy is not None and record.get("feasible"):
            scored.append((arch_from_params(space, t.params), float(proxy)))
    seen = {stored_record(t).get("hash") for t in stored} - {None}
    next_number = len(stored)
    done = len(complete)
    n_init = min(trials, settings.n_init if settings.n_init is not None else max(4, trials // 4))
    per_round = settings.per_round if settings.per_round is not None else max(1, min(8, trials // 10))
    cost_axis = next(OBJECTIVES[o] for o in objectives if o != "proxy")
    rng = random.Random(f"ctnas-{seed}-{done}")
    pool = _Pool(space, scorer, seen, settings.attempts_factor)
    comparator = Comparator.for_space(space, hidden=settings.hidden, seed=seed)
    # Fallback parents when uniform sampling rarely meets the budgets: the cheapest architecture
    # of each axis (check_budgets guarantees each meets its own budget, maybe not the others).
    fallback = [cheapest_arch(space, axis, scorer.latency_table, scorer.setting, scorer.dtype) for axis in AXES]
    fallback = [a for a in fallback if scorer.candidate(a).feasible]

    while done < trials:
        need = trials - done
        found: dict[str, Candidate] = {}
        if len(scored) < n_init:
            want = min(n_init - len(scored), need)
            for arch in seed_archs:
                if len(found) >= want:
                    break
                pool.add(arch, found)  # skipped if already scored or over a budget
            pool.sample(want - len(found), rng, found)
            if len(found) < want:
                for arch in fallback:
                    pool.add(arch, found)
                pool.mutations([a for a, _ in scored] + fallback + [c.arch for c in found.values()],
                               want - len(found), rng, found)
            batch = list(found.values())[:want]
        else:
            elites = [a for a, _ in sorted(scored, key=lambda t: t[1])[: max(1, settings.references)]]
            n_mut = int(round(settings.pool_size * settings.mutation_fraction))
            pool.sample(settings.pool_size - n_mut, rng, found)
            pool.mutations(elites, settings.pool_size - len(found), rng, found)
            candidates = list(found.values())
            if not candidates:
                break
            comparator.fit(scored, steps=settings.fit_steps, lr=settings.lr, weight_decay=settings.weight_decay)
            ranked = comparator.rank([c.arch for c in candidates], elites[0], elites[1:])
            batch = _stratified(ranked, candidates, cost_axis, settings.strata, min(per_round, need))
        if not batch:
            break  # nothing feasible and new within the bounded attempts: stop, never loop
        for cand in batch:
            proxy = scorer.proxy(cand.arch)
            attrs = record_attrs(cand.arch, cand.costs, cand.params, True, cand.violations, proxy)
            values = [proxy if o == "proxy" else cand.costs[OBJECTIVES[o]] for o in objectives]
            study.add_trial(create_trial(
                params=params_of(cand.arch, space), distributions=dists, values=values, user_attrs={RECORD_KEY: attrs},
                constraints=cand.violations or None, state=TrialState.COMPLETE,
            ))
            scored.append((cand.arch, proxy))
            seen.add(cand.arch.hash)
            done += 1
            if on_trial is not None:
                on_trial(TrialRecord(
                    number=next_number, arch=attrs["arch"], hash=cand.arch.hash, proxy=proxy,
                    latency_ms=cand.costs["latency_ms"], memory_mb=cand.costs["memory_mb"], params=cand.params,
                    feasible=True, state="COMPLETE", violations=dict(cand.violations),
                ))
            next_number += 1
