"""A job trims its students' vocabulary only where it counts size, and never keeps dev's words for it.

Trimming changes no latency; it only saves parameters and memory, and it costs accuracy on words the
training text lacks. So: a `params_m` or `memory_mb` budget, or the memory objective, trims; nothing
else does. Real prepare stage on the tiny teacher and task.
"""

from __future__ import annotations

import pytest

from slimformer.contracts.spec import JobSpec
from slimformer.search_space import SearchSpace
from slimformer.workers.context import RunContext, read_json
from slimformer.workers.progress import Reporter
from slimformer.workers.stages.prepare import stage_prepare
from slimformer.workers.vocab import vocab_texts


class Events(Reporter):
    def __init__(self) -> None:
        self.events: list[str] = []

    def event(self, message: str) -> None:
        self.events.append(message)


@pytest.mark.parametrize(("changes", "trims"), [
    ({}, False),
    ({"budgets": {"latency_ms": 5.0}}, False),
    ({"budgets": {"params_m": 3.0}}, True),
    ({"budgets": {"memory_mb": 20.0}}, True),
    ({"search": {"objectives": ["proxy", "latency", "memory"]}}, True),
    ({"budgets": {"params_m": 3.0}, "trim_vocab": False}, False),
])
def test_only_a_size_budget_or_the_memory_objective_trims(changes, trims):
    assert JobSpec.model_validate(changes).trims_vocab is trims


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


def _prepare(spec: JobSpec, run_dir, cache) -> tuple[SearchSpace, dict | None, list[str]]:
    reporter = Events()
    stage_prepare(RunContext(spec, run_dir, reporter, use_ray=False, cache_dir=cache))
    space = SearchSpace.from_dict(read_json(run_dir / "space.json"))
    return space, read_json(run_dir / "vocab.json")["kept"], reporter.events


def test_a_job_that_counts_no_size_keeps_the_whole_vocabulary(tiny_teacher_dir, task_csv, tmp_path, cache):
    base = JobSpec(name="tiny", teacher=str(tiny_teacher_dir), dataset=str(task_csv), corpus=None, preset="tiny")
    space, kept, events = _prepare(base, tmp_path / "whole", cache)
    assert kept is None and space.student_vocab is None
    assert any("vocabulary kept whole" in e for e in events)

    sized = base.model_copy(update={"budgets": base.budgets.model_copy(update={"params_m": 1000.0})})
    space, kept, events = _prepare(sized, tmp_path / "trimmed", cache)
    assert kept is not None and space.student_vocab == kept["size"] < kept["teacher_size"]
    assert not any("vocabulary kept whole" in e for e in events)


def test_the_kept_vocabulary_comes_from_training_text_not_dev(tiny_task):
    texts = vocab_texts(tiny_task, None, 0, seed=0)
    assert texts == [ex.text for ex in tiny_task.train]
    assert not set(ex.text for ex in tiny_task.dev) <= set(texts)
