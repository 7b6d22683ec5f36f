"""Moved to `slimformer.contracts.spec`; kept so existing imports keep working."""

from slimformer.contracts.spec import *  # noqa: F403
from slimformer.contracts.spec import Budgets, JobSpec, LatencyShape, SearchSettings

__all__ = ["Budgets", "JobSpec", "LatencyShape", "SearchSettings"]
