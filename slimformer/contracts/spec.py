"""What a job asks for: teacher, data, budgets, latency shape, search settings.

A JobSpec is what a user writes (a JSON file for `slimformer run`, a request body for the API).
Every field is bounded so a spec can never ask for unbounded work. Torch-free, so the API can
validate specs without importing the training stack; `workers.plan` turns a spec into settings.
A contract between the service (which validates and stores specs) and the workers (which run
them), so neither side imports the other for it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["Budgets", "JobSpec", "LatencyShape", "SearchSettings"]


class Budgets(BaseModel):
    """Hard limits a returned model must meet. None: no limit on that axis."""

    model_config = ConfigDict(extra="forbid")
    latency_ms: float | None = Field(None, gt=0, le=1e6)
    memory_mb: float | None = Field(None, gt=0, le=1e6)
    params_m: float | None = Field(None, gt=0, le=1e5)

    @field_validator("latency_ms", "memory_mb", "params_m")
    @classmethod
    def _finite(cls, v: float | None) -> float | None:
        if v is not None and not math.isfinite(v):
            raise ValueError("must be a finite number")
        return v


class LatencyShape(BaseModel):
    """The input shape and runtime latency is measured and predicted at."""

    model_config = ConfigDict(extra="forbid")
    batch: int = Field(1, ge=1, le=256)
    seq_len: int = Field(128, ge=8, le=512)
    threads: int = Field(1, ge=1, le=64)
    runtime: Literal["torch", "onnxruntime"] = "torch"


class SearchSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    strategy: Literal["nsga2", "tpe", "random", "ctnas", "sample"] = "nsga2"
    trials: int | None = Field(None, ge=1, le=5000)
    fewshot_splits: bool = True
    # Start from teacher-shaped archs at every hidden size (`SearchSpace.anchors`), see run_search.
    anchors: bool = True
    finalists: int | None = Field(None, ge=1, le=20)
    objectives: list[Literal["proxy", "latency", "memory"]] = Field(
        default_factory=lambda: ["proxy", "latency"], min_length=2, max_length=3
    )


class JobSpec(BaseModel):
    """A compression job. Unknown fields are errors, so a typo never silently does nothing."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field("", max_length=200)
    teacher: str = Field("minilm-l6", min_length=1, max_length=1000)
    dataset: str = Field("rotten-tomatoes", min_length=1, max_length=1000)
    corpus: str | None = Field("news", max_length=100)
    seed: int = Field(0, ge=0, le=2**31 - 1)
    preset: Literal["tiny", "quick", "standard"] = "quick"
    budgets: Budgets = Field(default_factory=Budgets)
    latency: LatencyShape = Field(default_factory=LatencyShape)
    search: SearchSettings = Field(default_factory=SearchSettings)

    @classmethod
    def from_file(cls, path: Path) -> JobSpec:
        return cls.model_validate(json.loads(Path(path).read_text()))
