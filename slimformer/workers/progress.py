"""How a running job tells the world what it is doing, and how it learns it should stop.

The pipeline only talks to a `Reporter`. The CLI's reporter draws progress bars; the service's
reporter (workers/) writes stage, progress, events and candidates to the database and raises
`JobCancelled` from `check_cancelled` when the user cancelled the job.
"""

from __future__ import annotations

import sys
from typing import Any

from slimformer.errors import SlimformerError


class JobCancelled(SlimformerError):
    """The job was cancelled; the pipeline stops at the next check."""


class Reporter:
    """Base reporter: silent. Subclasses override what they care about."""

    def stage_started(self, stage: str, index: int, total: int) -> None: ...

    def progress(self, stage: str, fraction: float, message: str = "") -> None: ...

    def stage_done(self, stage: str, summary: dict[str, Any]) -> None: ...

    def candidate(self, record: dict[str, Any]) -> None: ...

    def event(self, message: str) -> None: ...

    def warning(self, message: str) -> None:
        """Something the user should know went wrong without failing the job (an event by default)."""
        self.event(f"warning: {message}")

    def latency_table(self, key: str, table: dict[str, Any], space: Any) -> None:
        """A latency table this job built or checked (`LatencyTable.to_dict()`), for the service's records."""

    def check_cancelled(self) -> None: ...


class ConsoleReporter(Reporter):
    """One tqdm bar per stage on stderr, events printed above the bars."""

    def __init__(self, stream: Any = None):
        self.stream = stream or sys.stderr
        self.bar: Any = None

    def stage_started(self, stage: str, index: int, total: int) -> None:
        from tqdm import tqdm

        self._close()
        self.bar = tqdm(total=1000, desc=f"[{index + 1}/{total}] {stage}", file=self.stream, leave=True,
                        bar_format="{desc:<24} {percentage:3.0f}%|{bar:30}| {elapsed} {postfix}")

    def progress(self, stage: str, fraction: float, message: str = "") -> None:
        if self.bar is not None:
            self.bar.n = int(1000 * max(0.0, min(1.0, fraction)))
            if message:
                self.bar.set_postfix_str(message[:60], refresh=False)
            self.bar.refresh()

    def stage_done(self, stage: str, summary: dict[str, Any]) -> None:
        self.progress(stage, 1.0)
        self._close()

    def event(self, message: str) -> None:
        if self.bar is not None:
            self.bar.write(message, file=self.stream)
        else:
            print(message, file=self.stream)

    def _close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
