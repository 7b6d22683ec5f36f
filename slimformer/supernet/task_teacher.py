"""TaskTeacher: the teacher of one task, ready to distil from, whichever way it was obtained.

Fine-tuned here with a mean-pooling head (teacher.py) or used as given with its own head
(teacher_given.py); the stages only see this record.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from slimformer.search_space.space import TeacherFacts


@dataclass
class TaskTeacher:
    """The teacher of one task, ready to distil from.

    Attributes:
        model: In eval mode: a TeacherClassifier, or a GivenClassifier (teacher_given.py). Either
            returns logits in the task's label order and, when asked, hidden states; `.encoder` is a
            BERT-layout encoder and `.classifier` a mean-pooling head (Linear D -> C) for the students.
        tokenizer: The teacher's tokenizer.
        facts: TeacherFacts with the task's num_labels.
        dev_accuracy: Accuracy on task.dev (NaN when dev is empty).
        test_accuracy: Accuracy on task.test (NaN when test is empty).
        cache_path: Folder the model was loaded from or saved to.
        from_cache: True when nothing was trained in this call.
        train_losses: Mean training loss of each epoch (empty if the folder already had a head).
        meta: The content of meta.json.
    """

    model: nn.Module
    tokenizer: Any
    facts: TeacherFacts
    dev_accuracy: float
    test_accuracy: float
    cache_path: Path
    from_cache: bool
    train_losses: list[float] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def max_length(self) -> int:
        """The sequence length the teacher was trained and evaluated at (picked from the data)."""
        return int((self.meta.get("settings") or {}).get("max_length") or 128)

    @property
    def source(self) -> str:
        """"fine_tuned" (a mean-pooling head trained here), "given" (the folder's own head, used
        unchanged) or "head" (a folder that already held slimformer's head)."""
        return str(self.meta.get("source", "fine_tuned"))

    @property
    def fine_tuned(self) -> bool:
        """Whether slimformer trained this teacher on the task (now or in a cached earlier job)."""
        return self.source == "fine_tuned"


@contextmanager
def cache_entry_writer(cache_root: Path, entry: Path) -> Iterator[Path]:
    """A temporary folder to fill with a teacher cache entry, renamed into place at the end.

    The caller writes meta.json last: an entry is complete when it has one. A crash never leaves
    half an entry, and when another worker published the same entry first its copy is kept (the
    two are equivalent). On any error the temporary folder is removed.
    """
    cache_root.mkdir(parents=True, exist_ok=True)
    tmp = cache_root / f".tmp-{entry.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        yield tmp
        try:
            os.rename(tmp, entry)
        except OSError:
            if not (entry / "meta.json").is_file():
                raise
            shutil.rmtree(tmp, ignore_errors=True)  # another worker wrote the same entry first
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
