"""The task-aware evaluator: an architecture's score is what it does on held-out task data with the
shared weights of its (task-tuned) sub-supernet, as `SharedWeightScorer` measures it.

It is a drop-in `evaluate` for `run_search` (arch -> number to minimise). Scores are cached by
architecture hash, in memory and in a SQLite file, so a resumed search never scores an arch twice;
the cache tag names the supernet weights, so stale scores are never read.

A factorised word table is charged twice (`rank_penalty`). The shared-weight KL of a sub-network
mixes two kinds of damage: what its narrow or novel body gets wrong, which a finalist's fine-tune
mostly wins back, and what a rank-r table loses about the words, which it does not: rare words'
rows are fixed by the (occurrence-weighted) SVD and few training examples ever update them. On the
stop-21 ranking the five factorised archs fine-tuned about 2 points below plain archs of the same
shared KL (task-aware tau 0.48 over all 12, 0.81 over the 7 plain ones). The penalty is that lasting
part, measured where little else is wrong: the KL the rank adds to the widest arch of the same H
(`SearchSpace.largest_at`), once per (H, r), the same units as the score.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from slimformer.search_space import Arch, SearchSpace
from slimformer.supernet.task_score import SharedWeightScorer, TaskScore


class TaskAwareEvaluator:
    """Scores architectures with shared weights on held-out task examples.

    Args:
        space: the search space.
        supernet_for: arch -> the supernet holding it (few-shot routing, task-tuned weights).
        scorer: the held-out examples and the teacher's logits on them.
        metric: "kl" (KL to the teacher, default), "error" (1 - accuracy) or "f1_error" (1 - macro-F1):
            the value returned.
        penalise_rank: add `rank_penalty` to a factorised arch's value (the module docstring says why).
        cache_path: SQLite file for scores (None: memory only).
        cache_tag: names the weights the scores were measured with.

    Attributes:
        evaluations: scores computed (cache misses) by this object.
        scores: arch hash -> TaskScore of every arch scored or read from the cache.
    """

    def __init__(self, space: SearchSpace, supernet_for: Callable[[Arch], object], scorer: SharedWeightScorer,
                 metric: str = "kl", cache_path: str | Path | None = None, cache_tag: str = "",
                 penalise_rank: bool = True):
        TaskScore(0.0, 0.0, 0.0).value(metric)  # rejects an unknown metric now, not at the first trial
        self.space, self.supernet_for, self.scorer, self.metric = space, supernet_for, scorer, metric
        self.penalise_rank = penalise_rank
        self.cache_tag = cache_tag
        self.evaluations = 0
        self.scores: dict[str, TaskScore] = {}
        self._db: sqlite3.Connection | None = None
        if cache_path is not None:
            Path(cache_path).parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(cache_path))
            self._db.execute("CREATE TABLE IF NOT EXISTS task_score (tag TEXT NOT NULL, hash TEXT NOT NULL,"
                             " score TEXT NOT NULL, PRIMARY KEY (tag, hash))")
            self._db.commit()
            for arch_hash, doc in self._db.execute("SELECT hash, score FROM task_score WHERE tag = ?", (cache_tag,)):
                score = TaskScore(**json.loads(doc))
                if metric != "f1_error" or score.macro_f1 is not None:  # an older score lacks it: score again
                    self.scores[arch_hash] = score

    def task_score(self, arch: Arch) -> TaskScore:
        """Accuracy and KL of `arch` on the held-out examples (cached)."""
        self.space.validate(arch)
        if arch.hash not in self.scores:
            score = self.scorer.score(self.supernet_for(arch), arch)
            self.evaluations += 1
            self.scores[arch.hash] = score
            if self._db is not None:
                self._db.execute("INSERT OR REPLACE INTO task_score VALUES (?, ?, ?)",
                                 (self.cache_tag, arch.hash, json.dumps(score.__dict__)))
                self._db.commit()
        return self.scores[arch.hash]

    def rank_penalty(self, arch: Arch) -> float:
        """What `arch`'s factorised word table costs the widest arch of its H, in the score's units.

        0.0 for a plain table. Both widest archs are scored like any other (and cached), so a search
        pays for this once per (H, rank) it meets. Never negative: a rank that happens to score a
        little better on the held-out rows is not rewarded for it.
        """
        if arch.embedding_rank is None:
            return 0.0
        plain = self.space.largest_at(arch.hidden)
        factorised = replace(plain, embedding_rank=arch.embedding_rank)
        return max(0.0, self.task_score(factorised).value(self.metric) - self.task_score(plain).value(self.metric))

    def value(self, arch: Arch) -> float:
        """The number the search minimises: the score, plus the rank penalty when it is on."""
        score = self.task_score(arch).value(self.metric)
        return score + self.rank_penalty(arch) if self.penalise_rank else score

    def __call__(self, arch: Arch) -> float:
        return self.value(arch)

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def __enter__(self) -> TaskAwareEvaluator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
