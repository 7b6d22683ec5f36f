"""Budgets (hard limits on latency, memory and parameters) and their exact extremes over a space.

Every cost of an architecture is cheap to compute without a supernet (latency from the lookup
table, parameters and memory from `search_space.cost`), so budgets are checked before any proxy
evaluation. `check_budgets` rejects a budget that no architecture in the space can meet at once:
the smallest achievable value of each axis is computed exactly, never by sampling.

Why it is exact and cheap: every slot may hold any op, independently of the others, and all slots
offer the same ops at a given hidden size H. Latency and parameters are a fixed part per H and
embedding rank r (embeddings, head, overhead) plus a sum over slots, so their minimum at (H, r)
puts the cheapest op in every slot. Memory is weights (a sum over slots) plus the peak activation (a max over slots):
given any architecture with peak P, putting in every slot the lightest op whose activations are
<= P lowers neither term's bound, so again a uniform architecture is optimal. Hence the minimum
over the space is the minimum over the |H| x |ranks| x |ops| uniform architectures, each costed by the very
functions the search uses (no second cost formula to drift out of sync).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from slimformer.errors import InfeasibleBudgetError
from slimformer.search_space.arch import Arch, Op
from slimformer.search_space.cost import (
    DTYPE_BYTES,
    count_params,
    embedding_params,
    estimate_memory,
    head_params,
    op_activation_elems,
    op_params,
)
from slimformer.search_space.latency import LatencySetting, LatencyTable
from slimformer.search_space.space import SearchSpace

AXES = ("latency_ms", "memory_mb", "params_m")
UNITS = {"latency_ms": "ms", "memory_mb": "MB", "params_m": "M"}
ACTIVATION_BYTES = 4  # estimate_memory counts activations in float32 whatever the weight dtype


@dataclass(frozen=True)
class Budgets:
    """Hard limits a returned architecture must meet. None: no limit on that axis.

    Attributes:
        latency_ms: predicted latency (the latency table's setting) in milliseconds.
        memory_mb: weights plus peak activations in MiB (`estimate_memory(...).total_mb`).
        params_m: parameters in millions.
    """

    latency_ms: float | None = None
    memory_mb: float | None = None
    params_m: float | None = None

    def __post_init__(self) -> None:
        for name in AXES:
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int | float) or not math.isfinite(value) or value <= 0):
                raise ValueError(f"{name}: a budget must be a positive finite number or None, got {value!r}")

    @classmethod
    def of(cls, obj: Any) -> Budgets:
        """Budgets from None, a mapping, or any object with the three attributes (e.g. the job spec's).

        Raises:
            ValueError: for an unknown key or a non-positive limit.
        """
        if obj is None:
            return cls()
        if isinstance(obj, cls):
            return obj
        if isinstance(obj, dict):
            unknown = set(obj) - set(AXES)
            if unknown:
                raise ValueError(f"budgets: unknown key(s) {sorted(unknown)}; expected {list(AXES)}")
            return cls(**{k: (None if v is None else float(v)) for k, v in obj.items()})
        return cls(**{k: (None if getattr(obj, k, None) is None else float(getattr(obj, k))) for k in AXES})

    def active(self) -> dict[str, float]:
        """The axes with a limit, e.g. {"latency_ms": 2.0}."""
        return {k: float(getattr(self, k)) for k in AXES if getattr(self, k) is not None}


def _setting(latency_table: LatencyTable, setting: LatencySetting | None) -> LatencySetting:
    return setting if setting is not None else latency_table.setting


def arch_costs(
    arch: Arch,
    space: SearchSpace,
    latency_table: LatencyTable,
    setting: LatencySetting | None = None,
    dtype: str = "float32",
) -> dict[str, float]:
    """The three budgeted costs of one architecture.

    Args:
        setting: input shape for memory (batch, seq_len); defaults to the table's own setting.
        dtype: weight dtype for memory.

    Returns:
        {"latency_ms": ..., "memory_mb": ..., "params_m": ...}.

    Raises:
        LatencyTableError: if the table lacks an entry the architecture needs.
    """
    s = _setting(latency_table, setting)
    return {
        "latency_ms": latency_table.predict(arch),
        "memory_mb": estimate_memory(arch, space, s.batch, s.seq_len, dtype).total_mb,
        "params_m": count_params(arch, space) / 1e6,
    }


def _uniform(space: SearchSpace, hidden: int, op: Op, rank: int | None = None) -> Arch:
    block = tuple(op for _ in range(space.slots_per_block))
    return Arch(hidden, tuple(block for _ in range(space.num_blocks)), rank)


def _uniforms(space: SearchSpace) -> list[Arch]:
    """Every uniform architecture: each (H, embedding rank, op), in that order (ties go to the first)."""
    return [_uniform(space, h, op, r) for h in space.hidden_sizes for r in space.ranks_at(h) for op in space.slot_ops()]


def cheapest_arch(
    space: SearchSpace,
    axis: str,
    latency_table: LatencyTable,
    setting: LatencySetting | None = None,
    dtype: str = "float32",
) -> Arch:
    """An architecture with the smallest achievable value of `axis` (one of AXES); see the module doc.

    Returns:
        The uniform architecture (one op in every slot) with the lowest cost on `axis`; ties go
        to the smaller hidden size, then to the plain embeddings, then to the earlier op of `space.slot_ops()`.

    Raises:
        ValueError: for an unknown axis.
        LatencyTableError: if the table does not cover the space.
    """
    if axis not in AXES:
        raise ValueError(f"axis: {axis!r} not in {list(AXES)}")
    best: tuple[float, Arch] | None = None
    for arch in _uniforms(space):
        value = arch_costs(arch, space, latency_table, setting, dtype)[axis]
        if best is None or value < best[0]:
            best = (value, arch)
    assert best is not None  # SearchSpace guarantees at least one hidden size and one op
    return best[1]


def smallest_achievable(
    space: SearchSpace,
    latency_table: LatencyTable,
    setting: LatencySetting | None = None,
    dtype: str = "float32",
) -> dict[str, float]:
    """The exact minimum of each budgeted cost over the whole space (each axis on its own).

    Args:
        setting: input shape for memory; defaults to the table's setting.

    Returns:
        {"latency_ms": ..., "memory_mb": ..., "params_m": ...}; each value is reached by
        `cheapest_arch(space, axis, ...)` (different axes may need different architectures).

    Raises:
        LatencyTableError: if the table does not cover the space.
    """
    costs = [arch_costs(arch, space, latency_table, setting, dtype) for arch in _uniforms(space)]
    return {axis: min(c[axis] for c in costs) for axis in AXES}


def largest_achievable(
    space: SearchSpace,
    latency_table: LatencyTable,
    setting: LatencySetting | None = None,
    dtype: str = "float32",
) -> dict[str, float]:
    """The exact maximum of each budgeted cost over the space (the default hypervolume reference).

    Latency and parameters: the uniform architecture of the costliest op. Memory: some slot's op p
    sets the peak, and every other slot can at most hold the heaviest op whose activations do not
    exceed p's, so the maximum is max over p of that total.

    Raises:
        LatencyTableError: if the table does not cover the space.
    """
    s = _setting(latency_table, setting)
    ops = space.slot_ops()
    n_slots = space.num_blocks * space.slots_per_block
    out = {axis: -math.inf for axis in AXES}
    for arch in _uniforms(space):
        costs = arch_costs(arch, space, latency_table, s, dtype)
        out["latency_ms"] = max(out["latency_ms"], costs["latency_ms"])
        out["params_m"] = max(out["params_m"], costs["params_m"])
    for h in space.hidden_sizes:
        floor = 2 * s.batch * s.seq_len * h
        acts = {op: max(floor, op_activation_elems(op, h, s.batch, s.seq_len, space)) for op in ops}
        fixed = max(embedding_params(h, space, r) for r in space.ranks_at(h)) + head_params(h, space)
        for p in ops:
            others = max(op_params(q, h, space) for q in ops if acts[q] <= acts[p])
            weights = fixed + op_params(p, h, space) + (n_slots - 1) * others
            total = weights * DTYPE_BYTES[dtype] + acts[p] * ACTIVATION_BYTES
            out["memory_mb"] = max(out["memory_mb"], total / 2**20)
    return out


def _fmt(value: float) -> str:
    return f"{value:.6g}"


def check_budgets(
    space: SearchSpace,
    budgets: Any,
    latency_table: LatencyTable,
    setting: LatencySetting | None = None,
    dtype: str = "float32",
) -> dict[str, float]:
    """Reject at once a budget below what the cheapest architecture of the space reaches.

    Each axis is checked on its own against its exact minimum (`smallest_achievable`). Budgets that
    are each achievable but not all by one architecture pass this check; the search then simply
    finds no feasible candidate (it never loops looking for one).

    Args:
        budgets: `Budgets`, a mapping, or any object with latency_ms / memory_mb / params_m.

    Returns:
        The smallest achievable values (useful to show next to the budgets).

    Raises:
        InfeasibleBudgetError: naming every violated budget and the smallest achievable value of
            every axis; `.smallest` holds those values.
    """
    limits = Budgets.of(budgets).active()
    smallest = smallest_achievable(space, latency_table, setting, dtype)
    bad = [axis for axis, limit in limits.items() if limit < smallest[axis]]
    if bad:
        parts = [
            f"{axis} budget {_fmt(limits[axis])} is below the smallest achievable {_fmt(smallest[axis])} {UNITS[axis]}"
            for axis in bad
        ]
        summary = ", ".join(f"{axis}={_fmt(smallest[axis])}" for axis in AXES)
        raise InfeasibleBudgetError("; ".join(parts) + f"; smallest achievable: {summary}", smallest=dict(smallest))
    return smallest


def violations(
    arch: Arch,
    space: SearchSpace,
    budgets: Any,
    latency_table: LatencyTable,
    setting: LatencySetting | None = None,
    dtype: str = "float32",
    costs: dict[str, float] | None = None,
) -> dict[str, float]:
    """Cost minus limit for every axis that has a budget (positive = over budget).

    Args:
        costs: precomputed `arch_costs` (avoids computing them twice).

    Returns:
        e.g. {"latency_ms": 0.4, "params_m": -1.2}; empty when there are no budgets.
    """
    limits = Budgets.of(budgets).active()
    if not limits:
        return {}
    costs = costs if costs is not None else arch_costs(arch, space, latency_table, setting, dtype)
    return {axis: costs[axis] - limit for axis, limit in limits.items()}


def relative_violations(budgets: Any, costs: dict[str, float]) -> dict[str, float]:
    """(cost - limit) / limit per budgeted axis: unit-free, so axes add up fairly in a penalty.

    NSGA-II and TPE rank infeasible trials by the sum of positive constraint values; in raw units a
    0.5 ms latency overshoot and a 0.5 M parameter overshoot would count the same.
    """
    return {axis: (costs[axis] - limit) / limit for axis, limit in Budgets.of(budgets).active().items()}


def is_feasible(
    arch: Arch,
    space: SearchSpace,
    budgets: Any,
    latency_table: LatencyTable,
    setting: LatencySetting | None = None,
    dtype: str = "float32",
    costs: dict[str, float] | None = None,
) -> bool:
    """True when `arch` meets every budget (a cost equal to its limit is feasible)."""
    return all(v <= 0 for v in violations(arch, space, budgets, latency_table, setting, dtype, costs).values())
