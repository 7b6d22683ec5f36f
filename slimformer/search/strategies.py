"""Multi-objective architecture search with Optuna ask/tell: NSGA-II, TPE, random, or CTNAS.

Each trial proposes an architecture (`hidden` plus one op per slot), whose costs are computed
first (no supernet). An infeasible trial never reaches the proxy:

* NSGA-II and TPE: it is told COMPLETE with its real costs, the placeholder proxy
  `INFEASIBLE_PROXY` and its relative budget violations as constraints (`Trial.set_constraint`,
  Optuna 5's replacement for `constraints_func`). Both samplers rank infeasible trials by total
  violation only - NSGA-II by constrained domination, TPE by splitting them off before its
  density estimate - so the placeholder never steers sampling, while the violations pull the
  search toward the feasible region. Marking such trials FAIL or PRUNED instead would hide them
  from both samplers: under a tight budget the population would be rebuilt from the few
  feasible trials only and sampling would stay blind to where the boundary lies.
* random: RandomSampler ignores history, so the trial is just marked PRUNED (skipped; it still
  counts as a trial) and dashboards show no placeholder values.

Storage: with `storage_url` the study lives in an RDB (SQLite in tests, PostgreSQL in service)
and a second call with the same study name resumes it: RUNNING trials left by a crash are marked
FAIL, finished trials are kept and only the remainder is asked for.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from slimformer.search.budgets import Budgets, check_budgets, largest_achievable
from slimformer.search.candidates import Scorer
from slimformer.search.ctnas import CTNASSettings, run_ctnas
from slimformer.search.study import (
    INFEASIBLE_PROXY,
    OBJECTIVES,
    RECORD_KEY,
    SearchResult,
    TrialRecord,
    arch_from_params,
    build_result,
    check_objectives,
    distributions,
    known_scores,
    open_study,
    params_of,
    record_attrs,
    record_of,
)
from slimformer.search_space import Arch, SearchSpace
from slimformer.search_space.latency import LatencySetting, LatencyTable

STRATEGIES = ("nsga2", "tpe", "random", "ctnas")


def resume_seed(seed: int, finished: int) -> int:
    """The sampler seed for asking the next trial of a study that already has `finished` trials.

    The sampler is seeded afresh for every trial (`run_search`), so a trial's draws depend only on
    the study's stored history and its index: a search resumed after a crash asks what the
    uninterrupted one asked (a sampler's random state is not stored with the study). And no
    index replays another's draws - NSGA-II's first generation and TPE's start-up trials are plain
    random samples, so replaying them would propose the finished trials' architectures again.
    """
    return seed if finished == 0 else (seed * 1_000_003 + finished * 7_919) % (2**31 - 1)


def _sampler_factory(strategy: str, seed: int) -> Callable[[int, dict[str, Any]], optuna.samplers.BaseSampler]:
    def make(finished: int, meta: dict[str, Any]) -> optuna.samplers.BaseSampler:
        s = resume_seed(seed, finished)
        if strategy == "nsga2":
            return optuna.samplers.NSGAIISampler(population_size=int(meta["population_size"]), seed=s)
        if strategy == "tpe":
            return optuna.samplers.TPESampler(n_startup_trials=int(meta["n_startup_trials"]), seed=s)
        return optuna.samplers.RandomSampler(seed=s)

    return make


def default_population_size(trials: int) -> int:
    """NSGA-II population: about a quarter of the trials (>= 4 generations), between 4 and 50."""
    return max(4, min(50, trials // 4))


def _values(proxy: float, costs: dict[str, float], objectives: Sequence[str]) -> list[float]:
    return [proxy if o == "proxy" else costs[OBJECTIVES[o]] for o in objectives]


def _run_trial(
    study: optuna.Study,
    scorer: Scorer,
    space: SearchSpace,
    strategy: str,
    objectives: Sequence[str],
    dists: dict[str, Any],
) -> FrozenTrial:
    trial = study.ask(dists)
    try:
        arch = arch_from_params(space, trial.params)
        cand = scorer.candidate(arch)
        for axis, value in cand.violations.items():
            trial.set_constraint(axis, value)
        if not cand.feasible:
            trial.set_user_attr(RECORD_KEY, record_attrs(arch, cand.costs, cand.params, False, cand.violations, None))
            if strategy == "random":
                return study.tell(trial, state=TrialState.PRUNED)
            return study.tell(trial, _values(INFEASIBLE_PROXY, cand.costs, objectives))
        proxy = scorer.proxy(arch)
        trial.set_user_attr(RECORD_KEY, record_attrs(arch, cand.costs, cand.params, True, cand.violations, proxy))
        return study.tell(trial, _values(proxy, cand.costs, objectives))
    except BaseException:
        study.tell(trial, state=TrialState.FAIL)  # never leave it RUNNING; a resume re-asks it
        raise


def run_search(
    space: SearchSpace,
    evaluate: Callable[[Arch], float],
    budgets: Any,
    latency_table: LatencyTable,
    setting: LatencySetting | None = None,
    strategy: str = "nsga2",
    trials: int = 100,
    seed: int = 0,
    storage_url: str | None = None,
    study_name: str = "slimformer-search",
    objectives: Sequence[str] = ("proxy", "latency"),
    on_trial: Callable[[TrialRecord], None] | None = None,
    *,
    population_size: int | None = None,
    ctnas: CTNASSettings | None = None,
    reference: Sequence[float] | None = None,
    dtype: str = "float32",
    seed_archs: Sequence[Arch] = (),
) -> SearchResult:
    """Search `space` for architectures minimising the proxy and cost objectives within budgets.

    Args:
        space: the search space.
        evaluate: arch -> proxy score, lower is better (a `ProxyEvaluator`, or any function).
        budgets: `Budgets`, a mapping, an object with latency_ms / memory_mb / params_m, or None.
        latency_table: predicts latency (and must cover the space).
        setting: input shape for memory (default: the table's setting).
        strategy: "nsga2", "tpe", "random" or "ctnas".
        trials: total trials of the study; for "ctnas", the number of proxy-scored candidates.
            A resumed study runs only the trials still missing.
        seed: seeds the sampler (and CTNAS' pools and comparator): same seed, same trials.
        storage_url: SQLAlchemy URL of the study storage; None keeps it in memory.
        study_name: the study to create or resume.
        objectives: ("proxy", "latency"), optionally with "memory".
        on_trial: called with each finished trial's record (progress, cancellation by raising); a
            resumed study reports the trials it finished before once more first, so a receiver upserts.
        population_size: NSGA-II population (default `default_population_size(trials)`, fixed at
            study creation).
        ctnas: CTNAS settings (strategy "ctnas" only).
        reference: hypervolume reference point, one value per objective (default: see
            `study.default_reference`).
        dtype: weight dtype for memory.
        seed_archs: architectures tried first (e.g. `space.anchors()`), in order, by a fresh study;
            each counts as one of `trials`, and an infeasible one is treated like any infeasible
            trial. NSGA-II takes them into its first generation, CTNAS into its initial batch.

    Returns:
        A SearchResult with every trial of the study, the feasible Pareto front and its hypervolume.

    Raises:
        InfeasibleBudgetError: at once, before any trial, if a budget is below the smallest
            achievable value of the space.
        ValueError: for an unknown strategy or objective, a non-positive trial count, or a stored
            study of the same name with other settings.
        Exception: whatever `evaluate` raises (its trial is recorded FAIL first, so a resume asks
            again) or `on_trial` raises (its trial is already recorded).
    """
    started = time.perf_counter()
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy: {strategy!r} not in {list(STRATEGIES)}")
    if not isinstance(trials, int) or isinstance(trials, bool) or trials < 1:
        raise ValueError(f"trials: expected a positive integer, got {trials!r}")
    objectives = check_objectives(objectives)
    budgets = Budgets.of(budgets)
    setting = setting if setting is not None else latency_table.setting
    check_budgets(space, budgets, latency_table, setting, dtype)

    meta = {
        "strategy": strategy, "objectives": list(objectives), "space": space.to_dict(),
        "budgets": budgets.active(), "setting": setting.to_dict(), "dtype": dtype,
    }
    defaults = {
        "population_size": population_size or default_population_size(trials),
        "n_startup_trials": max(4, min(10, trials // 5)),
    }
    make_sampler = _sampler_factory(strategy, seed)
    stored: dict[str, Any] = {}

    def make_and_keep(finished: int, merged: dict[str, Any]) -> optuna.samplers.BaseSampler:
        stored.update(merged)  # the study's settings as stored (a resumed study keeps its first ones)
        return make_sampler(finished, merged)

    study, finished = open_study(storage_url, study_name, len(objectives), make_and_keep, meta, defaults)
    if finished and on_trial is not None:
        # A resumed study: a crash between a trial's `tell` and its `on_trial` lost that report, and the
        # trial is never asked again. Report every finished trial once more; receivers upsert by arch.
        for trial in sorted(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)),
                            key=lambda t: t.number):
            on_trial(record_of(trial, space))
    scorer = Scorer(space, evaluate, budgets, latency_table, setting, dtype, known_scores(study))
    seed_archs = [space.validate(a) for a in seed_archs][:trials]

    if strategy == "ctnas":
        run_ctnas(study, scorer, space, trials, seed, objectives, on_trial, ctnas or CTNASSettings(), seed_archs)
    else:
        if finished == 0 and not study.get_trials(deepcopy=False):
            for arch in seed_archs:  # a resumed study already holds them (asked, or still WAITING)
                study.enqueue_trial(params_of(arch, space), skip_if_exists=True)
        dists = distributions(space)
        for done in range(finished, trials):
            study.sampler = make_sampler(done, stored)  # a fresh, seeded sampler per trial: see resume_seed
            frozen = _run_trial(study, scorer, space, strategy, objectives, dists)
            if on_trial is not None:
                on_trial(record_of(frozen, space))

    bounds = largest_achievable(space, latency_table, setting, dtype)
    cost_bounds = {axis: min(bounds[axis], limit) for axis, limit in budgets.active().items()}
    cost_bounds = {**bounds, **cost_bounds}
    return build_result(
        study, space, strategy, objectives, cost_bounds, scorer.evaluations, time.perf_counter() - started,
        reference,
    )
