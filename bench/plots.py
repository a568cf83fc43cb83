"""Report figures: matplotlib Figures built from report data, rendered to PNG apart.

Each builder returns a :class:`~matplotlib.figure.Figure` (object API on the Agg canvas:
headless, no pyplot state), so what is drawn can be inspected; :func:`figure_png`
renders one. Every figure follows the same rules:

- one colour per series across the whole report (:func:`series_colours`, passed in);
- the legend outside the axes, so it never covers data; a long series name breaks onto
  several legend lines after a " /" or a "," (the series keeps its name);
- value axes from 0 (AUC bars from 0.5, the AUC of a random guess);
- medians where several cells share a point; every bar drawn is a measured one, centred
  on its own label.

Input frames have a ``series`` column (the legend entry), the value columns, and for
bars a ``tick`` column (the bar's label); curve figures read a list per row (a value per
step, or [x, y] pairs).
"""
from __future__ import annotations

import io
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd
from matplotlib import colormaps, ticker
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

# Lines join neighbouring table sizes less than this factor apart; points further apart
# are markers only (nothing was measured between them).
MAX_JOIN_RATIO = 10.0
AUC_FLOOR = 0.5  # AUC of a random guess: where AUC bars start
UPRIGHT_TICKS = 5  # bar charts with more bars slant their labels
LEGEND_WIDTH = 44  # characters of a legend line: longer series names break after a " / "


def series_colours(names: Iterable[str]) -> dict[str, tuple]:
    """One colour per distinct name, in order of first appearance (tab10, then tab20)."""
    names = list(dict.fromkeys(names))
    palette = colormaps["tab10" if len(names) <= 10 else "tab20"].colors
    return {name: palette[i % len(palette)] for i, name in enumerate(names)}


def joined_runs(xs: Sequence[float], ratio: float = MAX_JOIN_RATIO) -> list[list[int]]:
    """Indices of ascending ``xs`` in runs whose neighbours are less than ``ratio`` apart."""
    runs: list[list[int]] = []
    for i, x in enumerate(xs):
        if runs and x < xs[runs[-1][-1]] * ratio:
            runs[-1].append(i)
        else:
            runs.append([i])
    return runs


def line_figure(data: pd.DataFrame, y: str, *, colours: dict, title: str, ylabel: str,
                lower: str | None = None, x: str = "table_size",
                xlabel: str = "table size (rows, log scale)") -> Figure:
    """``y`` against ``x`` (log x), one series per ``series`` value.

    Markers at every point; lines only between neighbours less than
    :data:`MAX_JOIN_RATIO` apart; an error bar down to the ``lower`` column when given;
    a value label on a series of one point.
    """
    points = _medians(data, ["series", x], [y] + ([lower] if lower else []))
    fig, ax = _axes(title, xlabel, ylabel)
    for name, line in points.groupby("series", sort=True):
        line = line.sort_values(x)
        xs, ys, colour = line[x].to_numpy(), line[y].to_numpy(), colours[name]
        below = _down_to(ys, line[lower].to_numpy()) if lower else None
        ax.errorbar(xs, ys, yerr=below, fmt="o", color=colour, capsize=3, label=name)
        for run in joined_runs(xs):
            if len(run) > 1:
                ax.plot(xs[run], ys[run], color=colour)
        if len(line) == 1:
            _value_label(ax, xs[0], ys[0], colour)
    ax.set_xscale("log")
    ax.grid(True, which="both", alpha=0.3)
    return _finish(fig, ax, bottom=0)


def bar_figure(data: pd.DataFrame, y: str, *, colours: dict, title: str, ylabel: str,
               lower: str | None = None, xlabel: str = "") -> Figure:
    """One bar per distinct (``series``, ``tick``) in order of appearance, centred on
    its tick, with an error bar down to ``lower`` when given."""
    bars = _medians(data, ["series", "tick"], [y] + ([lower] if lower else []))
    fig, ax = _axes(title, xlabel, ylabel)
    _bars(ax, bars, y, colours)
    if lower:
        values = bars[y].to_numpy()
        ax.errorbar(range(len(bars)), values, fmt="none", ecolor="black", capsize=4,
                    yerr=_down_to(values, bars[lower].to_numpy()))
    return _finish(fig, ax, bottom=0)


def auc_figure(data: pd.DataFrame, *, colours: dict, title: str) -> Figure:
    """Measured AUC as bars from :data:`AUC_FLOOR`, one per (``series``, ``tick``), the
    Bayes-optimal AUC (``bayes_auc``) as a black mark across each bar, the gap above."""
    bars = _medians(data, ["series", "tick"], ["auc", "bayes_auc"])
    fig, ax = _axes(title, "", "test AUC")
    positions = range(len(bars))
    _bars(ax, bars, "auc", colours, bottom=AUC_FLOOR)
    if bars["bayes_auc"].notna().any():
        ax.hlines(bars["bayes_auc"], [p - 0.35 for p in positions],
                  [p + 0.35 for p in positions], colors="black", linewidth=2.5,
                  label="Bayes-optimal AUC")
    for p, (auc, bayes) in zip(positions, zip(bars["auc"], bars["bayes_auc"])):
        if pd.notna(bayes):
            ax.annotate(f"gap {bayes - auc:.3f}", (p, max(auc, bayes)), ha="center",
                        xytext=(0, 4), textcoords="offset points", fontsize="x-small")
    values = pd.concat([bars["auc"], bars["bayes_auc"]])
    ax.set_ylim(min(AUC_FLOOR, values.min()), min(1.0, values.max() + 0.05))
    return _finish(fig, ax)


def curve_figure(data: pd.DataFrame, y: str, *, colours: dict, title: str, ylabel: str,
                 xlabel: str = "training step", top: float | None = None) -> Figure:
    """The list in column ``y`` of each row against its position (1, 2, ...), one line
    per ``series``: the element-wise median of the series' rows, cut to the shortest.
    The value axis runs from 0 (to ``top`` when given: 1 for rates)."""
    fig, ax = _axes(title, xlabel, ylabel)
    for name, rows in data.dropna(subset=[y]).groupby("series", sort=True):
        length = min(len(values) for values in rows[y])
        if length:
            values = np.median([values[:length] for values in rows[y]], axis=0)
            ax.plot(np.arange(1, length + 1), values, color=colours[name], label=name)
    ax.grid(True, alpha=0.3)
    _finish(fig, ax, bottom=0)
    if top is not None:
        ax.set_ylim(0, top)
    return fig


def learning_curve_figure(data: pd.DataFrame, *, colours: dict, title: str) -> Figure:
    """Gap to the Bayes-optimal AUC (``gap``) against training rows (``rows``, log x),
    one colour per ``series``: the median over a point's seeds as a line, their lowest
    and highest as a band."""
    fig, ax = _axes(title, "training rows (log scale)", "gap to the Bayes-optimal AUC")
    for name, cells in data.groupby("series", sort=True):
        points = cells.groupby("rows")["gap"].agg(["median", "min", "max"]).sort_index()
        xs, colour = points.index.to_numpy(), colours[name]
        ax.plot(xs, points["median"], "o-", color=colour, label=name)
        ax.fill_between(xs, points["min"], points["max"], color=colour, alpha=0.2,
                        linewidth=0)
    ax.set_xscale("log")
    ax.grid(True, which="both", alpha=0.3)
    return _finish(fig, ax, bottom=0)


def online_quality_figure(data: pd.DataFrame, *, colours: dict, title: str) -> Figure:
    """Progressive AUC per tenth of the stream, one colour per ``series``: the online
    model (solid), the model frozen after the first fifth (dashed) and the Bayes optimum
    (dotted), each the element-wise median of the series' rows (columns
    ``online_auc_curve``, ``online_frozen_auc_curve``, ``online_bayes_auc_curve``; None
    where undefined). The AUC axis starts at 0.5."""
    fig, ax = _axes(title, "tenth of the stream", "AUC")
    styles = (("online_auc_curve", "-", "online"), ("online_frozen_auc_curve", "--", "frozen"),
              ("online_bayes_auc_curve", ":", "Bayes optimum"))
    for name, rows in data.groupby("series", sort=True):
        for column, style, what in styles:
            curves = [np.array(c, dtype=float) for c in rows[column] if c is not None]
            if not curves:
                continue
            length = min(len(c) for c in curves)
            values = [np.median(col[~np.isnan(col)]) if (~np.isnan(col)).any() else np.nan
                      for col in np.array([c[:length] for c in curves]).T]
            ax.plot(np.arange(1, length + 1), values, linestyle=style, color=colours[name],
                    label=f"{name}: {what}")
    ax.grid(True, alpha=0.3)
    _finish(fig, ax)
    ax.set_ylim(bottom=AUC_FLOOR)
    return fig


def miss_ratio_figure(data: pd.DataFrame, curve: str, *, at: str, marks: dict[str, tuple],
                      colours: dict, title: str, xlabel: str) -> Figure:
    """Miss-ratio curves: column ``curve`` of each row holds [x, miss ratio] pairs, one
    line per ``series`` (the median miss ratio at each x), log x, y from 0 to 1. Each
    row's miss ratios in the columns of ``marks`` ({legend label: (column, marker)}) are
    marked at x = column ``at`` in the series' colour; the legend shows each marker once,
    in black."""
    fig, ax = _axes(title, xlabel, "miss ratio")
    measured = data.dropna(subset=[curve])
    for name, rows in measured.groupby("series", sort=True):
        pairs = pd.DataFrame([pair for pairs in rows[curve] for pair in pairs],
                             columns=["x", "miss"]).groupby("x")["miss"].median()
        ax.plot(pairs.index, pairs.to_numpy(), color=colours[name], marker=".", label=name)
    for label, (column, marker) in marks.items():
        points = _medians(data, ["series", at], [column])
        for name, point in points.groupby("series", sort=True):
            ax.plot(point[at], point[column], marker, color=colours[name], markersize=8,
                    markeredgecolor="black", linestyle="none")
        if not points.empty:
            ax.plot([], [], marker, color="black", linestyle="none", label=label)
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(_PercentLog())
    ax.xaxis.set_minor_formatter(_PercentLog(labelOnlyBase=False,
                                             minor_thresholds=(2, 0.5)))
    ax.grid(True, which="both", alpha=0.3)
    _finish(fig, ax)
    ax.set_ylim(0, 1)
    return fig


class _PercentLog(ticker.LogFormatter):
    """Log-axis labels of shares as percentages (20%, 100%) where LogFormatter puts a
    label."""

    def __call__(self, x, pos=None):
        return f"{100 * x:g}%" if super().__call__(x, pos) else ""


def figure_png(fig: Figure) -> bytes:
    """The figure as PNG bytes."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def _medians(data: pd.DataFrame, keys: list[str], values: list[str]) -> pd.DataFrame:
    """Median of ``values`` per distinct ``keys`` (in order of appearance), rows that
    lack the first value dropped."""
    measured = data.dropna(subset=[values[0], *keys])
    return measured.groupby(keys, sort=False)[values].median().reset_index()


def _down_to(values: np.ndarray, lower: np.ndarray) -> np.ndarray:
    """Error bar lengths (2 x n: below, above) from each value down to ``lower``."""
    return np.vstack([values - lower, np.zeros_like(values)])


def _bars(ax, bars: pd.DataFrame, y: str, colours: dict, bottom: float = 0.0) -> None:
    """Bars at 0..n-1, one call (one legend entry) per series, ticks centred on them.
    Beyond :data:`UPRIGHT_TICKS` bars, labels go on one line each, slanted."""
    position = pd.Series(range(len(bars)), index=bars.index)
    for name, group in bars.groupby("series", sort=False):
        ax.bar(position[group.index], group[y] - bottom, bottom=bottom, width=0.6,
               color=colours[name], label=name)
    if len(bars) <= UPRIGHT_TICKS:
        ax.set_xticks(range(len(bars)), bars["tick"])
    else:
        ax.set_xticks(range(len(bars)), bars["tick"].str.replace("\n", ", "), rotation=30,
                      ha="right", rotation_mode="anchor")
        ax.figure.set_figheight(ax.figure.get_figheight() + 1.5)  # room for them
    ax.grid(True, axis="y", alpha=0.3)


def _value_label(ax, x: float, y: float, colour) -> None:
    ax.annotate(f"{y:,.0f}" if abs(y) >= 100 else f"{y:.3g}", (x, y), xytext=(6, 4),
                textcoords="offset points", fontsize="small", color=colour)


def _axes(title: str, xlabel: str, ylabel: str):
    fig = Figure(figsize=(9.5, 4.2), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    return fig, ax


def _finish(fig: Figure, ax, bottom: float | None = None) -> Figure:
    """Value axis from ``bottom`` (when given) and the legend outside, right of the axes."""
    if bottom is not None:
        ax.margins(y=0.1)  # room above the top point for its label
        ax.set_ylim(bottom=bottom)
    handles, labels = ax.get_legend_handles_labels()
    ax.legend(handles, [legend_label(label) for label in labels], loc="upper left",
              bbox_to_anchor=(1.02, 1.0), borderaxespad=0, fontsize="small")
    return fig


def legend_label(name: str, width: int = LEGEND_WIDTH) -> str:
    """``name`` as legend text on lines of at most ``width`` characters where they fit:
    broken after a " /" between its parts, then after a "," inside a part still too
    long."""
    return "\n".join(line for wide in _wrapped(name.split(" / "), " / ", width)
                     for line in _wrapped(wide.split(", "), ", ", width))


def _wrapped(pieces: list[str], separator: str, width: int) -> list[str]:
    """``pieces`` joined by ``separator`` into lines of at most ``width`` characters
    where they fit; a broken line ends in the separator, less its trailing space."""
    lines = [pieces[0]]
    for piece in pieces[1:]:
        if len(lines[-1]) + len(separator) + len(piece) > width:
            lines[-1] += separator.rstrip()
            lines.append(piece)
        else:
            lines[-1] += separator + piece
    return lines
