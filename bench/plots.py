"""Report plots as PNG bytes: a metric against table size (one line per configuration)
and grouped bars of a metric by category (e.g. parallel mode).

Uses matplotlib's object API with the Agg canvas (no pyplot, no global backend state), so
it runs headless and does not disturb a caller that uses another backend.
"""
from __future__ import annotations

import io

import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def line_plot_png(frame: pd.DataFrame, y: str, by: list[str], *, title: str, ylabel: str,
                  x: str = "table_size", xlabel: str = "table size (rows)") -> bytes | None:
    """``y`` against ``x`` (log x), one line per distinct ``by`` combination.

    Several cells at the same x in one line (e.g. repeated or differing only in a column
    not in ``by``) are reduced to their median. Returns None when no row has both values.

    Args:
        frame: one row per cell with columns ``x``, ``y`` and ``by``.
        y: the metric column.
        by: the columns whose combination names a line (label ``a / b / c``).
    """
    data = frame.dropna(subset=[x, y])
    if data.empty:
        return None
    points = data.groupby(by + [x], dropna=False)[y].median().reset_index()
    fig, ax = _axes()
    for key, line in points.groupby(by, dropna=False, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        line = line.sort_values(x)
        ax.plot(line[x], line[y], marker="o", label=" / ".join(map(_label, key)))
    ax.set_xscale("log")
    ax.grid(True, which="both", alpha=0.3)
    return _png(fig, ax, title, xlabel, ylabel)


def bar_plot_png(frame: pd.DataFrame, y: str, x: str, by: list[str], *, title: str,
                 ylabel: str, xlabel: str) -> bytes | None:
    """Grouped bars of ``y``: one group per value of ``x`` (in order of appearance), one
    bar per distinct ``by`` combination; medians where several cells coincide. Returns
    None when no row has both values."""
    data = frame.dropna(subset=[x, y])
    if data.empty:
        return None
    points = data.groupby(by + [x], dropna=False, sort=False)[y].median().reset_index()
    groups = list(dict.fromkeys(points[x]))
    series = list(points.groupby(by, dropna=False, sort=True))
    width = 0.8 / len(series)
    fig, ax = _axes()
    for i, (key, bars) in enumerate(series):
        key = key if isinstance(key, tuple) else (key,)
        positions = [groups.index(g) + (i - (len(series) - 1) / 2) * width for g in bars[x]]
        ax.bar(positions, bars[y], width=width, label=" / ".join(map(_label, key)))
    ax.set_xticks(range(len(groups)), groups)
    ax.grid(True, axis="y", alpha=0.3)
    return _png(fig, ax, title, xlabel, ylabel)


def _axes():
    fig = Figure(figsize=(7.5, 4.2), dpi=100)
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def _png(fig: Figure, ax, title: str, xlabel: str, ylabel: str) -> bytes:
    """Label the axes, add the legend and render the figure as PNG bytes."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize="small", loc="best")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def _label(value) -> str:
    """A legend label part: whole floats (sizes read back from JSON) as grouped integers."""
    if isinstance(value, float) and value.is_integer():
        return f"{int(value):,}"
    return str(value)
