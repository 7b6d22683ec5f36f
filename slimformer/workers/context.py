"""Everything the stages of one job share: the spec, its plan, its run folder and lazy resources.

Resources (task data, task teacher, teacher logits, supernets, the latency table) are rebuilt from
what earlier stages wrote to the run folder, never kept only in memory, so any stage can run in a
fresh process after a crash or on another worker that took the job over. The helpers stages share
(few-shot routing, the latency table and its predictions) live here, in one place, so stage
modules never import each other.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from slimformer.contracts.spec import JobSpec
from slimformer.data import TaskData, load_task
from slimformer.search_space import Arch, SearchSpace
from slimformer.search_space.latency import LatencySetting, LatencyTable, predict_latency
from slimformer.supernet.assemble import assemble_supernet, fewshot_regions, region_of
from slimformer.supernet.factorised_embedding import occurrence_weights
from slimformer.supernet.finetune import FinetuneSettings
from slimformer.supernet.model import Supernet
from slimformer.supernet.task_score import SharedWeightScorer
from slimformer.supernet.teacher import TaskTeacher, fine_tune_teacher
from slimformer.supernet.vocab import token_counts
from slimformer.workers.finetune_budget import finalist_finetune
from slimformer.workers.plan import StagePlan, plan_for
from slimformer.workers.progress import Reporter


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
    # A name of its own per process: two workers that fill the same missing file never share one.
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
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
    teacher_name: str | None = None  # the teacher as the user named it; None: spec.teacher (see run_job)
    # Built once per process on first use (never part of a run's state: rebuilt from files after a crash).
    _supernets: dict[tuple[str, str], Supernet] = field(default_factory=dict, repr=False)
    _latency_table: LatencyTable | None = field(default=None, repr=False)

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
    def metric(self) -> str:
        """The task metric the job optimises: the spec's, or resolved from the training labels ("auto")."""
        from slimformer.metrics import resolve_metric

        return resolve_metric(self.spec.metric, [e.label for e in self.task.train], len(self.task.labels))

    @cached_property
    def teacher(self) -> TaskTeacher:
        def progress(event: dict[str, Any]) -> None:
            if event.get("event") == "step":
                fraction = event["step"] / max(1, event["total_steps"])
                self.reporter.progress("prepare", 0.75 * fraction, f"teacher loss {event['loss']:.3f}")
                self.reporter.check_cancelled()

        # The whole dev split decides early stopping, by the job's metric as for its students, and the
        # teacher's figures are on whole splits.
        settings = replace(self.plan.teacher, select=self.metric)
        return fine_tune_teacher(self.spec.teacher, self.task, settings, self.cache_dir / "teachers", progress)

    @cached_property
    def space(self) -> SearchSpace:
        return SearchSpace.from_dict(read_json(self.run_dir / "space.json"))

    def path(self, *parts: str) -> Path:
        return self.run_dir.joinpath(*parts)

    def block_file(self, region_key: str, index: int) -> Path:
        return self.path("supernet", region_key, f"block{index}.safetensors")

    # --- supernets and few-shot routing ---------------------------------------------------------

    def task_supernet_file(self, region_key: str) -> Path:
        return self.path("supernet", "task", f"{region_key}.safetensors")

    def supernet(self, region_key: str = "all") -> Supernet:
        """The block-wise supernet of a region ("all" = one-shot), assembled from the stored blocks."""
        key = ("blocks", region_key)
        if key not in self._supernets:
            # Block 0's state carries the embeddings, trained with it (per region in the few-shot split).
            states = [load_file(str(self.block_file(region_key, i))) for i in range(self.space.num_blocks)]
            self._supernets[key] = self._with_svd_basis(
                assemble_supernet(self.space, states, self.teacher.model.classifier))
        return self._supernets[key]

    def _with_svd_basis(self, supernet: Supernet) -> Supernet:
        """Factorised archs take their word factors from an SVD over the rows the exported student
        keeps (vocab.json, when the search costs a trimmed vocabulary), each row weighted by how often
        the training split uses its token: see factorised_embedding."""
        if not self.space.embedding_ranks:
            return supernet
        supernet.embeddings.svd_rows, supernet.embeddings.svd_weights = self.svd_rows_and_weights(
            supernet.embeddings.word_embeddings.shape[0])
        return supernet

    def svd_rows_and_weights(self, vocab_size: int) -> tuple[torch.Tensor | None, torch.Tensor]:
        """The rows a word table's SVD is taken over (the kept vocabulary's teacher ids, or None for
        all `vocab_size`) and each row's occurrence weight: the same for every factorised table of
        the job, whether factored out of the supernet or out of a fine-tuned student."""
        rows = None
        if self.space.student_vocab:
            kept = read_json(self.path("vocab.json")).get("kept")
            rows = kept["old_ids"] if kept else None
        ids = rows if rows is not None else range(vocab_size)
        counts = self.train_token_counts
        weights = occurrence_weights(torch.tensor([counts.get(i, 0) for i in ids]))
        return (None if rows is None else torch.tensor(rows, dtype=torch.long)), weights

    @cached_property
    def train_token_counts(self) -> dict[int, int]:
        """Teacher-token counts over the training split (about a second for 10,000 reviews)."""
        return token_counts(self.teacher.tokenizer, [ex.text for ex in self.task.train])

    def task_supernet(self, region_key: str = "all") -> Supernet:
        """The region's supernet after the task-aware stage; the block-wise one if that stage did not run."""
        file = self.task_supernet_file(region_key)
        if not file.exists():
            return self.supernet(region_key)
        key = ("task", region_key)
        if key not in self._supernets:
            supernet = Supernet(self.space)
            supernet.load_state_dict(load_file(str(file)), strict=True)
            self._supernets[key] = self._with_svd_basis(supernet.eval())
        return self._supernets[key]

    def region_key(self, arch: Arch) -> str:
        """Few-shot routing: the region whose sub-supernet holds `arch` ("all" without a split)."""
        if not self.spec.search.fewshot_splits:
            return "all"
        return region_of(arch, fewshot_regions(self.space)).key()

    def routed_supernet(self, arch: Arch) -> Supernet:
        """The most trained supernet that holds `arch`: its region's, task-tuned where available."""
        return self.task_supernet(self.region_key(arch))

    def finetune_settings(self, arch: Arch) -> FinetuneSettings:
        """The finalists' fine-tuning recipe for `arch`, which every baseline beside them gets too.

        The plan's recipe at the teacher's max_length, picking the best state by the job's metric,
        with more examples for archs cheaper than the teacher and on a small training split, the latter
        within a share of what the teacher's own recipe spends on the split (workers/finetune_budget.py).
        """
        base = replace(self.plan.finetune, max_length=self.teacher.max_length, select=self.metric)
        rows = len(self.task.train)
        teacher_examples = round(self.plan.teacher.with_step_floor(rows).epochs * rows)
        return finalist_finetune(base, arch, self.space, rows, self.plan.finalist_compute_from,
                                 self.plan.finalist_max_epochs, self.plan.finalist_min_examples,
                                 teacher_examples, self.plan.finalist_floor_share)

    def score_examples(self) -> list:
        """The dev rows candidates are scored on with shared weights (the first `plan.score_examples`)."""
        n = self.plan.score_examples
        return list(self.task.dev if n is None else self.task.dev[:n])

    def held_out_scorer(self) -> SharedWeightScorer:
        """The scorer of every shared-weight and short-fit score: `score_examples` and the teacher's logits on them."""
        return SharedWeightScorer(self.teacher.tokenizer, self.score_examples(), self.teacher_logits()["dev"],
                                  self.teacher.max_length)

    def teacher_logits(self) -> dict[str, torch.Tensor]:
        """The task teacher's logits on the training split and the scoring rows of dev (task stage)."""
        return load_file(str(self.path("teacher_logits.safetensors")))

    def distillation_targets(self) -> dict[str, torch.Tensor | None]:
        """`finetune_subnet`'s precomputed teacher targets on the training split, as keyword arguments.

        The logits where the task stage wrote them (else None: fine-tuning computes them). The pooled
        last states only where the plan's recipe distils them (supernet/pooled_kd.py): the task stage
        writes them in the logits' pass; a run folder from before that gets them here, once (from the
        teacher's cache entry where it holds them: supernet/teacher_outputs.py).
        """
        logits_file = self.path("teacher_logits.safetensors")
        targets: dict[str, torch.Tensor | None] = {
            "teacher_logits": self.teacher_logits()["train"] if logits_file.exists() else None,
            "teacher_pooled": None,
        }
        if self.plan.finetune.pooled_weight > 0:
            pooled_file = self.path("teacher_pooled.safetensors")
            if not pooled_file.exists():
                from slimformer.supernet.teacher_outputs import train_outputs

                outputs, _ = train_outputs(self.teacher, [e.text for e in self.task.train])
                save_tensors(pooled_file, {"train": outputs["pooled"]})
            targets["teacher_pooled"] = load_file(str(pooled_file))["train"]
        return targets

    # --- latency ---------------------------------------------------------------------------------

    def latency_table(self) -> LatencyTable:
        """The per-op latency table for the job's shape, as this run first used it.

        Measured once per machine and cached (cache_dir/latency); every table handed out by
        `build_latency_table` is re-checked against whole models timed just then, which refits its
        scale. The first table a run uses is kept in the run folder (latency_table.json), so every
        stage of the run predicts with one scale, also after a restart: re-checked again, a
        resumed search's trials were predicted on another scale than its first ones, and the
        finalists of a run resumed in `finalize` got other predicted latencies than the search gave.
        """
        if self._latency_table is None:
            pinned = self.path("latency_table.json")
            if pinned.exists():
                self._latency_table = LatencyTable.from_dict(read_json(pinned))
                return self._latency_table
            from slimformer.search_space.latency import table_cache_path
            from slimformer.supernet.latency_build import build_latency_table

            cache = self.cache_dir / "latency"
            table = build_latency_table(self.space, self.latency_setting, cache_dir=cache)
            key = table_cache_path(cache, table.hardware, self.latency_setting, table.torch_version, self.space).stem
            self.reporter.latency_table(key, table.to_dict(), self.space)  # lets the API check latency budgets
            write_json(pinned, table.to_dict())
            self._latency_table = table
        return self._latency_table

    def predicted_latency(self, arch: Arch) -> float:
        return predict_latency(arch, self.latency_table())
