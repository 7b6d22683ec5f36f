"""Train block supernets in parallel: one Ray task per (block, region), or in-process for tests.

Blocks are independent by construction (each reads the stored teacher states at its own two
boundaries), so the one-shot stage is B tasks and the few-shot stage B x K tasks. Each task
checkpoints to its own file, so a retried task (worker death, node loss) resumes instead of
starting over.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from slimformer.search_space import SearchSpace
from slimformer.supernet.device import ray_gpus_per_task
from slimformer.supernet.distill import BlockResult, BlockTrainSettings, Region, train_block
from slimformer.supernet.states import load_teacher_states
from slimformer.workers.fanout import run_tasks


@dataclass
class BlockJob:
    index: int
    region: Region
    init_state: dict[str, torch.Tensor] | None
    steps: int

    @property
    def name(self) -> str:
        return f"block{self.index}-{self.region.key()}"


def block_summary(result: BlockResult) -> dict:
    """What a stage records of one trained block."""
    return {"block": result.block, "region": result.region, "loss_start": result.loss_start,
            "loss_end": result.loss_end, "steps": result.steps, "seconds": round(result.seconds, 2)}


def run_block_job(
    space_doc: dict, job: BlockJob, states_dir: str, settings: BlockTrainSettings, checkpoint_dir: str
) -> BlockResult:
    """Body of one task: load the block's teacher states, train, return the weights."""
    space = SearchSpace.from_dict(space_doc)
    torch.set_num_threads(settings.threads)  # Ray workers otherwise start one thread per core each
    states = load_teacher_states(Path(states_dir), blocks=[job.index])
    job_settings = BlockTrainSettings(**{**settings.__dict__, "steps": job.steps})
    checkpoint = Path(checkpoint_dir) / f"{job.name}.pt"
    return train_block(space, job.index, states, job_settings, checkpoint, job.init_state, job.region)


def train_blocks(
    space: SearchSpace,
    jobs: Sequence[BlockJob],
    states_dir: Path,
    settings: BlockTrainSettings,
    checkpoint_dir: Path,
    use_ray: bool = True,
    on_done: Callable[[BlockResult], None] | None = None,
) -> list[BlockResult]:
    """Run `jobs` and return their results in the same order.

    Args:
        use_ray: one Ray task per job (Ray must be initialised, see workers.ray_runtime);
            False runs them one after another in this process.
        on_done: called as each job finishes (in completion order), e.g. to record progress.
    """
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    args = (space.to_dict(), str(states_dir), settings, str(checkpoint_dir))
    if not use_ray:
        results = []
        for job in jobs:
            result = run_block_job(args[0], job, args[1], args[2], args[3])
            if on_done:
                on_done(result)
            results.append(result)
        return results

    import ray

    remote = ray.remote(num_cpus=settings.threads, num_gpus=ray_gpus_per_task(), max_retries=2)(run_block_job)
    # Jobs left over from full waves take the idle cores and run first (3 blocks on 2 cores: the third on both).

    def submit(i: int, threads: int):
        return remote.options(num_cpus=threads).remote(args[0], jobs[i], args[1], replace(settings, threads=threads),
                                                       args[3])

    return run_tasks(submit, len(jobs), settings.threads, (lambda _i, result: on_done(result)) if on_done else None)
