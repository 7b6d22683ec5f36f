"""How much work each preset spends on each stage of a job."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from slimformer.contracts.spec import JobSpec
from slimformer.supernet.distill import BlockTrainSettings
from slimformer.supernet.finetune import FinetuneSettings
from slimformer.supernet.task_tune import TaskTuneSettings
from slimformer.supernet.teacher import TeacherSettings


@dataclass
class StagePlan:
    """Concrete settings for every stage, from a preset."""

    teacher: TeacherSettings
    distill_texts: int
    states_max_length: int
    blocks: BlockTrainSettings
    fewshot_steps: int
    finetune: FinetuneSettings
    eval_examples: int | None  # dev/test examples used for accuracy (None: all)
    trials: int
    finalists: int
    proxy_batches: int
    task: TaskTuneSettings = field(default_factory=lambda: TaskTuneSettings(steps=0))  # steps 0: no task stage
    score_examples: int | None = 500  # dev rows for shared-weight scores (None: all)
    score_metric: str = "kl"
    # Steps of the finalists' recipe each candidate of the finalist pool is fitted for before the
    # pool is ranked again (supernet/short_fit.py); 0: finalists are picked by shared-weight scores.
    short_fit_steps: int = 0
    driver_threads: int = 2  # torch threads of work done in the driver itself (teacher logits)
    # Finalists faster (in FLOPs) than this many times the teacher see proportionally more examples,
    # up to `finalist_max_epochs` passes over the training split (workers/finetune_budget.py). None: off.
    finalist_compute_from: float | None = None
    finalist_max_epochs: float = 1.0
    # A training split on which the base recipe would see fewer examples than this gets more passes,
    # up to 10 (workers/finetune_budget.py: the small-split floor). 0: none.
    finalist_min_examples: int = 0
    # What that floor adds stops where a finalist's fine-tune would cost more than this share of the
    # teacher recipe's training on the split, in FLOPs (workers/finetune_budget.py). None: no bound.
    finalist_floor_share: float | None = None
    # Each full-rank finalist also gets a factorised twin at each of the space's this many largest ranks
    # below its H, distilled from the fine-tuned finalist (workers/embedding_twins.py); 0: none.
    embedding_twins: int = 0
    extra: dict = field(default_factory=dict)


def default_teacher_settings(seed: int) -> TeacherSettings:
    """The teacher every real preset shares (and so caches once per task): the whole training split,
    at most 3 epochs, stopped when dev accuracy stops improving, max_length picked from the data. A
    small split gets more epochs (up to 10), to at least 600 optimizer steps (`with_step_floor`).

    Measured reference on the 2-core machine: MiniLM-L6 on Rotten Tomatoes, 3 epochs, lr 5e-5,
    length 64 gave dev 0.835 / test 0.825 in 969 s. Its 10,202 rows run 957 steps in 3 epochs, so the
    floor leaves it (and its cache key) as it was.
    """
    return TeacherSettings(epochs=3, patience=1, lr=5e-5, batch_size=32, max_length=None, seed=seed,
                           min_steps=600)


def plan_for(spec: JobSpec) -> StagePlan:
    """Settings per stage for the spec's preset (search trials and finalists may be overridden).

    tiny: seconds, for tests on a tiny teacher. quick (the default): the demo and the quality
    benchmark, aiming at 20 minutes on 2 CPU cores once the task's teacher is cached (measured:
    bench/results/quality.json `job_seconds`). standard: for
    bigger machines (longer task-aware tuning, finalists trained for up to 4 epochs).
    """
    seed = spec.seed
    if spec.preset == "tiny":
        plan = StagePlan(
            teacher=TeacherSettings(epochs=1, patience=0, lr=5e-4, batch_size=16, max_length=32, seed=seed),
            distill_texts=96, states_max_length=32,
            blocks=BlockTrainSettings(steps=6, batch_size=8, lr=1e-3, warmup_steps=2, checkpoint_every=3, seed=seed),
            fewshot_steps=2,
            finetune=FinetuneSettings(epochs=1, lr=1e-3, batch_size=16, max_length=32, seed=seed, pooled_weight=1.0),
            eval_examples=None, trials=12, finalists=2, proxy_batches=1,
            task=TaskTuneSettings(steps=4, batch_size=8, lr=1e-3, max_length=32, seed=seed, checkpoint_every=2),
            score_examples=None, driver_threads=1, short_fit_steps=2,
        )
    elif spec.preset == "quick":
        plan = StagePlan(
            teacher=default_teacher_settings(seed),
            distill_texts=1200, states_max_length=64,
            blocks=BlockTrainSettings(steps=120, batch_size=24, lr=5e-4, warmup_steps=10, checkpoint_every=20,
                                      seed=seed),
            fewshot_steps=25,
            # Finalists start from task-tuned shared weights, so a short fine-tune converges.
            # With pooled-state distillation (supernet/pooled_kd.py), weight 1: the teacher's first 1, 2 and 3
            # layers fine-tuned 0.3, 0.1 and 0.8 points better on test, 0.0, 0.5 and 1.0 on dev
            # (bench/results/pooled_kd.json); the teacher's pooled states come with its logits, in one pass.
            finetune=FinetuneSettings(epochs=1, lr=1e-4, batch_size=32, seed=seed, patience=2, evals_per_epoch=3,
                                      max_train_examples=6000, pooled_weight=1.0),
            # Up to 4 tier picks (none where a tier's best is a layer swap of its cut) and a wide tier's and
            # the sub-cut range's best non-swap; the teacher's plain cuts join them, one per layer count.
            eval_examples=None, trials=60, finalists=4, proxy_batches=2,
            task=TaskTuneSettings(steps=100, batch_size=32, lr=1e-4, seed=seed, checkpoint_every=50),
            score_examples=500,
            # No short fits here (0): 20 steps rank the stop-21 ranking's 12 archs at tau 0.61 against 0.48
            # for their shared-weight KL, but in the stop-22 run with them on (bench/results/
            # quality_short_fit.json) the pool's fits took 170 s and its 3 new picks were all beaten by a
            # cut or another pick, and the job fine-tuned 9 finalists (stop 21: 6): 20 minutes has no room.
            # Since stop 23 factorised archs are fine-tuned as twins of their full-rank selves, and the
            # same 12 rank at 0.73 (short fit) against 0.67 (shared KL): the cheap order is good enough here.
            short_fit_steps=0,
            # Every finalist faster than the teacher gets one base pass's worth of teacher FLOPs: a 3x
            # one sees 18,000 examples (1.76 epochs), the first layer alone is capped at 3 epochs. At
            # compute_from 1.5 (stop 18) both 2-layer finalists were still improving at their last step.
            finalist_compute_from=1.0, finalist_max_epochs=3.0,
            # A small split's finalists see the 6,000 examples a large split's do (in repeated passes):
            # on 1,010 news documents one pass was 32 steps (bench/results/small_split_floor.json).
            finalist_min_examples=6000,
            # But on long documents it is dear: each finalist costs at most a fifth of the teacher's training
            # (1,010 news documents: 2 passes at teacher cost, 10 for the first layer alone; Rotten Tomatoes'
            # 6,000 teacher-cost examples are under its bound of 6,121, so its recipe is unchanged).
            finalist_floor_share=0.2,
        )
    else:
        plan = StagePlan(
            teacher=default_teacher_settings(seed),
            distill_texts=12000, states_max_length=128,
            blocks=BlockTrainSettings(steps=2000, batch_size=32, lr=5e-4, warmup_steps=100, checkpoint_every=100,
                                      seed=seed),
            fewshot_steps=400,
            finetune=FinetuneSettings(epochs=4, lr=1e-4, batch_size=32, seed=seed, patience=3, evals_per_epoch=2,
                                      pooled_weight=1.0),
            eval_examples=None, trials=300, finalists=6, proxy_batches=4,
            task=TaskTuneSettings(steps=1500, batch_size=32, lr=1e-4, seed=seed, checkpoint_every=100),
            score_examples=None, finalist_compute_from=1.5, finalist_max_epochs=6.0, finalist_min_examples=6000,
            # Bigger machines can afford the better-ranked pool (see quick; not measured at this preset).
            short_fit_steps=40,
            # And a factorised twin of each full-rank finalist at r 128 and 64 (for a 384-wide teacher):
            # each costs one more fine-tune (bench/results/compact.json measures them on a quick job).
            embedding_twins=2,
        )
    # Every fine-tune (finalists, twins and the benchmark's baselines alike) steps only the word-table rows
    # its batches touch (supernet/sparse_table.py): on one thread a step of the teacher's first 1 and 3
    # layers took 17% and 9% less time; fitted in full, their first 2 and 3 layers scored within 0.6 dev
    # and 0.3 test points of the dense recipe (stop 31, Rotten Tomatoes).
    plan.finetune = replace(plan.finetune, sparse_word_table=True)
    if spec.search.trials is not None:
        plan.trials = spec.search.trials
    if spec.search.finalists is not None:
        plan.finalists = spec.search.finalists
    if spec.search.embedding_twins is not None:
        plan.embedding_twins = spec.search.embedding_twins
    return plan
