"""The report's figures (bench/plots.py), checked on the matplotlib Figure objects."""
import pandas as pd
import pytest
from matplotlib.colors import to_rgba

from bench.plots import (AUC_FLOOR, LEGEND_WIDTH, UPRIGHT_TICKS, auc_figure, bar_figure,
                         curve_figure, figure_png, joined_runs, legend_label, line_figure,
                         miss_ratio_figure, series_colours)

COLOURS = series_colours(["a", "b", "c"])


def cells(*points: tuple) -> pd.DataFrame:
    """(series, table size, samples/s) -> a frame; samples/s at p90 is 80% of it."""
    frame = pd.DataFrame(points, columns=["series", "table_size", "samples_per_s"])
    return frame.assign(at_p90=frame["samples_per_s"] * 0.8)


def joined_lines(ax) -> list[list[float]]:
    """x values of every drawn line (not the marker-only data lines of errorbar)."""
    return [list(line.get_xdata()) for line in ax.get_lines()
            if line.get_linestyle() not in ("None", "none", "")]


def legend_outside(fig) -> bool:
    fig.canvas.draw()
    ax = fig.axes[0]
    legend, axes = ax.get_legend().get_window_extent(), ax.get_window_extent()
    return legend.x0 >= axes.x1 and legend.x1 <= fig.bbox.x1


def test_joined_runs_break_at_ten_times():
    assert joined_runs([1, 5, 60, 100, 1e4]) == [[0, 1], [2, 3], [4]]
    assert joined_runs([3e4, 1e7]) == [[0], [1]]
    assert joined_runs([]) == []


def test_line_figure_joins_only_near_table_sizes():
    frame = cells(("a", 1e4, 900.0), ("a", 3e4, 800.0), ("a", 1e7, 300.0),
                  ("b", 3e4, 500.0), ("b", 2e5, 450.0))
    ax = line_figure(frame, "samples_per_s", colours=COLOURS, title="t",
                     ylabel="samples/s").axes[0]
    lines = joined_lines(ax)
    assert sorted(lines) == [[1e4, 3e4], [3e4, 2e5]]
    assert not any(1e7 in line for line in lines)
    markers = [list(line.get_xdata()) for line in ax.get_lines() if line not in lines]
    assert any(1e7 in xs for xs in markers)  # the far point is still drawn, unjoined


def test_line_figure_starts_at_zero_with_legend_outside():
    frame = cells(("a", 1e4, 900.0), ("a", 3e4, 800.0))
    fig = line_figure(frame, "samples_per_s", colours=COLOURS, title="t", ylabel="y")
    assert fig.axes[0].get_ylim()[0] == 0
    assert legend_outside(fig)


def test_line_figure_error_bars_reach_down_to_the_p90_rate():
    frame = cells(("a", 1e4, 1000.0), ("a", 3e4, 500.0))
    ax = line_figure(frame, "samples_per_s", lower="at_p90", colours=COLOURS, title="t",
                     ylabel="y").axes[0]
    segments = [seg.tolist() for container in ax.containers
                for seg in container.lines[2][0].get_segments()]
    assert segments == [[[1e4, 800.0], [1e4, 1000.0]], [[3e4, 400.0], [3e4, 500.0]]]


def test_a_series_of_one_point_is_labelled_with_its_value():
    frame = cells(("a", 1e4, 900.0), ("a", 3e4, 800.0), ("b", 1e5, 12345.0))
    ax = line_figure(frame, "samples_per_s", colours=COLOURS, title="t", ylabel="y").axes[0]
    assert [text.get_text() for text in ax.texts] == ["12,345"]


def test_repeated_cells_are_one_median_point():
    frame = cells(("a", 1e4, 900.0), ("a", 1e4, 1000.0), ("a", 1e4, 2000.0),
                  ("a", 3e4, 500.0))
    ax = line_figure(frame, "samples_per_s", colours=COLOURS, title="t", ylabel="y").axes[0]
    assert [list(line.get_ydata()) for line in ax.get_lines()
            if line.get_linestyle() == "-"] == [[1000.0, 500.0]]


def test_bar_figure_draws_only_measured_bars_centred_on_their_labels():
    frame = cells(("a", 1e4, 900.0), ("b", 1e4, 400.0), ("a", 1e5, 700.0))
    frame["tick"] = ["standalone x1", "hybrid x2", "standalone x1\n1e5"]
    fig = bar_figure(frame, "samples_per_s", lower="at_p90", colours=COLOURS, title="t",
                     ylabel="y")
    ax = fig.axes[0]
    bars = sorted(ax.patches, key=lambda bar: bar.get_x())
    assert len(bars) == 3
    assert [b.get_x() + b.get_width() / 2 for b in bars] == pytest.approx([0, 1, 2])
    assert list(ax.get_xticks()) == [0, 1, 2]
    assert [t.get_text() for t in ax.get_xticklabels()] == list(frame["tick"])
    assert [b.get_height() for b in bars] == [900.0, 400.0, 700.0]
    assert ax.get_ylim()[0] == 0 and legend_outside(fig)
    errors = ax.containers[-1].lines[2][0].get_segments()
    assert [seg[:, 1].tolist() for seg in errors] == [[720.0, 900.0], [320.0, 400.0],
                                                      [560.0, 700.0]]


def test_many_bars_get_one_line_slanted_labels_still_centred():
    count = UPRIGHT_TICKS + 1
    frame = cells(*(("a", 1e4 * (i + 1), 100.0 * (i + 1)) for i in range(count)))
    frame["tick"] = [f"standalone x1\n{i} rows" for i in range(count)]
    ax = bar_figure(frame, "samples_per_s", colours=COLOURS, title="t", ylabel="y").axes[0]
    labels = ax.get_xticklabels()
    assert [t.get_text() for t in labels] == [f"standalone x1, {i} rows" for i in range(count)]
    assert {t.get_rotation() for t in labels} == {30}
    centres = sorted(b.get_x() + b.get_width() / 2 for b in ax.patches)
    assert centres == pytest.approx(list(ax.get_xticks()))


def test_each_series_keeps_its_colour_in_line_and_bar_figures():
    colours = series_colours(["b", "a", "b", "c"])
    assert list(colours) == ["b", "a", "c"] and len(set(colours.values())) == 3
    frame = cells(("a", 1e4, 900.0), ("a", 3e4, 800.0), ("b", 1e4, 400.0))
    line = line_figure(frame, "samples_per_s", colours=colours, title="t", ylabel="y")
    bars = bar_figure(frame.assign(tick=["x", "y", "z"]), "samples_per_s",
                      colours=colours, title="t", ylabel="y")
    for fig in (line, bars):
        handles, labels = fig.axes[0].get_legend_handles_labels()
        for handle, label in zip(handles, labels):
            artist = handle[0] if hasattr(handle, "__getitem__") else handle
            colour = (artist.get_color() if hasattr(artist, "get_color")
                      else artist.get_facecolor())
            assert to_rgba(colour) == to_rgba(colours[label])


def test_auc_figure_bars_from_a_random_guess_with_the_bayes_optimum_marked():
    frame = pd.DataFrame({"series": ["a", "b"], "tick": ["x", "y"], "auc": [0.75, 0.70],
                          "bayes_auc": [0.80, 0.80]})
    ax = auc_figure(frame, colours=COLOURS, title="t").axes[0]
    assert [b.get_y() for b in ax.patches] == [AUC_FLOOR, AUC_FLOOR]
    assert [b.get_y() + b.get_height() for b in ax.patches] == pytest.approx([0.75, 0.70])
    marks = ax.collections[0].get_segments()
    assert [seg[:, 1].tolist() for seg in marks] == [[0.80, 0.80], [0.80, 0.80]]
    assert [t.get_text() for t in ax.texts] == ["gap 0.050", "gap 0.100"]
    assert ax.get_ylim()[0] == AUC_FLOOR


def test_figure_png_renders_a_png():
    fig = line_figure(cells(("a", 1e4, 900.0)), "samples_per_s", colours=COLOURS,
                      title="t", ylabel="y")
    assert figure_png(fig).startswith(b"\x89PNG\r\n\x1a\n")


def test_curve_figure_draws_the_median_curve_of_each_series_from_step_one():
    frame = pd.DataFrame({"series": ["a", "a", "a", "b"],
                          "curve": [[0.0, 0.4, 0.8, 0.9], [0.0, 0.6, 0.6],
                                    [0.0, 0.5, 1.0], [0.1, 0.2]]})
    fig = curve_figure(frame, "curve", colours=COLOURS, title="t", ylabel="y", top=1.0)
    ax = fig.axes[0]
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert list(lines["a"].get_xdata()) == [1, 2, 3]  # cut to the shortest curve
    assert list(lines["a"].get_ydata()) == pytest.approx([0.0, 0.5, 0.8])
    assert list(lines["b"].get_ydata()) == pytest.approx([0.1, 0.2])
    assert to_rgba(lines["b"].get_color()) == to_rgba(COLOURS["b"])
    assert ax.get_ylim() == (0, 1) and legend_outside(fig)
    unbounded = curve_figure(frame, "curve", colours=COLOURS, title="t", ylabel="y")
    assert unbounded.axes[0].get_ylim()[0] == 0


def test_miss_ratio_figure_marks_each_cell_on_its_series_curve():
    frame = pd.DataFrame({"series": ["a", "a", "b"],
                          "mrc": [[[0.1, 0.5], [1.0, 0.1]], [[0.1, 0.7], [1.0, 0.1]],
                                  [[0.1, 0.6], [0.5, 0.2]]],
                          "at": [0.3, 0.3, 0.5], "best": [0.2, 0.3, 0.1],
                          "online": [0.35, 0.45, 0.15]})
    fig = miss_ratio_figure(frame, "mrc", at="at", colours=COLOURS, title="t", xlabel="x",
                            marks={"Belady": ("best", "v"), "online": ("online", "o")})
    ax = fig.axes[0]
    curves = {line.get_label(): line for line in ax.get_lines()
              if line.get_label() in ("a", "b")}
    assert list(curves["a"].get_xdata()) == [0.1, 1.0]
    assert list(curves["a"].get_ydata()) == pytest.approx([0.6, 0.1])  # median per x
    marks = [(line.get_marker(), list(line.get_xdata()), list(line.get_ydata()),
              to_rgba(line.get_color())) for line in ax.get_lines()
             if line.get_linestyle() == "None" and len(line.get_xdata())]
    assert marks == [("v", [0.3], [0.25], to_rgba(COLOURS["a"])),
                     ("v", [0.5], [0.1], to_rgba(COLOURS["b"])),
                     ("o", [0.3], [0.4], to_rgba(COLOURS["a"])),
                     ("o", [0.5], [0.15], to_rgba(COLOURS["b"]))]
    handles, labels = ax.get_legend_handles_labels()
    assert labels == ["a", "b", "Belady", "online"]
    assert {to_rgba(h.get_color()) for h in handles[2:]} == {to_rgba("black")}
    assert ax.get_ylim() == (0, 1) and ax.get_xscale() == "log" and legend_outside(fig)
    fig.canvas.draw()
    ticks = [t.get_text() for t in ax.get_xticklabels() + ax.get_xticklabels(minor=True)]
    assert {"10%", "100%"} <= set(ticks) and not any("e" in tick for tick in ticks)


def test_long_series_names_break_in_the_legend_only():
    name = "wide_deep / standalone x1 / hash / cache 30%, host+remote+ssd, lru"
    assert legend_label(name) == ("wide_deep / standalone x1 / hash /\n"
                                  "cache 30%, host+remote+ssd, lru")
    assert legend_label("dcn / hybrid x2 / static") == "dcn / hybrid x2 / static"
    assert legend_label(f"{name}, lookahead 1, host 10 × device") == (
        "wide_deep / standalone x1 / hash /\n"
        "cache 30%, host+remote+ssd, lru, lookahead 1,\nhost 10 × device")
    assert all(len(line) <= LEGEND_WIDTH + 2
               for line in legend_label(" / ".join(["abcdefghij"] * 9)).split("\n"))
    frame = cells((name, 1e4, 900.0), ("a", 1e4, 800.0))
    fig = line_figure(frame, "samples_per_s", colours=series_colours([name, "a"]),
                      title="t", ylabel="y")
    ax = fig.axes[0]
    assert ax.get_legend_handles_labels()[1] == ["a", name]  # the series keeps its name
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["a", legend_label(name)]
