"""What a job asks for: teacher, data, budgets, latency shape, search settings.

A JobSpec is what a user writes (a JSON file for `slimformer run`, a request body for the API).
Every field is bounded so a spec can never ask for unbounded work; numbers refuse `true`/`false`
and texts refuse NUL, here, so the API (422) and `slimformer run` (`error: ...`, exit 2) refuse
them alike. Torch-free, so the API can
validate specs without importing the training stack; `workers.plan` turns a spec into settings.
A contract between the service (which validates and stores specs) and the workers (which run
them), so neither side imports the other for it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

__all__ = [
    "Budgets", "Integer", "JobSpec", "LatencyShape", "OptionalInteger", "OptionalNumber", "SearchSettings", "Text",
]


def _not_boolean(kind: str, error_type: str) -> BeforeValidator:
    """Refuse `true`/`false` where a number is wanted: pydantic's lax mode would read them as 1 and 0.

    The schema says integer or number, so a boolean there is the caller's mistake, not a value to
    guess at. Strict mode would also refuse `5.0` for an integer and `"1.5"` for a number; only
    booleans are refused here.
    """
    message = f"Input should be a valid {kind}, not a boolean"

    def check(value: Any) -> Any:
        if isinstance(value, bool):
            raise PydanticCustomError(error_type, message)
        return value

    return BeforeValidator(check)


def _no_nul(value: str) -> str:
    # PostgreSQL cannot store NUL in text, and no name, path or id has one.
    if "\x00" in value:
        raise PydanticCustomError("string_nul", "Input should not contain NUL (\\x00) characters")
    return value


# Numbers and texts of a spec: `true` is not 1, and text has no NUL (the schema says so too). The
# optional kinds wrap `X | None` whole, so the fields' bounds still reach the JSON schema.
OptionalNumber = Annotated[float | None, _not_boolean("number", "float_type")]
Integer = Annotated[int, _not_boolean("integer", "int_type")]
OptionalInteger = Annotated[int | None, _not_boolean("integer", "int_type")]
Text = Annotated[str, AfterValidator(_no_nul), Field(json_schema_extra={"pattern": "^[^\\x00]*$"})]


class Budgets(BaseModel):
    """Hard limits a returned model must meet. None: no limit on that axis."""

    model_config = ConfigDict(extra="forbid")
    latency_ms: OptionalNumber = Field(None, gt=0, le=1e6)
    memory_mb: OptionalNumber = Field(None, gt=0, le=1e6)
    params_m: OptionalNumber = Field(None, gt=0, le=1e5)

    @field_validator("latency_ms", "memory_mb", "params_m")
    @classmethod
    def _finite(cls, v: float | None) -> float | None:
        if v is not None and not math.isfinite(v):
            raise ValueError("must be a finite number")
        return v


class LatencyShape(BaseModel):
    """The input shape and runtime latency is measured and predicted at."""

    model_config = ConfigDict(extra="forbid")
    batch: Integer = Field(1, ge=1, le=256)
    seq_len: Integer = Field(128, ge=8, le=512)
    threads: Integer = Field(1, ge=1, le=64)
    runtime: Literal["torch", "onnxruntime"] = "torch"


class SearchSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    strategy: Literal["nsga2", "tpe", "random", "ctnas", "sample"] = "nsga2"
    trials: OptionalInteger = Field(None, ge=1, le=5000)
    fewshot_splits: bool = True
    # Start from teacher-shaped archs at every hidden size (`SearchSpace.anchors`), see run_search.
    anchors: bool = True
    finalists: OptionalInteger = Field(
        None, ge=1, le=20, description="How many finalists the search picks itself (default: the preset's); the "
        "teacher's plain cuts within budget are fine-tuned beside them, one per layer count.")
    embedding_twins: OptionalInteger = Field(
        None, ge=0, le=3, description="Per full-rank finalist, how many factorised twins to distil from it: its "
        "word table at the space's largest ranks below its width (1/3 and 1/6 of the teacher's for 2), each a "
        "finalist of its own with fewer parameters (default: the preset's; 0: none).")
    objectives: list[Literal["proxy", "latency", "memory"]] = Field(
        default_factory=lambda: ["proxy", "latency"], min_length=2, max_length=3
    )


class JobSpec(BaseModel):
    """A compression job. Unknown fields are errors, so a typo never silently does nothing."""

    model_config = ConfigDict(extra="forbid")
    name: Text = Field("", max_length=200)
    teacher: Text = Field("minilm-l6", min_length=1, max_length=1000)
    dataset: Text = Field("rotten-tomatoes", min_length=1, max_length=1000)
    corpus: Text | None = Field("news", max_length=100)
    # May the student keep only the word-embedding rows of tokens in the task's training text and the
    # corpus (plus specials and single characters)? The whole vocabulary is most of a small student's
    # parameters, so it does where size counts (`trims_vocab`); elsewhere it would only cost accuracy.
    trim_vocab: bool = Field(
        True, description="allow trimming the student's vocabulary to the tokens of the task's training text and "
        "the corpus; it is trimmed when the job counts size (a params_m or memory_mb budget, or the memory "
        "objective), and kept whole otherwise, since trimming only costs accuracy on words the training text lacks")
    seed: Integer = Field(0, ge=0, le=2**31 - 1)
    preset: Literal["tiny", "quick", "standard"] = "quick"
    budgets: Budgets = Field(default_factory=Budgets)
    latency: LatencyShape = Field(default_factory=LatencyShape)
    search: SearchSettings = Field(default_factory=SearchSettings)
    # Keep in step with slimformer.metrics (METRICS, IMBALANCE_SHARE), which resolves "auto".
    metric: Literal["auto", "accuracy", "macro_f1"] | None = Field(
        None, description="the task metric the search and the front optimise; null or \"auto\": macro_f1 when the "
                          "smallest class is under 20% of the training data, else accuracy")

    @property
    def trims_vocab(self) -> bool:
        """Whether the job's students keep a trimmed vocabulary: allowed (`trim_vocab`) and size counts.

        Trimming changes no latency, only parameters and memory, and it costs accuracy on text unlike
        the training text: a word whose pieces were dropped is spelled in shorter pieces the student
        never learnt it by. On Rotten Tomatoes' test split that cost the smallest finalists 0.3 to 1.2
        points (stop 29). So a job trims only where a size budget or the memory objective asks for it.
        """
        sizes = self.budgets.params_m is not None or self.budgets.memory_mb is not None
        return self.trim_vocab and (sizes or "memory" in self.search.objectives)

    @classmethod
    def from_file(cls, path: Path) -> JobSpec:
        return cls.model_validate(json.loads(Path(path).read_text()))
