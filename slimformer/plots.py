"""The Pareto plot of a job: accuracy against measured latency, Pareto-optimal candidates highlighted,
reference models (the teacher, baselines) marked. Used by the API and by `slimformer run`.

Rendered with matplotlib's object API on the Agg canvas (no pyplot, no display, no global figure
state); matplotlib is imported on first use so the API starts without it.
"""

from __future__ import annotations

import io
import threading
from dataclasses import dataclass
from typing import Literal

ImageFormat = Literal["svg", "png"]
MEDIA_TYPES: dict[str, str] = {"svg": "image/svg+xml", "png": "image/png"}

# matplotlib's font cache and rcParams are process-global; one render at a time keeps them sane.
_render_lock = threading.Lock()


@dataclass(frozen=True)
class PlotPoint:
    """One measured candidate."""

    candidate_id: str
    latency_ms: float
    accuracy: float
    pareto: bool


@dataclass(frozen=True)
class ReferencePoint:
    """A model to compare against: the teacher, a truncated teacher, a random-search finalist."""

    label: str
    latency_ms: float
    accuracy: float
    marker: str = "s"


def render_pareto(
    points: list[PlotPoint],
    fmt: ImageFormat,
    title: str,
    accuracy_label: str,
    references: list[ReferencePoint] | None = None,
) -> bytes:
    """The plot as SVG or PNG bytes.

    Args:
        points: measured candidates (may be empty: the image then says none are measured yet).
        fmt: "svg" or "png".
        title: plot title (the job's name or id).
        accuracy_label: y axis label, e.g. "test accuracy".
        references: other models to mark, each with its own label in the legend.

    Returns:
        The encoded image.
    """
    from matplotlib import rc_context
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    # SVG text as <text>, not glyph outlines: smaller, searchable, and quicker to write.
    with _render_lock, rc_context({"svg.fonttype": "none"}):
        fig = Figure(figsize=(6.4, 4.4), dpi=100)
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        others = [p for p in points if not p.pareto]
        front = sorted((p for p in points if p.pareto), key=lambda p: p.latency_ms)
        if others:
            ax.scatter([p.latency_ms for p in others], [p.accuracy for p in others], s=22, color="#9aa5b1",
                       label="candidate")
        if front:
            ax.plot([p.latency_ms for p in front], [p.accuracy for p in front], color="#d9480f", linewidth=1,
                    drawstyle="steps-post", zorder=2)
            ax.scatter([p.latency_ms for p in front], [p.accuracy for p in front], s=40, color="#d9480f",
                       zorder=3, label="Pareto-optimal")
        by_label: dict[str, list[ReferencePoint]] = {}
        for ref in references or []:
            by_label.setdefault(ref.label, []).append(ref)
        for i, (label, refs) in enumerate(by_label.items()):
            ax.scatter([r.latency_ms for r in refs], [r.accuracy for r in refs], s=44, marker=refs[0].marker,
                       color=["#1c7ed6", "#37b24d", "#7048e8", "#f59f00"][i % 4], zorder=4, label=label)
        if not points and not references:
            ax.text(0.5, 0.5, "no measured candidates yet", ha="center", va="center", transform=ax.transAxes)
        else:
            ax.legend(loc="best", fontsize="small")
        ax.set_xlabel("measured latency (ms)")
        ax.set_ylabel(accuracy_label)
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
        # Fixed margins: tight_layout measures every label and costs more than the drawing itself.
        fig.subplots_adjust(left=0.12, right=0.97, bottom=0.12, top=0.92)
        buf = io.BytesIO()
        # No creation date in the file: the same candidates give the same bytes.
        metadata = {"Date": None} if fmt == "svg" else {"Software": None}
        fig.savefig(buf, format=fmt, metadata=metadata)
    return buf.getvalue()
