"""Optuna plumbing shared by every strategy: search parameters, storage and resume, trial records.

A study stores, per trial, the architecture's params (`hidden`, `b{i}s{j}`) and user attributes
with its costs, feasibility and proxy, so the result of a search - interrupted or not - is rebuilt
from the study alone.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import optuna
from optuna.distributions import CategoricalDistribution
from optuna.trial import FrozenTrial, TrialState

from slimformer.search.pareto import hypervolume, pareto_front
from slimformer.search_space import Arch, Op, SearchSpace

OBJECTIVES = {"proxy": "proxy", "latency": "latency_ms", "memory": "memory_mb"}
META_KEY = "slimformer"
# A trial's record is one user attribute holding a dict: with RDB storage every attribute is its own
# write (measured ~40 ms each on the loaded test machine), so eight separate attributes cost more
# than the rest of a trial's bookkeeping.
RECORD_KEY = "record"
# The proxy told to Optuna for an infeasible trial, whose proxy is never computed. Both NSGA-II
# (constrained domination) and TPE (infeasible trials split off by violation) rank infeasible trials
# by their constraint values only, so this number never steers sampling; it only has to be finite
# (TPE's hypervolume code and the storage dislike inf) and worse than any real proxy.
INFEASIBLE_PROXY = 1e9


def check_objectives(objectives: Sequence[str]) -> tuple[str, ...]:
    """Validate an objectives list: "proxy" plus one or two of "latency", "memory", no repeats.

    Raises:
        ValueError: naming the problem.
    """
    objs = tuple(objectives)
    if len(set(objs)) != len(objs) or not set(objs) <= set(OBJECTIVES) or "proxy" not in objs or len(objs) < 2:
        raise ValueError(f"objectives: expected 'proxy' plus 'latency' and/or 'memory', got {list(objs)}")
    return objs


RANK = "embedding_rank"


def slot_name(block: int, slot: int) -> str:
    return f"b{block}s{slot}"


def distributions(space: SearchSpace) -> dict[str, CategoricalDistribution]:
    """The search parameters: `hidden` over the hidden sizes, one op-string choice per slot, and (in spaces
    with ranks) `embedding_rank` over 0 (the plain table) and the ranks."""
    ops = tuple(str(op) for op in space.slot_ops())
    dists: dict[str, CategoricalDistribution] = {"hidden": CategoricalDistribution(tuple(space.hidden_sizes))}
    if space.embedding_ranks:
        dists[RANK] = CategoricalDistribution((0, *space.embedding_ranks))
    for b in range(space.num_blocks):
        for s in range(space.slots_per_block):
            dists[slot_name(b, s)] = CategoricalDistribution(ops)
    return dists


def arch_from_params(space: SearchSpace, params: dict[str, Any]) -> Arch:
    """The architecture a trial's params describe (validated against the space).

    The rank is drawn independently of H, so one the drawn H cannot take becomes the largest it can
    (`SearchSpace.fit_rank`): several params then name one arch, which the search sees as a repeat.
    """
    blocks = tuple(
        tuple(Op.parse(params[slot_name(b, s)]) for s in range(space.slots_per_block)) for b in range(space.num_blocks)
    )
    hidden = int(params["hidden"])
    rank = space.fit_rank(int(params.get(RANK) or 0) or None, hidden)
    return space.validate(Arch(hidden, blocks, rank))


def params_of(arch: Arch, space: SearchSpace | None = None) -> dict[str, Any]:
    """Inverse of `arch_from_params`; with `space`, exactly the keys of `distributions(space)`."""
    params: dict[str, Any] = {"hidden": arch.hidden}
    if arch.embedding_rank is not None or (space is not None and space.embedding_ranks):
        params[RANK] = arch.embedding_rank or 0
    for b, block in enumerate(arch.blocks):
        for s, op in enumerate(block):
            params[slot_name(b, s)] = str(op)
    return params


@dataclass
class TrialRecord:
    """One trial of a search, as the service stores and shows it.

    Attributes:
        proxy: the proxy score, None when not evaluated (infeasible or failed trials).
        violations: relative budget violations ((cost - limit) / limit; positive = over).
        state: Optuna trial state name ("COMPLETE", "PRUNED", "FAIL", "RUNNING", "WAITING").
    """

    number: int
    arch: dict[str, Any]
    hash: str
    proxy: float | None
    latency_ms: float | None
    memory_mb: float | None
    params: int | None
    feasible: bool
    state: str
    violations: dict[str, float] = field(default_factory=dict)

    def objective_values(self, objectives: Sequence[str]) -> tuple[float, ...]:
        return tuple(float(getattr(self, OBJECTIVES[o])) for o in objectives)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class SearchResult:
    """What a search returns.

    Attributes:
        trials: every trial of the study (including those of earlier, interrupted runs).
        pareto: the Pareto-optimal feasible evaluated trials on `objectives`, one per architecture.
        hypervolume: of `pareto` w.r.t. `reference`.
        reference: the hypervolume reference point (one value per objective).
        evaluations: proxy evaluations made by this call (re-proposed architectures reuse scores).
        seconds: wall time of this call.
    """

    study_name: str
    strategy: str
    objectives: tuple[str, ...]
    trials: list[TrialRecord]
    pareto: list[TrialRecord]
    hypervolume: float
    reference: tuple[float, ...]
    evaluations: int
    seconds: float

    @property
    def feasible(self) -> list[TrialRecord]:
        return [t for t in self.trials if t.feasible and t.proxy is not None]

    def to_dict(self) -> dict[str, Any]:
        return {
            "study_name": self.study_name, "strategy": self.strategy, "objectives": list(self.objectives),
            "trials": [t.to_dict() for t in self.trials], "pareto": [t.number for t in self.pareto],
            "hypervolume": self.hypervolume, "reference": list(self.reference), "evaluations": self.evaluations,
            "seconds": self.seconds,
        }


def record_attrs(
    arch: Arch, costs: dict[str, float], params: int, feasible: bool, rel_violations: dict[str, float],
    proxy: float | None,
) -> dict[str, Any]:
    """The record stored on a trial as its `RECORD_KEY` user attribute (JSON-safe)."""
    return {
        "arch": arch.to_dict(), "hash": arch.hash, "latency_ms": costs["latency_ms"], "memory_mb": costs["memory_mb"],
        "params": params, "feasible": feasible, "violations": rel_violations, "proxy": proxy,
    }


def stored_record(trial: FrozenTrial) -> dict[str, Any]:
    """The record a strategy stored on `trial` (empty for a trial that died before storing it)."""
    record = trial.user_attrs.get(RECORD_KEY)
    return record if isinstance(record, dict) else {}


def record_of(trial: FrozenTrial, space: SearchSpace) -> TrialRecord:
    """A TrialRecord from a stored trial (attributes missing for trials that died early are None)."""
    attrs = stored_record(trial)
    arch_doc = attrs.get("arch")
    if arch_doc is None and all(k in trial.params for k in distributions(space)):
        arch_doc = arch_from_params(space, trial.params).to_dict()
    arch = Arch.from_dict(arch_doc) if arch_doc is not None else None
    return TrialRecord(
        number=trial.number, arch=arch_doc or {}, hash=attrs.get("hash") or (arch.hash if arch else ""),
        proxy=attrs.get("proxy") if trial.state == TrialState.COMPLETE else None,
        latency_ms=attrs.get("latency_ms"), memory_mb=attrs.get("memory_mb"), params=attrs.get("params"),
        feasible=bool(attrs.get("feasible", False)), state=trial.state.name,
        violations=dict(attrs.get("violations", {})),
    )


def _meta_json(meta: dict[str, Any]) -> str:
    return json.dumps(meta, sort_keys=True)


def open_study(
    storage_url: str | None,
    study_name: str,
    n_objectives: int,
    make_sampler: Callable[[int, dict[str, Any]], optuna.samplers.BaseSampler],
    meta: dict[str, Any],
    defaults: dict[str, Any] | None = None,
) -> tuple[optuna.Study, int]:
    """Create a study, or load it to resume an interrupted search.

    Resuming: trials left RUNNING by a crash go back to the queue (WAITING) with whatever
    parameters they were given, so the next `ask` runs each again under its own number, as the
    uninterrupted run did (marked FAIL instead, a crashed seed architecture was lost and every
    later trial asked one step off); finished trials (COMPLETE and PRUNED) are kept and counted,
    so the caller only asks for the remainder.

    Args:
        storage_url: SQLAlchemy URL for `RDBStorage` (e.g. "sqlite:///search.db"); None keeps the
            study in memory.
        make_sampler: (number of finished trials, stored meta) -> sampler. The count lets a resumed
            study seed its sampler differently so it does not replay the draws of the first run.
        meta: what must match for a resume to be valid (strategy, objectives, space, budgets...).
        defaults: settings stored with a new study that a resumed one keeps from its first run
            (e.g. the NSGA-II population size, which must not change mid-study).

    Returns:
        (study, number of finished trials).

    Raises:
        ValueError: if a stored study of that name was created with other settings.
    """
    storage: optuna.storages.BaseStorage = (
        optuna.storages.RDBStorage(storage_url) if storage_url else optuna.storages.InMemoryStorage()
    )
    stored_meta: dict[str, Any] | None = None
    finished = 0
    try:
        study_id = storage.get_study_id_from_name(study_name)
    except KeyError:
        study_id = None
    if study_id is not None:
        stored = storage.get_study_user_attrs(study_id).get(META_KEY)
        stored_meta = json.loads(stored) if isinstance(stored, str) else None
        if stored_meta is not None:
            diff = [k for k in meta if stored_meta.get(k) != meta[k]]
            if diff:
                raise ValueError(
                    f"study {study_name!r} exists with other settings (differs in {', '.join(diff)}); "
                    "use another study name"
                )
        done_states = (TrialState.COMPLETE, TrialState.PRUNED)
        finished = sum(t.state in done_states for t in storage.get_all_trials(study_id, deepcopy=False))
    merged = {**meta, **(defaults or {}), **(stored_meta or {})}
    # Optuna logs every study and trial at INFO; slimformer reports progress its own way.
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        storage=storage, study_name=study_name, load_if_exists=True,
        directions=["minimize"] * n_objectives, sampler=make_sampler(finished, merged),
    )
    if len(study.directions) != n_objectives:
        raise ValueError(f"study {study_name!r} has {len(study.directions)} objectives, expected {n_objectives}")
    if stored_meta is None:
        study.set_user_attr(META_KEY, _meta_json(merged))
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        storage.set_trial_state_values(trial._trial_id, state=TrialState.WAITING)
    return study, finished


def known_scores(study: optuna.Study) -> dict[str, float]:
    """Proxy scores already computed in this study, by architecture hash (for deduplication)."""
    out: dict[str, float] = {}
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        record = stored_record(t)
        proxy, digest = record.get("proxy"), record.get("hash")
        if proxy is not None and digest:
            out.setdefault(digest, float(proxy))
    return out


def default_reference(
    evaluated: Sequence[TrialRecord], objectives: Sequence[str], cost_bounds: dict[str, float]
) -> tuple[float, ...]:
    """A hypervolume reference point: cost axes at their bound, proxy just past the worst seen.

    The cost bounds (budget if set, else the space's largest cost) do not depend on the run; the
    proxy has no a-priori bound, so it is 10% of the observed range past the worst evaluated proxy.
    Pass an explicit reference to compare runs with each other.
    """
    ref = []
    for o in objectives:
        if o == "proxy":
            values = [t.proxy for t in evaluated if t.proxy is not None]
            hi, lo = (max(values), min(values)) if values else (1.0, 1.0)
            ref.append(hi + 0.1 * max(hi - lo, abs(hi), 1e-9))
        else:
            ref.append(float(cost_bounds[OBJECTIVES[o]]))
    return tuple(ref)


def build_result(
    study: optuna.Study,
    space: SearchSpace,
    strategy: str,
    objectives: Sequence[str],
    cost_bounds: dict[str, float],
    evaluations: int,
    seconds: float,
    reference: Sequence[float] | None = None,
) -> SearchResult:
    """Rebuild every trial's record from the study, then the feasible Pareto front and its hypervolume."""
    records = [record_of(t, space) for t in study.get_trials(deepcopy=False)]
    records.sort(key=lambda r: r.number)
    unique: dict[str, TrialRecord] = {}
    for r in records:  # one entry per architecture: the first trial that scored it
        if r.state == "COMPLETE" and r.feasible and r.proxy is not None and math.isfinite(r.proxy):
            unique.setdefault(r.hash, r)
    evaluated = list(unique.values())
    points = [r.objective_values(objectives) for r in evaluated]
    front = [evaluated[i] for i in pareto_front(points)]
    ref = tuple(float(v) for v in reference) if reference is not None else default_reference(
        evaluated, objectives, cost_bounds)
    if len(ref) != len(objectives):
        raise ValueError(f"reference: expected {len(objectives)} values, got {len(ref)}")
    hv = hypervolume([r.objective_values(objectives) for r in front], ref) if front else 0.0
    front.sort(key=lambda r: r.objective_values(objectives))
    return SearchResult(
        study_name=study.study_name, strategy=strategy, objectives=tuple(objectives), trials=records, pareto=front,
        hypervolume=hv, reference=ref, evaluations=evaluations, seconds=seconds,
    )
