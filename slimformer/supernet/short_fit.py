"""Short-fit scores: a candidate's KL to the teacher after a few steps of the finalists' own recipe.

Shared weights rank architectures by what they do before any fine-tune; finalists are judged after
one. The two orders differ most between kinds of architecture: on the stop-21 ranking (12 archs
fine-tuned under 2 seeds, bench/results/quality.json) the shared-weight KL ranked the teacher's
plain cuts well (tau 0.81 over the 7 with the plain word table) but put mixed bodies with
convolutions and factorised word tables ahead of where their fine-tunes ended, for tau 0.48 over
all 12. Neither a larger held-out set (0.46), KL at the distillation temperature (0.55) nor a
charge for the word table's rank (0.42) fixed that. Fitting each arch first for 20 steps of the
finalists' recipe (from its shared weights, on the same training rows for every arch) did: 0.61,
0.64 at 60 steps. It is what "early training" proxies do, and costs a few seconds per arch, so it
re-ranks only the pool the finalists are picked from (workers/short_fit_scores.py), after the
search has scored every trial the cheap way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import torch

from slimformer.data.types import Example
from slimformer.search_space import Arch
from slimformer.supernet.extract import extract
from slimformer.supernet.finetune import FinetuneSettings, finetune_subnet, subnet_bridges
from slimformer.supernet.task_score import SharedWeightScorer, TaskScore


def short_fit_settings(recipe: FinetuneSettings, steps: int) -> FinetuneSettings:
    """`recipe` cut to `steps` steps on the first-sampled `steps * batch_size` training rows (the same
    rows for every arch: the rows are a function of the seed), with no dev evaluations on the way."""
    if steps < 1:
        raise ValueError(f"steps: need at least 1, got {steps}")
    return replace(recipe, max_train_examples=steps * recipe.batch_size, epochs=1.0, patience=0)


def short_fit_score(supernet: Any, arch: Arch, labels: Sequence[str], teacher: Any, train: Sequence[Example],
                    scorer: SharedWeightScorer, recipe: FinetuneSettings, steps: int,
                    train_logits: torch.Tensor | None = None, train_pooled: torch.Tensor | None = None) -> TaskScore:
    """Extract `arch` from `supernet`, fit it for `steps` steps of `recipe`, and score it with `scorer`.

    Args:
        supernet: the (task-tuned) supernet holding `arch`; it is not changed.
        teacher: the task teacher (`model`, `tokenizer`, `facts`), for distillation.
        train: the training split; `train_logits` the teacher's logits on it (None: computed), and
            `train_pooled` its pooled last states where the recipe distils them (None: computed).
        scorer: the held-out rows and teacher logits the shared-weight scores use, so both scores
            are in the same units.
    """
    student = extract(supernet, arch, labels)
    finetune_subnet(student, teacher.model, teacher.tokenizer, train, [], [], short_fit_settings(recipe, steps),
                    bridges=subnet_bridges(supernet, arch.hidden), teacher_facts=teacher.facts,
                    teacher_logits=train_logits, teacher_pooled=train_pooled)
    return scorer.score_model(student)
