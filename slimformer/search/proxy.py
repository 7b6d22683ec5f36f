"""The proxy score: how well a candidate's blocks, cut out of the trained block supernets, imitate the teacher.

NAS-BERT scores a candidate without training it: each block's sub-architecture is run inside its
block supernet on held-out teacher states and its distillation loss measured. Blocks are
independent, so a block's loss depends only on (region, block, H, that block's ops) and is cached
under that key: candidates sharing a block reuse its loss, and a resumed search reuses the losses
persisted to SQLite.

Few-shot routing: the candidate is scored by the sub-supernet whose region holds it (its H);
one-shot routing uses the whole-space supernet ("all").
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from slimformer.search_space import Arch, Op, SearchSpace
from slimformer.supernet.assemble import fewshot_regions, region_of
from slimformer.supernet.distill import BlockTrainer, BlockTrainSettings, Region, validation_loss
from slimformer.supernet.states import TeacherStates

ROUTINGS = ("fewshot", "oneshot")
CacheKey = tuple[str, int, int, str]  # (region key, block, hidden, "op op op op")


def _ops_key(ops: Sequence[Op]) -> str:
    return " ".join(str(op) for op in ops)


class ProxyEvaluator:
    """Scores architectures by normalised block-wise validation distillation loss, with a cache.

    Args:
        space: the search space the supernets were trained on.
        states: teacher states (held-out rows are `states.val_indices()`); must hold the
            boundaries of every block that will be scored.
        load_block: (region key, block index) -> that block's `BlockTrainer` state dict, e.g.
            `lambda r, i: load_file(ctx.block_file(r, i))`. Called at most once per pair, lazily.
        settings: batch size and number of validation batches (`val_batches`).
        routing: default routing for `score` / `__call__`: "fewshot" or "oneshot".
        regions: the few-shot regions trained (default: one per hidden size).
        cache_path: SQLite file to persist block losses in; None keeps them in memory only.
        cache_tag: names the weights the losses were measured with (e.g. a run id plus a hash of
            the block files); rows with another tag are never read, so a cache file can never
            hand back losses of other weights.

    Attributes:
        evaluations: block losses computed (cache misses) by this object.
        hits: block losses answered from the cache.
    """

    def __init__(
        self,
        space: SearchSpace,
        states: TeacherStates,
        load_block: Callable[[str, int], dict[str, torch.Tensor]],
        settings: BlockTrainSettings | None = None,
        *,
        routing: str = "fewshot",
        regions: Sequence[Region] | None = None,
        cache_path: str | Path | None = None,
        cache_tag: str = "",
    ):
        if routing not in ROUTINGS:
            raise ValueError(f"routing: {routing!r} not in {list(ROUTINGS)}")
        self.space = space
        self.states = states
        self.load_block = load_block
        self.settings = settings or BlockTrainSettings()
        self.routing = routing
        self.regions = list(regions) if regions is not None else fewshot_regions(space)
        self.cache_tag = cache_tag
        self.evaluations = 0
        self.hits = 0
        self._trainers: dict[tuple[str, int], BlockTrainer] = {}
        self._cache: dict[CacheKey, float] = {}
        self._db: sqlite3.Connection | None = None
        if cache_path is not None:
            self._open_cache(Path(cache_path))

    @classmethod
    def from_block_states(
        cls,
        space: SearchSpace,
        states: TeacherStates,
        blocks: Mapping[str, Sequence[dict[str, torch.Tensor]]],
        settings: BlockTrainSettings | None = None,
        **kwargs: Any,
    ) -> ProxyEvaluator:
        """An evaluator over block weights already in memory: {region key: [state dict per block]}.

        Keyword arguments are those of the constructor (routing, regions, cache_path, cache_tag).
        """
        return cls(space, states, lambda region, index: blocks[region][index], settings, **kwargs)

    # --- cache ---------------------------------------------------------------------------------

    def _open_cache(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path))
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS block_loss (tag TEXT NOT NULL, region TEXT NOT NULL, block INTEGER NOT NULL,"
            " hidden INTEGER NOT NULL, ops TEXT NOT NULL, loss REAL NOT NULL,"
            " PRIMARY KEY (tag, region, block, hidden, ops))"
        )
        self._db.commit()
        rows = self._db.execute(
            "SELECT region, block, hidden, ops, loss FROM block_loss WHERE tag = ?", (self.cache_tag,)
        )
        for region, block, hidden, ops, loss in rows:
            self._cache[(region, int(block), int(hidden), ops)] = float(loss)

    def _store(self, key: CacheKey, loss: float) -> None:
        self._cache[key] = loss
        if self._db is not None:
            # One commit per miss: a miss costs a supernet forward over the validation rows, far more
            # than a commit, and a crash then loses at most the loss being computed.
            self._db.execute(
                "INSERT OR REPLACE INTO block_loss VALUES (?, ?, ?, ?, ?, ?)", (self.cache_tag, *key, loss)
            )
            self._db.commit()

    def cached(self) -> int:
        """Number of block losses known (computed here or loaded from the cache file)."""
        return len(self._cache)

    def close(self) -> None:
        """Close the cache file (losses stay in memory)."""
        if self._db is not None:
            self._db.close()
            self._db = None

    def __enter__(self) -> ProxyEvaluator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- block losses --------------------------------------------------------------------------

    def _trainer(self, region_key: str, index: int) -> BlockTrainer:
        key = (region_key, index)
        if key not in self._trainers:
            trainer = BlockTrainer(self.space, index)
            trainer.load_state_dict(self.load_block(region_key, index), strict=True)
            self._trainers[key] = trainer.eval()
        return self._trainers[key]

    def block_loss(self, region_key: str, block_index: int, ops: Sequence[Op], hidden: int) -> float:
        """Validation distillation loss of one block's sub-architecture in one (sub-)supernet.

        Args:
            region_key: "all" (one-shot) or a few-shot region such as "H128".
            block_index: which block.
            ops: that block's slot ops.
            hidden: the model hidden size H.

        Returns:
            Mean relative MSE on the held-out rows (`distill.validation_loss`); cached.

        Raises:
            ValueError: if the block index is out of range.
        """
        if not 0 <= block_index < self.space.num_blocks:
            raise ValueError(f"block_index: {block_index} not in 0..{self.space.num_blocks - 1}")
        key = (region_key, int(block_index), int(hidden), _ops_key(ops))
        if key in self._cache:
            self.hits += 1
            return self._cache[key]
        trainer = self._trainer(region_key, block_index)
        loss = float(validation_loss(trainer, self.states, tuple(ops), int(hidden), self.settings))
        self.evaluations += 1
        self._store(key, loss)
        return loss

    # --- architecture scores -------------------------------------------------------------------

    def region_key(self, arch: Arch, routing: str | None = None) -> str:
        """Which (sub-)supernet scores `arch`: its few-shot region, or "all" for one-shot routing."""
        routing = routing or self.routing
        if routing not in ROUTINGS:
            raise ValueError(f"routing: {routing!r} not in {list(ROUTINGS)}")
        if routing == "oneshot":
            return Region().key()
        return region_of(arch, self.regions).key()

    def reference_losses(self, routing: str | None = None) -> list[float]:
        """Per-block losses of the space's largest architecture under `routing` (the normalisers)."""
        largest = self.space.largest()
        region = self.region_key(largest, routing)
        return [self.block_loss(region, b, largest.blocks[b], largest.hidden) for b in range(self.space.num_blocks)]

    def block_scores(self, arch: Arch, routing: str | None = None) -> list[float]:
        """Each block's loss divided by that block's reference loss (see `score`)."""
        self.space.validate(arch)
        region = self.region_key(arch, routing)
        refs = self.reference_losses(routing)
        return [
            self.block_loss(region, b, arch.blocks[b], arch.hidden) / max(refs[b], 1e-12)
            for b in range(self.space.num_blocks)
        ]

    def score(self, arch: Arch, routing: str | None = None) -> float:
        """The proxy: mean over blocks of loss_b(arch) / loss_b(largest architecture); lower is better.

        Why this normalisation: raw block losses are not on one scale (block 0 also carries the
        embedding loss, and some teacher layers are much harder to imitate than others), so a plain
        sum would let one block decide the ranking. Dividing each block by what the largest
        (teacher-like) sub-architecture reaches in that block makes every term read "times worse
        than the best this block can do", about 1 for teacher-sized choices, so blocks weigh
        comparably. The normaliser is one constant per block - the largest architecture at the
        largest H, routed like any candidate - rather than the largest at the candidate's own H:
        normalising per H would give every H the same best score of 1 and hide the accuracy cost
        of a narrow model, which is exactly what the latency/accuracy trade-off must see.

        Args:
            arch: a candidate of this space.
            routing: "fewshot" or "oneshot" (default: the evaluator's).

        Returns:
            The normalised proxy (1.0 = as good as the largest architecture).

        Raises:
            ArchError: if `arch` is not in the space.
        """
        scores = self.block_scores(arch, routing)
        return sum(scores) / len(scores)

    def __call__(self, arch: Arch) -> float:
        """`score(arch)` with the default routing, so the evaluator can be passed as `evaluate`."""
        return self.score(arch)
