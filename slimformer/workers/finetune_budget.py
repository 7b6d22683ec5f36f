"""How much fine-tuning each finalist gets: cheaper models see more examples, at a bounded cost.

One fixed pass over the same rows under-trains the small students. Their steps are cheap, and the
distillation signal needs more of them to land. Measured (stop 17, quick preset, MiniLM-L6 on Rotten
Tomatoes): the teacher's first 2 layers, fine-tuned from the same task-tuned weights, scored 0.770 test
after one pass over 6,000 rows, and 0.791 after 2 epochs on the whole split.

So a finalist whose forward pass costs 1/r of the teacher's FLOPs (r, its FLOPs speed-up) sees
`r / compute_from` times the base examples when r > compute_from, capped at `max_epochs` passes
over the training split. Each finalist faster than `compute_from` gets the same FLOPs budget. The
slower ones keep the base recipe. The same function sets the recipe for every baseline fine-tuned
beside the finalists (bench/quality.py's truncated teachers), so comparisons stay like for like.

A small training split gets a floor (`min_examples`), as the teacher does (supernet/teacher_train.py):
one pass over 1,010 news documents is 32 steps, and that teacher was still climbing after 96. Below
the floor, the base recipe repeats passes until it has seen `min_examples` examples, and the FLOPs
scaling above applies on top, both capped at `MAX_FLOOR_EPOCHS` passes. At quick the floor is the
base's own 6,000 examples, so a split of that size or more (Rotten Tomatoes: 10,202) is unchanged.

What the floor adds is bounded by compute (`floor_cap_examples`): a finalist's fine-tune may cost at
most a share of the teacher recipe's training on the same split, in teacher-FLOPs examples. Long
documents make every step dear: at 256 tokens the floored recipe cost 1,116 s for the teacher's
first 2 layers alone (bench/results/small_split_floor.json), and the teacher's cuts to 1 to 6 layers
would together have cost 2.8 times its own training. The bound never takes a recipe below the one
without the floor.
"""

from __future__ import annotations

from dataclasses import replace

from slimformer.search_space import Arch, SearchSpace
from slimformer.search_space.cost import count_flops
from slimformer.supernet.finetune import FinetuneSettings
from slimformer.supernet.teacher_train import MAX_FLOOR_EPOCHS


def flops_speedup(arch: Arch, space: SearchSpace, seq_len: int) -> float:
    """The largest architecture's FLOPs over `arch`'s (the teacher's, in a space that contains it)."""
    return count_flops(space.largest(), space, seq_len) / count_flops(arch, space, seq_len)


def examples_scale(speedup: float, compute_from: float | None) -> float:
    """How many times the base examples a model of this FLOPs speed-up sees (1: the base recipe)."""
    if compute_from is None or speedup <= compute_from:
        return 1.0
    return speedup / compute_from


def scaled_finetune(base: FinetuneSettings, scale: float, train_size: int, max_epochs: float,
                    min_examples: int = 0, floor_cap: float | None = None) -> FinetuneSettings:
    """`base` made to see `scale` times its examples, at most `max_epochs` passes over `train_size` rows.

    Below one pass the extra examples are more distinct rows (a larger sample, one epoch). Beyond
    one pass the whole split is used for several epochs. Early stopping on dev still applies.
    Where the base would see fewer than `min_examples` examples (a small split), it sees that many,
    the cap becomes `MAX_FLOOR_EPOCHS` passes, and dev is scored once per pass (see `_floored`).
    `floor_cap` (examples) bounds what the floor adds, never what the recipe without it sees.
    """
    rows = min(base.max_train_examples or train_size, train_size)
    cap = max(max_epochs, base.epochs)
    seen = min(rows * base.epochs * scale, train_size * cap)  # the recipe without the floor
    floored = train_size > 0 and rows * base.epochs < min_examples
    if floored:
        floor_epochs = max(cap, MAX_FLOOR_EPOCHS)
        floor_seen = min(min(min_examples, train_size * floor_epochs) * scale, train_size * floor_epochs)
        if floor_cap is not None:
            floor_seen = min(floor_seen, floor_cap)
        floored = floor_seen > seen
        seen = max(seen, floor_seen)
    if seen <= rows * base.epochs:  # no faster than compute_from, or already at the cap
        return base
    if seen <= train_size:
        return replace(base, max_train_examples=int(round(seen)), epochs=1.0)
    recipe = replace(base, max_train_examples=None, epochs=seen / train_size)
    return _floored(recipe) if floored else recipe


def _floored(recipe: FinetuneSettings) -> FinetuneSettings:
    """Dev scored once per pass, with patience of at least 2 passes, where the floor repeats a small split.

    At three scores per pass, a 1,010-row split is scored every 10 steps and patience 2 stops training
    20 steps after a noisy peak on 126 dev rows; Rotten Tomatoes' finalists are scored every 63 steps.
    One score per pass (32 steps there) is the teacher's floor rule too.
    """
    return replace(recipe, evals_per_epoch=1, patience=max(recipe.patience, 2) if recipe.patience else 0)


def floor_cap_examples(speedup: float, teacher_examples: int, share: float | None) -> float | None:
    """The most examples the floor may give an arch `speedup` times cheaper than the teacher: `share`
    of the teacher recipe's `teacher_examples` in teacher FLOPs (None: no cap).

    0.2 of Rotten Tomatoes' teacher (3 passes over 10,202 rows) is 6,121 teacher-cost examples, over
    the 6,000 every quick finalist gets there: the cap only binds on a small split. On the 1,010 news
    documents (10 teacher passes) it is 2,020: 2 passes at teacher cost, 10 for the first layer alone.
    """
    if share is None:
        return None
    return share * teacher_examples * speedup


def finalist_finetune(base: FinetuneSettings, arch: Arch, space: SearchSpace, train_size: int,
                      compute_from: float | None, max_epochs: float, min_examples: int = 0,
                      teacher_examples: int = 0, floor_share: float | None = None) -> FinetuneSettings:
    """The fine-tuning recipe for `arch`: `base` with its examples scaled by its FLOPs speed-up,
    and at least `min_examples` examples on a small split, within `floor_share` of the teacher's
    training compute (`teacher_examples`: the examples its recipe sees on this split)."""
    speedup = flops_speedup(arch, space, base.max_length)
    cap = floor_cap_examples(speedup, teacher_examples, floor_share)
    return scaled_finetune(base, examples_scale(speedup, compute_from), train_size, max_epochs, min_examples, cap)
