"""From teacher to trained supernet: warm starts for each block, few-shot regions, assembly.

Blocks train independently (possibly on different processes or nodes), each producing a
`BlockTrainer` state; `assemble_supernet` puts them together with the teacher's classifier
folded through the last block's output bridge.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from slimformer.search_space import Arch, SearchSpace
from slimformer.supernet.distill import BlockTrainer, Region
from slimformer.supernet.init import init_block_from_teacher, init_classifier_from_teacher, init_embeddings_from_teacher
from slimformer.supernet.model import Supernet

SPLIT_DECISIONS = ("hidden",)


def warm_start_state(
    space: SearchSpace, index: int, teacher_encoder: nn.Module, basis: torch.Tensor, seed: int = 0
) -> dict:
    """BlockTrainer weights for block `index`, initialised from the teacher in the permuted basis (init.py).

    Ops the teacher has no weights for (SepConv) keep their random init, drawn from a generator
    seeded by (seed, block) as in `train_block`, never from the caller's global RNG: that stream
    depends on what the process did before (a resumed job starts in a fresh process, a cached
    teacher is loaded instead of trained), and a resumed or repeated job must start every block
    from the same weights.
    """
    with torch.random.fork_rng(devices=[]):  # seeding here must not move the caller's global RNG stream
        torch.manual_seed(seed * 1000 + index)
        trainer = BlockTrainer(space, index)
    init_block_from_teacher(trainer.block, teacher_encoder, basis)
    if trainer.embeddings is not None:
        init_embeddings_from_teacher(trainer.embeddings, teacher_encoder, basis)
    return {k: v.detach().clone() for k, v in trainer.state_dict().items()}


def fewshot_regions(space: SearchSpace, decision: str = "hidden") -> list[Region]:
    """The K regions of a few-shot split along `decision` (one per value of the decision).

    Raises:
        ValueError: for a decision we cannot split on.
    """
    if decision not in SPLIT_DECISIONS:
        raise ValueError(f"split decision: {decision!r} not in {list(SPLIT_DECISIONS)}")
    return [Region(hidden=h) for h in space.hidden_sizes]


def region_of(arch: Arch, regions: Sequence[Region]) -> Region:
    """The region that holds `arch` (few-shot routing)."""
    for region in regions:
        if region.hidden is None or region.hidden == arch.hidden:
            return region
    raise ValueError(f"no region holds hidden {arch.hidden}")


def assemble_supernet(
    space: SearchSpace, block_states: Sequence[dict[str, torch.Tensor]], teacher_head: nn.Linear | None = None
) -> Supernet:
    """A whole Supernet from per-block BlockTrainer states (block 0 carries the embeddings).

    Args:
        teacher_head: the task teacher's classifier (Linear D -> C); folded through the last
            block's output bridge. Without it the classifier keeps its random init.
    """
    if len(block_states) != space.num_blocks:
        raise ValueError(f"block_states: expected {space.num_blocks}, got {len(block_states)}")
    supernet = Supernet(space)
    for index, state in enumerate(block_states):
        block_part = {k[len("block.") :]: v for k, v in state.items() if k.startswith("block.")}
        supernet.blocks[index].load_state_dict(block_part, strict=True)
        if index == 0:
            emb = {k[len("embeddings.") :]: v for k, v in state.items() if k.startswith("embeddings.")}
            supernet.embeddings.load_state_dict(emb, strict=True)
    if teacher_head is not None:
        init_classifier_from_teacher(supernet.classifier, teacher_head, supernet.blocks[-1].bridge_out)
    return supernet.eval()
