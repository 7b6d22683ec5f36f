"""Everything the stages of one job share: the spec, its plan, its run folder and lazy resources.

Resources (task data, task teacher, supernets) are rebuilt from what earlier stages wrote to the
run folder, never kept only in memory, so any stage can run in a fresh process after a crash or
on another worker that took the job over.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from slimformer.data import TaskData, load_task
from slimformer.search_space import SearchSpace
from slimformer.search_space.latency import LatencySetting
from slimformer.supernet.assemble import assemble_supernet
from slimformer.supernet.model import Supernet
from slimformer.supernet.teacher import TaskTeacher, fine_tune_teacher
from slimformer.workers.plan import StagePlan, plan_for
from slimformer.workers.progress import Reporter
from slimformer.workers.spec import JobSpec


def slimformer_home() -> Path:
    return Path(os.environ.get("SLIMFORMER_HOME", Path.home() / ".slimformer"))


def write_json(path: Path, doc: Any) -> None:
    """Write JSON atomically: readers see the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=2, default=str))
    os.replace(tmp, path)


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())


def save_tensors(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp))
    os.replace(tmp, path)


@dataclass
class RunContext:
    spec: JobSpec
    run_dir: Path
    reporter: Reporter = field(default_factory=Reporter)
    use_ray: bool = True
    cache_dir: Path = field(default_factory=lambda: slimformer_home() / "cache")
    dataset_path: str | None = None  # where an uploaded data set lives (service), else spec.dataset
    optuna_storage_url: str | None = None  # the service passes its database; default a SQLite file here
    study_name: str = "search"

    def __post_init__(self) -> None:
        self.run_dir = Path(self.run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if self.optuna_storage_url is None:
            self.optuna_storage_url = f"sqlite:///{(self.run_dir / 'study.db').resolve()}"

    @cached_property
    def plan(self) -> StagePlan:
        return plan_for(self.spec)

    @cached_property
    def latency_setting(self) -> LatencySetting:
        s = self.spec.latency
        return LatencySetting(batch=s.batch, seq_len=s.seq_len, threads=s.threads, runtime=s.runtime)

    @cached_property
    def task(self) -> TaskData:
        return load_task(self.dataset_path or self.spec.dataset, seed=self.spec.seed)

    @cached_property
    def eval_task(self) -> TaskData:
        """The task with dev/test cut to the preset's evaluation size (the same rows every time)."""
        n = self.plan.eval_examples
        return self.task.subset(dev=n, test=n)

    @cached_property
    def teacher(self) -> TaskTeacher:
        def progress(event: dict[str, Any]) -> None:
            if event.get("event") == "step":
                fraction = event["step"] / max(1, event["total_steps"])
                self.reporter.progress("prepare", 0.75 * fraction, f"teacher loss {event['loss']:.3f}")
                self.reporter.check_cancelled()

        # The whole dev split decides early stopping, and the teacher's figures are on whole splits.
        return fine_tune_teacher(self.spec.teacher, self.task, self.plan.teacher, self.cache_dir / "teachers", progress)

    @cached_property
    def space(self) -> SearchSpace:
        return SearchSpace.from_dict(read_json(self.run_dir / "space.json"))

    def path(self, *parts: str) -> Path:
        return self.run_dir.joinpath(*parts)

    def block_file(self, region_key: str, index: int) -> Path:
        return self.path("supernet", region_key, f"block{index}.safetensors")

    def supernet(self, region_key: str = "all") -> Supernet:
        """The assembled supernet of a region ("all" = one-shot), from the stored block weights."""
        cache = self.__dict__.setdefault("_supernets", {})
        if region_key not in cache:
            # Block 0's state carries the embeddings, trained with it (per region in the few-shot split).
            states = [load_file(str(self.block_file(region_key, i))) for i in range(self.space.num_blocks)]
            cache[region_key] = assemble_supernet(self.space, states, self.teacher.model.classifier)
        return cache[region_key]
