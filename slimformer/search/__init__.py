"""Architecture search: budgets, proxy scores, Pareto fronts, Optuna strategies and the CTNAS comparator.

Knows nothing of HTTP or Ray: the service and the workers call `run_search` with an `evaluate`
function (usually a `ProxyEvaluator`) and store the returned `SearchResult`.

Names are imported lazily (PEP 562) so that `slimformer.search.budgets` - what the API needs to
reject an infeasible budget at submission - stays importable without torch; the comparator and
the proxy pull torch in only when used.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "budgets": ("AXES", "Budgets", "arch_costs", "check_budgets", "cheapest_arch", "is_feasible",
                "largest_achievable", "smallest_achievable", "violations"),
    "comparator": ("Comparator", "pairwise_accuracy"),
    "ctnas": ("CTNASSettings",),
    "pareto": ("hypervolume", "pareto_front"),
    "proxy": ("ProxyEvaluator",),
    "strategies": ("STRATEGIES", "run_search"),
    "study": ("SearchResult", "TrialRecord"),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'slimformer.search' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"slimformer.search.{_WHERE[name]}"), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
