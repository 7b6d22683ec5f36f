"""The task-aware evaluator: an architecture's score is what it does on held-out task data with the
shared weights of its (task-tuned) sub-supernet, as `SharedWeightScorer` measures it.

It is a drop-in `evaluate` for `run_search` (arch -> number to minimise). Scores are cached by
architecture hash, in memory and in a SQLite file, so a resumed search never scores an arch twice;
the cache tag names the supernet weights, so stale scores are never read.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
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
        cache_path: SQLite file for scores (None: memory only).
        cache_tag: names the weights the scores were measured with.

    Attributes:
        evaluations: scores computed (cache misses) by this object.
        scores: arch hash -> TaskScore of every arch scored or read from the cache.
    """

    def __init__(self, space: SearchSpace, supernet_for: Callable[[Arch], object], scorer: SharedWeightScorer,
                 metric: str = "kl", cache_path: str | Path | None = None, cache_tag: str = ""):
        TaskScore(0.0, 0.0, 0.0).value(metric)  # rejects an unknown metric now, not at the first trial
        self.space, self.supernet_for, self.scorer, self.metric = space, supernet_for, scorer, metric
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

    def __call__(self, arch: Arch) -> float:
        return self.task_score(arch).value(self.metric)

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def __enter__(self) -> TaskAwareEvaluator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
