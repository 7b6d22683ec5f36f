"""One exception root for slimformer, so callers can catch everything we raise on purpose.

Each subclass names a kind of mistake; the message names the exact thing that was wrong
(a field of an architecture, a file and line of a data set, a budget and its smallest value).
"""

from __future__ import annotations


class SlimformerError(Exception):
    """Root of every error slimformer raises on purpose."""


class ArchError(SlimformerError, ValueError):
    """An architecture is not valid for its search space. The message names the bad field."""


class SpaceError(SlimformerError, ValueError):
    """A search space definition is inconsistent."""


class TeacherError(SlimformerError):
    """A teacher model cannot be used: missing, not BERT-family, or unreadable weights."""


class DataError(SlimformerError, ValueError):
    """A data set is malformed. The message names the file, the line and the problem."""


class CheckpointError(SlimformerError):
    """A checkpoint does not belong to the run that tries to resume from it."""


class InfeasibleBudgetError(SlimformerError, ValueError):
    """A budget is below what the cheapest architecture in the space can reach.

    Attributes:
        smallest: the smallest achievable value of each budget, e.g. {"params_m": 4.1}.
    """

    def __init__(self, message: str, smallest: dict[str, float]):
        super().__init__(message)
        self.smallest = smallest


class ModelFormatError(SlimformerError):
    """An exported model folder is incomplete or does not match its config."""
