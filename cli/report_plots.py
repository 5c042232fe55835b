"""The figures of ``swarmapply report``, drawn with matplotlib (an optional dependency).

:func:`render` draws the four comparison figures of a set of series (every series overlaid in
each, one colour per series throughout) and returns their encoded bytes; it writes no file, so
the caller can write all of them or none. matplotlib is imported on the first call, with the
non-interactive Agg backend: nothing ever opens a window, and the rest of the command line
works without matplotlib installed (:class:`PlotsUnavailable` says how to install it).

The curves themselves come from :mod:`swarmapply.cli.report_data`; this module only draws.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from typing import Any

from swarmapply.cli.report_data import (
    Series,
    jobs_curves,
    queue_curve,
    summarise,
    utilisation_curve,
    wait_cdf,
)
from swarmapply.errors import PermanentError

#: The figures, by file stem, in the order they are drawn.
FIGURES = ("jobs", "queue", "utilisation", "wait_cdf")

#: Output formats matplotlib writes without extra libraries.
FORMATS = ("png", "svg", "pdf")

_INSTALL = "plots need matplotlib: pip install 'swarmapply[report]'"
_STYLES = ("-", "--", "-.", ":")


class PlotsUnavailable(PermanentError):
    """matplotlib is not installed."""

    def __init__(self) -> None:
        super().__init__(_INSTALL)


def _pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend (no display needed, no window opened)."""
    try:
        import matplotlib
    except ImportError as exc:
        raise PlotsUnavailable() from exc
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def render(series: Sequence[Series], fmt: str = "png") -> dict[str, bytes]:
    """Draws the four figures comparing ``series``.

    Args:
        series: The runs to compare, in legend order.
        fmt: One of :data:`FORMATS`.

    Returns:
        The encoded figures by file name (``jobs.png``, ``queue.png``, ``utilisation.png``,
        ``wait_cdf.png`` for ``fmt="png"``).

    Raises:
        PlotsUnavailable: matplotlib is not installed.
        ValueError: ``fmt`` is not one of :data:`FORMATS`.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown plot format {fmt!r}; expected one of {', '.join(FORMATS)}")
    plt = _pyplot()
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator, PercentFormatter

    colours = [plt.get_cmap("tab10")(i % 10) for i in range(len(series))]
    styles = [_STYLES[(i // 10) % len(_STYLES)] for i in range(len(series))]
    # earlier series drawn wider, so a later one drawn on top of the same curve leaves it visible
    widths = [_width(i, len(series)) for i in range(len(series))]
    end = max((s.end for s in series), default=0.0) or 1.0
    drawn: dict[str, bytes] = {}
    rc = {"font.size": 11, "axes.titlesize": 13, "legend.fontsize": 9, "axes.grid": True}
    with plt.rc_context(rc):
        # 1. jobs submitted and finished
        fig, ax = _figure(plt)
        for s, colour, width in zip(series, colours, widths, strict=True):
            submitted, finished = jobs_curves(s)
            ax.step(*submitted, where="post", color=colour, linestyle="-", linewidth=width)
            ax.step(*finished, where="post", color=colour, linestyle="--", linewidth=width)
        ax.set_title("Jobs submitted and finished")
        ax.set_xlabel("time since start (s)")
        ax.set_ylabel("jobs (cumulative)")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlim(0, end)
        ax.set_ylim(bottom=0)
        kinds = [
            Line2D([], [], color="black", linestyle="-", label="submitted"),
            Line2D([], [], color="black", linestyle="--", label="finished"),
        ]
        _legend(fig, series, colours, ["-"] * len(series), widths)
        fig.legend(handles=kinds, loc="outside right lower")
        drawn["jobs"] = _encode(plt, fig, fmt)

        # 2. queue length
        fig, ax = _figure(plt)
        for s, colour, style, width in zip(series, colours, styles, widths, strict=True):
            ax.step(*queue_curve(s), where="post", color=colour, linestyle=style, linewidth=width)
        ax.set_title("Queue length (submitted, not yet scheduled)")
        ax.set_xlabel("time since start (s)")
        ax.set_ylabel("jobs queued")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlim(0, end)
        ax.set_ylim(bottom=0)
        _legend(fig, series, colours, styles, widths)
        drawn["queue"] = _encode(plt, fig, fmt)

        # 3. utilisation
        fig, ax = _figure(plt)
        missing = []
        for s, colour, style, width in zip(series, colours, styles, widths, strict=True):
            xs, ys = utilisation_curve(s)
            if not xs:
                missing.append(s.label)
            ax.step(xs, ys, where="post", color=colour, linestyle=style, linewidth=width)
        ax.set_title("Core utilisation (cores in use / capacity)")
        ax.set_xlabel("time since start (s)")
        ax.set_ylabel("cores in use (% of capacity)")
        ax.yaxis.set_major_formatter(PercentFormatter(100))
        ax.set_xlim(0, end)
        ax.set_ylim(0, 105)
        if missing:
            ax.text(
                0.99,
                0.02,
                "capacity unknown: " + ", ".join(missing),
                transform=ax.transAxes,
                ha="right",
                va="bottom",
                fontsize=8,
            )
        _legend(fig, series, colours, styles, widths)
        drawn["utilisation"] = _encode(plt, fig, fmt)

        # 4. wait CDF
        fig, ax = _figure(plt)
        cdfs = [wait_cdf(s) for s in series]
        right = _pad(max((xs[-1] for xs, _ in cdfs if xs), default=0.0))
        for (xs, ys), colour, style, width in zip(cdfs, colours, styles, widths, strict=True):
            if xs:
                # from 0 % at the shortest wait, up to 100 % held to the right edge
                ax.step(
                    [xs[0], *xs, right],
                    [0.0, *ys, ys[-1]],
                    where="post",
                    color=colour,
                    linestyle=style,
                    linewidth=width,
                )
        ax.set_title("Wait time distribution (submit to scheduled)")
        ax.set_xlabel("wait (s)")
        ax.set_ylabel("scheduled jobs (%, cumulative)")
        ax.yaxis.set_major_formatter(PercentFormatter(100))
        # a little room left of 0, so a step at a wait of 0 is not hidden by the axis
        ax.set_xlim(-0.02 * right, right)
        ax.set_ylim(0, 105)
        labels = []
        for s in series:
            summary = summarise(s)
            note = f", {summary.unscheduled} never scheduled" if summary.unscheduled else ""
            labels.append(f"{s.label} (n={summary.jobs - summary.unscheduled}{note})")
        _legend(fig, series, colours, styles, widths, labels)
        drawn["wait_cdf"] = _encode(plt, fig, fmt)
    return {f"{name}.{fmt}": drawn[name] for name in FIGURES}


def _figure(plt: Any) -> tuple[Any, Any]:
    fig, ax = plt.subplots(figsize=(10, 5), layout="constrained")
    return fig, ax


def _pad(longest: float) -> float:
    """An x limit a little past ``longest`` so the last step is visible (1 s when 0)."""
    return longest * 1.05 if longest > 0 and math.isfinite(longest) else 1.0


def _width(index: int, count: int) -> float:
    """Line widths from 2.8 (first series) down to 1.2 (last)."""
    return 1.2 + 1.6 * (count - 1 - index) / (count - 1) if count > 1 else 2.0


def _legend(
    fig: Any,
    series: Sequence[Series],
    colours: Sequence[Any],
    styles: Sequence[Any],
    widths: Sequence[float],
    labels: Sequence[str] | None = None,
) -> None:
    """A legend of one entry per series, right of the axes (never over the curves)."""
    from matplotlib.lines import Line2D

    names = labels if labels is not None else [s.label for s in series]
    handles = [
        Line2D([], [], color=colour, linestyle=style, linewidth=width, label=name)
        for name, colour, style, width in zip(names, colours, styles, widths, strict=True)
    ]
    fig.legend(handles=handles, loc="outside right upper", ncols=2 if len(handles) > 12 else 1)


def _encode(plt: Any, fig: Any, fmt: str) -> bytes:
    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format=fmt, dpi=120)
    finally:
        plt.close(fig)
    return buffer.getvalue()
