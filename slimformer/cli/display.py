"""How the remote commands draw jobs for a person: tables, a progress bar, short durations.

Kept apart from the commands so the wording of the output can change without touching the
requests, and the requests without touching the output.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any, TextIO

from slimformer.client import Job, SlimformerClient

__all__ = ["clock", "eta", "format_table", "num", "progress_line", "watch"]


def format_table(header: tuple[str, ...], rows: list[tuple[Any, ...]]) -> str:
    """Columns padded to their widest cell, a rule under the header."""
    cells = [tuple(str(v) for v in row) for row in [header, *rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def watch(client: SlimformerClient, job: Job, interval: float, out: TextIO) -> Job:
    """Draw a progress bar (stage, percent, ETA) and new events until the job reaches a final status."""
    seen = {e.id for e in job.events}
    tty = out.isatty()
    last: tuple[Any, ...] = ()
    while True:
        for event in job.events:
            if event.id not in seen:
                seen.add(event.id)
                out.write(("\r\033[K" if tty else "") + f"  {clock(event.at)}  {event.message}\n")
        line = progress_line(job)
        # Into a file or pipe: a line when the stage, status or whole percent changes, not per ETA tick.
        key = (job.status, job.stage, int(100 * job.progress))
        if tty:
            out.write("\r\033[K" + line)
        elif key != last:
            out.write(line + "\n")
        out.flush()
        last = key
        if job.finished:
            if tty:
                out.write("\n")
            return job
        time.sleep(interval)
        job = client.get_job(job.id)


def progress_line(job: Job, width: int = 30) -> str:
    """`[#########.............]  31%  blocks  eta 2m05s  running`."""
    filled = int(round(width * job.progress))
    remaining = f"  eta {eta(job.eta_seconds)}" if job.status == "running" else ""
    return f"[{'#' * filled}{'.' * (width - filled)}] {100 * job.progress:3.0f}%  {job.stage or '-'}{remaining}  " \
           f"{job.status}"


def eta(seconds: float | None) -> str:
    """'45s', '2m05s', '1h07m'; '?' when the server has no estimate yet."""
    if seconds is None:
        return "?"
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def clock(at: datetime | None) -> str:
    """'14:03:27': the time of day an event happened, as the server recorded it."""
    return at.strftime("%H:%M:%S") if at else "--:--:--"


def num(value: float | int | None, fmt: str) -> str:
    return "-" if value is None else fmt.format(value)
