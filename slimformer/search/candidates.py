"""Costing and scoring candidates: cheap costs and budget checks first, the proxy only when feasible.

Shared by the Optuna-sampler strategies and CTNAS, so every strategy counts evaluations and
deduplicates architectures the same way.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from slimformer.search.budgets import Budgets, arch_costs, relative_violations
from slimformer.search_space import Arch, SearchSpace, count_params
from slimformer.search_space.latency import LatencySetting, LatencyTable


@dataclass(frozen=True)
class Candidate:
    """An architecture with its costs and budget standing (no proxy: that is the expensive part).

    Attributes:
        costs: {"latency_ms", "memory_mb", "params_m"}.
        violations: relative budget violations per budgeted axis ((cost - limit) / limit).
    """

    arch: Arch
    costs: dict[str, float]
    params: int
    violations: dict[str, float]

    @property
    def feasible(self) -> bool:
        return all(v <= 0 for v in self.violations.values())


class Scorer:
    """Costs candidates and evaluates the proxy once per distinct architecture.

    Args:
        evaluate: arch -> proxy score (lower is better), e.g. a `ProxyEvaluator`.
        known: proxy scores already computed (by architecture hash), e.g. from a resumed study.

    Attributes:
        evaluations: calls made to `evaluate` (architectures seen before are not re-evaluated).
    """

    def __init__(
        self,
        space: SearchSpace,
        evaluate: Callable[[Arch], float],
        budgets: Budgets,
        latency_table: LatencyTable,
        setting: LatencySetting,
        dtype: str = "float32",
        known: dict[str, float] | None = None,
    ):
        self.space = space
        self.evaluate = evaluate
        self.budgets = budgets
        self.latency_table = latency_table
        self.setting = setting
        self.dtype = dtype
        self.known: dict[str, float] = dict(known or {})
        self.evaluations = 0

    def candidate(self, arch: Arch) -> Candidate:
        """Costs and budget violations of `arch` (no supernet involved)."""
        costs = arch_costs(arch, self.space, self.latency_table, self.setting, self.dtype)
        return Candidate(arch, costs, count_params(arch, self.space), relative_violations(self.budgets, costs))

    def proxy(self, arch: Arch) -> float:
        """The proxy score of `arch`, evaluated at most once per architecture.

        Raises:
            ValueError: if `evaluate` returns a non-finite number (a broken proxy must stop the
                search rather than be ranked).
        """
        digest = arch.hash
        if digest in self.known:
            return self.known[digest]
        value = float(self.evaluate(arch))
        self.evaluations += 1
        if not math.isfinite(value):
            raise ValueError(f"proxy of {arch.short()} is {value!r}; expected a finite number")
        self.known[digest] = value
        return value
