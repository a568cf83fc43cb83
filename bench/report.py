"""Comparison report of one or more sweep runs: ``report.md`` and ``report.html``.

Reads ``results/runs/<run-id>.jsonl`` (result records, :mod:`bench.results`, older
schemas migrated), the ``<run-id>.limits.json`` beside each (:mod:`bench.job.limits`:
machine limits measured at each start, resume and end of the run) and the published
figures (:mod:`bench.references`). Sections: summary, quality against the Bayes optimum
and the published Criteo AUCs, throughput and memory, parallel modes, hash tables, the
embedding cache, online learning (its cells appear there only), the PyTorch peer (its
cells appear there and as the throughput table's peer columns only), roofline, skipped and
failed cells, environment (with the limits measurements) and, given several runs, a
cell-by-cell comparison of each later run with the first.

Every record value is read through the declared keys (``SPEC`` and ``METRICS``); a
declared key is a column of the report's frame, and a table column's header is its
key's ``header``. A cell is *loaded* when other processes used more than
:data:`LOADED_CPU_FRACTION` of the machine's CPU while it trained (metric
``other_cpu_fraction``); loaded cells are flagged in the summary and the throughput
table. Figures follow :mod:`bench.plots` (one colour per configuration across the
report); each figure and most tables are numbered and captioned.

The report is built once as a list of blocks and rendered twice: Markdown (tables by
tabulate, figures as ``report.<name>.png`` beside it) and self-contained HTML (inline
CSS, figures as base64 PNG, each table in its own horizontal scroll box so the page
never overflows). Runs with no ``ok`` cell still give a report, without figures.
"""
from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import pandas as pd
from tabulate import tabulate

from bench.job.limits import MEASUREMENT_KEYS, read_limits
from bench.peers import DEFAULT_BACKEND, twin_id
from bench.plots import (MAX_JOIN_RATIO, auc_figure, bar_figure, curve_figure, figure_png,
                         learning_curve_figure, line_figure, miss_ratio_figure,
                         online_quality_figure, series_colours)
from bench.references import format_value, load_published, source_label
from bench.results import (ENV, METRICS, SPEC, STATUSES, metric, now_iso, read_records,
                           spec_value, write_atomic)
from mindrec.config import HOST_ROWS_PER_DEVICE_ROW

SYNTHETIC_DISCLAIMER = (
    "Synthetic-data AUCs are NOT Criteo figures: they cannot be compared with the "
    "published Criteo AUCs. For a synthetic run only the gap to the Bayes-optimal AUC of "
    "the same synthetic test split is meaningful.")
VOCABULARY_NOTE = (
    "Three sizes describe a cell's ids. Generator vocabulary: the distinct categorical "
    "values the synthetic generator draws from, summed over the 26 fields (the 'v' in "
    "the cell id, suite key data.vocab). Data vocabulary: the ids of the converted data: "
    "the values seen more than the threshold (data.threshold) times, one out-of-vocabulary "
    "id per field for all rarer values, and the 13 dense-field ids; Zipf-distributed "
    "values are mostly rare, so it is smaller than the generator's. Table size: the rows "
    "of each embedding table: the data vocabulary, unless the cell sets train.table_size.")
ONLINE_INTRO = (
    "Online cells (docs/online-learning.md): a producer replays the drifting synthetic "
    "stream (its click model drifts and new categorical values appear) at a target rate "
    "through a Kafka-protocol broker; the online trainer predicts each batch before "
    "training on it (progressive validation), trains, and publishes a model version every "
    "interval; a separate serving process applies each version and answers predictions "
    "over HTTP. Targets at 5,000 rows/s with a version every 2 s: freshness p99 under "
    "10 s and a consumer lag that does not grow; on the last tenth of the stream, the "
    "online model's AUC at least 0.01 above the model frozen after the first fifth. "
    "These cells appear in this section only.")
# A cell is "loaded" when other processes used more than this share of the machine's CPU
# while it trained: its speed then understates the code's.
LOADED_CPU_FRACTION = 0.25
_KEYS = {**SPEC, **METRICS}
_NUMERIC = [name for name, key in _KEYS.items() if set(key.types) <= {int, float}]
_BASE = ["run", "cell_id", "status", "reason"]
_MISSING = "—"
_F4 = "{:.4f}"
_FORMATS = {"auc": _F4, "logloss": _F4, "bayes_auc": _F4, "online_frozen_auc": _F4}
_LAYOUT = ("layout", "mode × workers", None)
_CACHE = ("cache", "cache (device, tiers, policy)", None)
_CACHE_ELSEWHERE = "see Embedding cache: each against its no-cache baseline"
_CSS = """body{font:14px/1.45 system-ui,sans-serif;max-width:1240px;margin:2em auto;
padding:0 1em;color:#222}.table{overflow-x:auto;margin:.6em 0 1.2em}
table{border-collapse:collapse;font-size:13px}caption{caption-side:top;text-align:left;
font-style:italic;padding:.2em 0}th,td{border:1px solid #ccc;padding:3px 8px;
text-align:left;vertical-align:top;max-width:30em;overflow-wrap:break-word}
th{background:#f0f0f0}td.num{text-align:right;white-space:nowrap}
tr:nth-child(even) td{background:#fafafa}.note{background:#fff6d6;border-left:4px solid
#e0b000;padding:.5em .8em}pre{background:#f6f6f6;padding:.6em;overflow-x:auto;
font-size:12px}figure{margin:1em 0 1.5em}figcaption{font-style:italic;max-width:60em}
img{max-width:100%;border:1px solid #ddd}h2{border-bottom:1px solid #ddd}"""
_NUMBER_TEXT = re.compile(r"^[+−-]?\d[\d,]*(\.\d+)?%?$")


@dataclass(frozen=True)
class Link:
    """A table cell that links to ``url``: ``[text](url)`` / ``<a href>``."""

    text: str
    url: str


@dataclass(frozen=True)
class _Report:
    """What every section reads: the frame of all records, the runs, the published
    figures and the colour of each configuration."""

    frame: pd.DataFrame
    runs: list[dict]
    published: list[dict]

    @cached_property
    def ok(self) -> pd.DataFrame:
        """The project's cells that trained on a dataset and were measured (online and
        peer cells apart)."""
        frame = self.frame
        return frame[(frame["status"] == "ok") & ~frame["online"]
                     & (frame["backend"] == DEFAULT_BACKEND)]

    @cached_property
    def peer_medians(self) -> pd.DataFrame:
        """The measured peer (PyTorch) cells, one row per run and twin: the medians of
        their repeats."""
        peers = self.frame[(self.frame["status"] == "ok")
                           & (self.frame["backend"] != DEFAULT_BACKEND)]
        return (peers.groupby(["run", "twin"], sort=False)
                .agg(peer_samples_per_s=("samples_per_s", "median"),
                     peer_auc=("auc", "median"),
                     peer_roofline_fraction=("roofline_fraction", "median"),
                     peer_rounds=("cell_id", "count"), peer_variant=("peer_variant", "last"))
                .reset_index())

    def with_peers(self, frame: pd.DataFrame) -> pd.DataFrame:
        """``frame`` with the peer columns of each cell's twin measured in the same run
        (missing where it has none): its samples/s, ours / its samples/s, our AUC − its."""
        both = frame.merge(self.peer_medians, on=["run", "twin"], how="left")
        both.index = frame.index
        return both.assign(peer_ratio=both["samples_per_s"] / both["peer_samples_per_s"],
                           peer_auc_delta=both["auc"] - both["peer_auc"])

    @cached_property
    def online_ok(self) -> pd.DataFrame:
        """The online cells that were measured."""
        return self.frame[(self.frame["status"] == "ok") & self.frame["online"]]

    @property
    def multi(self) -> bool:
        return len(self.runs) > 1

    @cached_property
    def models(self) -> list[str]:
        return list(dict.fromkeys(self.frame["model"].dropna()))

    @cached_property
    def colours(self) -> dict:
        return series_colours(self.ok.sort_values("series")["series"])

    def run_column(self) -> list[tuple]:
        return [("run", "run", None)] if self.multi else []


def load_runs(run_paths: list[Path]) -> tuple[pd.DataFrame, list[dict]]:
    """One row per record (all runs, in the given order; a column per declared spec
    and metric key, plus derived columns) and one dict per run (its records and
    limits)."""
    rows, runs = [], []
    for path in map(Path, run_paths):
        records = read_records(path)
        run_id = records[0]["run_id"] if records else path.name.removesuffix(".jsonl")
        limits = path.with_name(f"{path.name.removesuffix('.jsonl')}.limits.json")
        runs.append({"run": run_id, "path": path, "records": records,
                     "limits": read_limits(limits) if limits.is_file() else None})
        rows += [_row(run_id, record) for record in records]
    frame = pd.DataFrame(rows, columns=[*_BASE, *SPEC, *METRICS, "target_vocab"])
    numeric = [*_NUMERIC, "target_vocab"]
    # One new frame rather than a column at a time, which fragments it.
    frame = pd.concat([frame.drop(columns=numeric),
                       frame[numeric].apply(pd.to_numeric, errors="coerce")],
                      axis=1)[frame.columns]
    return _derive(frame), runs


def _row(run_id: str, record: dict) -> dict:
    cell = spec_value(record, "cell")
    return {"run": run_id, **{key: record[key] for key in _BASE[1:]},
            **{name: spec_value(record, name) for name in SPEC},
            **{name: metric(record, name) for name in METRICS},
            "target_vocab": cell["data"]["vocab"] if cell else None}


def _derive(frame: pd.DataFrame) -> pd.DataFrame:
    """Adds ``backend`` (mindspore where older records do not say), ``twin`` (the
    measurement id of the MindSpore cell a peer cell is the twin of; its own for MindSpore
    cells), ``online`` (an online cell), ``layout`` (mode x workers), ``cache`` (the
    cache configuration; None without a cache), ``series`` (the configuration a colour
    stands for: each cache configuration, on each data set when they differ, is a series
    of its own; cells without a cache keep theirs), ``samples_per_s_at_p90`` and
    ``loaded``."""
    layout = [f"{mode} x{workers:.0f}" for mode, workers in zip(frame["mode"],
                                                                 frame["workers"])]
    backend = frame["backend"].fillna(DEFAULT_BACKEND)
    frame = frame.assign(layout=layout, backend=backend,
                         twin=[twin_id(m, b) for m, b in zip(frame["measurement_id"], backend)], cache=_cache_labels(frame),
                         online=[bool(((c or {}).get("online") or {}).get("stream"))
                                 for c in frame["run_config"]])
    ok = frame[frame["status"] == "ok"]
    naming = [c for c in ("run", "hardware") if ok[c].nunique() > 1]
    parts = frame[[*naming, "model", "layout", "embedding"]].astype(str)
    data = frame.loc[frame["cache"].notna(), "dataset"].nunique() > 1
    return frame.assign(
        series=[" / ".join(values) + (f" / cache {cache}" + (
            f" / {_data_name(dataset)}" if data else "") if isinstance(cache, str) else "")
                for values, cache, dataset in zip(parts.itertuples(index=False),
                                                  frame["cache"], frame["dataset"])],
        samples_per_s_at_p90=frame["samples_per_s"] * frame["step_ms_p50"]
        / frame["step_ms_p90"],
        loaded=frame["other_cpu_fraction"] > LOADED_CPU_FRACTION)


def _cache_labels(frame: pd.DataFrame) -> list[str | None]:
    """Each cell's cache configuration, e.g. "30%, host+ssd, lru": the device rows (as a
    share of the rows the data touches, or a count), the tiers behind, the policy, and
    what else differs between the cache cells: lookahead, tier capacities, logical
    table size. None for a cell without a cache."""
    cached = frame[frame["cache_tiers"].notna()]
    caches = {index: _run_cache(config) for index, config in cached["run_config"].items()}
    capacities = [tier for tier in ("host", "remote")
                  if len({cache.get(f"{tier}_rows") for cache in caches.values()}) > 1]
    lookahead = cached["cache_lookahead"].nunique() > 1
    tables = cached["table_size"].nunique() > 1
    labels = []
    for index, row in zip(frame.index, frame.itertuples(index=False)):
        if index not in caches:
            labels.append(None)
            continue
        parts = [f"{100 * row.cache_device_fraction:.3g}%" if pd.notna(
            row.cache_device_fraction) else f"{row.cache_device_rows:,.0f} rows",
                 row.cache_tiers, row.cache_policy]
        parts += [f"lookahead {row.cache_lookahead:.0f}"] if lookahead else []
        parts += [_capacity(caches[index], tier) for tier in capacities
                  if tier in row.cache_tiers.split("+")]
        parts += [f"table {row.table_size:,.0f}"] if tables else []
        labels.append(", ".join(parts))
    return labels


def _capacity(cache: dict, tier: str) -> str:
    """A tier's capacity in a cache label: "host 20,000 rows", "host 10 × device",
    "remote unbounded"."""
    rows = cache.get(f"{tier}_rows")
    if rows is not None:
        return f"{tier} {rows:,} rows"
    if tier == "host" and cache.get("tiers") != "host":
        return f"host {HOST_ROWS_PER_DEVICE_ROW} × device"
    return f"{tier} unbounded"


def _key(name: str) -> tuple[str, str, object]:
    """(column, header, format) of the declared key ``name``."""
    key = _KEYS[name]
    if name in _FORMATS:
        fmt = _FORMATS[name]
    elif name.endswith("_fraction") or "hit_rate" in name:
        fmt = "{:.1%}"
    elif key.types == (int,):
        fmt = "{:,.0f}"
    elif set(key.types) <= {int, float}:
        fmt = _number
    else:
        fmt = None
    return name, key.header, fmt


def _keys(*names: str) -> list[tuple]:
    return [_key(name) for name in names]


def _section(*sections: str) -> list[tuple]:
    """Columns of the metrics a report section shows (declared ``Key.section``)."""
    return _keys(*(name for name, key in METRICS.items() if key.section in sections))


def _number(value: float) -> str:
    """A number with as many digits as its size needs."""
    size = abs(value)
    return f"{value:,.0f}" if size >= 100 else f"{value:.2f}" if size >= 1 else f"{value:.3f}"


def _show(frame: pd.DataFrame, columns: list[tuple]) -> pd.DataFrame:
    """Display copy: (column, header, format) -> formatted cells, missing as an em dash;
    columns with no value at all are left out."""
    def cell(value, fmt):
        if isinstance(value, Link):
            return value
        if value is None or (not isinstance(value, (list, dict)) and pd.isna(value)):
            return _MISSING
        return fmt(value) if callable(fmt) else fmt.format(value) if fmt else str(value)
    shown = {header: [cell(v, fmt) for v in frame[column]]
             for column, header, fmt in columns}
    return pd.DataFrame({header: values for header, values in shown.items()
                         if frame.empty or any(v != _MISSING for v in values)})


def _table(frame: pd.DataFrame, columns: list[tuple], caption: str | None = None) -> tuple:
    return ("table", _show(frame, columns), caption)


def _first_line(text: str | None) -> str:
    return (text or "").strip().splitlines()[0] if (text or "").strip() else ""


def _summary(r: _Report) -> list[tuple]:
    frame, runs = r.frame, r.runs
    counts = (frame.groupby("run")["status"].value_counts().unstack(fill_value=0)
              .reindex(index=[run["run"] for run in runs], columns=list(STATUSES),
                       fill_value=0))
    table = pd.DataFrame([{
        "run": run["run"], "suite": run["records"][0]["suite"] if run["records"] else None,
        "records": str(run["path"]), "cells": len(run["records"]),
        **{s: int(counts.loc[run["run"], s]) for s in STATUSES},
        "started": min((x["started_at"] for x in run["records"]), default=None),
        "git": _git(run["records"])} for run in runs])
    total = {s: int(counts[s].sum()) for s in STATUSES}
    return [("h", 1, "mindrec-bench report"),
            ("p", f"Runs: {', '.join(run['run'] for run in runs)}. Cells: {len(frame)} "
                  f"({total['ok']} ok, {total['skipped']} skipped, {total['failed']} failed). "
                  f"Generated {now_iso()} from the result records listed below."),
            _load_summary(r.ok),
            _table(table, [(c, c, None) for c in table.columns], "The runs in this report.")]


def _load_summary(ok: pd.DataFrame) -> tuple:
    """A paragraph on machine load: the loaded cells by id, or that there were none."""
    measured = ok["other_cpu_fraction"].notna().sum()
    if not measured:
        return ("p", "Machine load while cells trained was not recorded (records older "
                     "than the other_cpu_fraction metric); the limits measurements under "
                     "Environment show the load at the run's start and end.")
    loaded = ok[ok["loaded"]]
    if loaded.empty:
        return ("p", f"Machine load: in none of the {measured} cells that recorded it did "
                     f"other processes use more than {LOADED_CPU_FRACTION:.0%} of the "
                     f"machine's CPU while it trained.")
    return ("note", f"{len(loaded)} of {measured} cells ran on a loaded machine (other "
                    f"processes used more than {LOADED_CPU_FRACTION:.0%} of its CPU while "
                    f"they trained; marked 'loaded' in the throughput table): their speeds "
                    f"understate the code's. Cells: {', '.join(loaded['cell_id'])}.")


def _git(records: list[dict]) -> str | None:
    if not records or not records[0]["git"]["commit"]:
        return None
    git = records[0]["git"]
    return f"{git['commit'][:12]}{' (dirty)' if git['dirty'] else ''}"


def _published_table(published: list[dict], models: list[str], metrics: tuple) -> pd.DataFrame:
    """The published figures for ``models``: short data and hardware, the source a link."""
    rows = [{"model": e["model"], "metric": METRICS[e["metric"]].header,
             "figure": format_value(e),
             "data": ", ".join(filter(None, (e["dataset"], e["split"]))),
             "hardware": f"{e['hardware']} × {e['devices']}" if e["devices"]
             else e["hardware"], "source": Link(source_label(e), e["source"]["url"])}
            for e in published if e["model"] in models and e["metric"] in metrics]
    return pd.DataFrame(rows, columns=["model", "metric", "figure", "data", "hardware",
                                       "source"], dtype=object)


def _published_block(published: pd.DataFrame, caption: str) -> tuple:
    return _table(published, [(c, c, None) for c in published.columns], caption)


def _quality(r: _Report) -> list[tuple]:
    blocks = [("h", 2, "Quality"), ("note", SYNTHETIC_DISCLAIMER), *_auc_blocks(r),
              *_learning_curve(r),
              ("h", 3, "Published Criteo figures for these models")]
    pub = _published_table(r.published, r.models, ("auc", "logloss"))
    if pub.empty:
        return blocks + [("p", "reference/published.yaml has no AUC or logloss for these "
                               "models.")]
    return blocks + [_published_block(pub, "Published AUC and logloss on real Criteo data, "
                                           "other splits and hardware (settings and notes: "
                                           "reference/published.yaml).")]


def _auc_blocks(r: _Report) -> list[tuple]:
    """The vocabulary note, the AUC table (a row per configuration and table size) and
    the figure of each row's gap to the Bayes-optimal AUC."""
    measured = r.ok.dropna(subset=["auc"])
    if measured.empty:
        return [("p", "No ok cell measured an AUC.")]
    keys = (["run"] if r.multi else []) + [
        "model", "layout", "embedding", "cache", "target_vocab", "data_vocab",
        "table_size", "bayes_auc", "series"]
    table = (measured.groupby(keys, dropna=False, sort=True)
             .agg(cells=("cell_id", "count"), auc=("auc", "mean"), auc_min=("auc", "min"),
                  logloss=("logloss", "mean")).reset_index())
    table["gap"] = table["bayes_auc"] - table["auc"]
    unknown = (" These records carry no suite cell (runs of `mindrec-bench train`), so "
               "their generator vocabulary is not known." if table["target_vocab"].isna().all()
               else "")
    return [
        ("p", VOCABULARY_NOTE + unknown),
        _table(table, r.run_column() + [
            _key("model"), _LAYOUT, _key("embedding"), _CACHE,
            ("target_vocab", "generator vocabulary (v)", "{:,.0f}"),
            *_keys("data_vocab", "table_size"), ("cells", "cells", None),
            ("auc", "AUC (mean)", _F4), ("auc_min", "AUC (min)", _F4),
            ("logloss", "logloss (mean)", _F4), _key("bayes_auc"),
            ("gap", "gap to Bayes", _F4)],
            "Test AUC per model, parallel mode and workers, embedding and table size: the "
            "mean (and lowest) over the cells of that row (repeats of one measurement); "
            "modes are never averaged together. Gap = Bayes-optimal AUC of the synthetic "
            "test split − measured AUC."),
        _auc_figure(r, table)]


def _learning_curve(r: _Report) -> list[tuple]:
    """Each configuration measured at two or more training sizes: its gap to the
    Bayes-optimal AUC against the training rows, with the spread over seeds."""
    cells = r.ok.dropna(subset=["auc", "bayes_auc"])
    cells = cells.assign(gap=cells["bayes_auc"] - cells["auc"])
    curves = cells.groupby("series").filter(lambda group: group["rows"].nunique() > 1)
    if curves.empty:
        return []
    table = (curves.groupby(["series", "rows"], sort=True)
             .agg(model=("model", "first"), seeds=("cell_id", "count"),
                  auc=("auc", "median"), gap=("gap", "median"), gap_min=("gap", "min"),
                  gap_max=("gap", "max")).reset_index())
    return [
        ("h", 3, "Learning curve"),
        ("p", "Does a model learn what the data holds? On synthetic data the gap between "
              "its test AUC and the Bayes-optimal AUC (the true click probabilities) "
              "should shrink as it trains on more rows. Each configuration below ran at "
              "two or more training sizes (the learning-curve suite: one epoch, three "
              "seeds); a gap that stops shrinking is what the model cannot learn."),
        _table(table, [("series", "configuration", None),
                       ("rows", "training rows", "{:,.0f}"),
                       ("seeds", "seeds", None), ("auc", "AUC (median)", _F4),
                       ("gap", "gap to Bayes (median)", _F4),
                       ("gap_min", "gap (lowest)", _F4), ("gap_max", "gap (highest)", _F4)],
               "Gap to the Bayes-optimal AUC against training rows, over the seeds."),
        ("figure", "learning-curve",
         learning_curve_figure(curves, colours=r.colours,
                               title="Gap to the Bayes-optimal AUC against training rows"),
         "Line: the median over seeds; band: their lowest and highest gap.")]


def _auc_figure(r: _Report, table: pd.DataFrame) -> tuple:
    """The AUC bars of the rows without a cache (cache cells: the Embedding cache
    section, beside their baseline)."""
    plotted = table[table["cache"].isna()]
    if plotted.empty:
        return ("p", f"No AUC figure here: every cell trained through an embedding cache "
                     f"({_CACHE_ELSEWHERE}).")
    left_out = (f" Rows with an embedding cache are left out ({_CACHE_ELSEWHERE})."
                if len(plotted) < len(table) else "")
    title = "Measured test AUC against the Bayes-optimal AUC"
    return ("figure", "auc", auc_figure(plotted.assign(tick=_ticks(plotted)),
                                        colours=r.colours, title=title),
            "How far is each model from the best possible AUC? Bars: measured test AUC "
            "(starting at 0.5, a random guess); black mark: the Bayes-optimal AUC of the "
            "same synthetic test split (the true click probabilities); the gap is written "
            f"above. One bar per row of the table above.{left_out}")


def _ticks(frame: pd.DataFrame) -> list[str]:
    """Bar labels: the configuration, one part a line, and the table size."""
    return [f"{series.replace(' / ', chr(10))}\n{size:,.0f} rows"
            for series, size in zip(frame["series"], frame["table_size"])]


def _throughput(r: _Report) -> list[tuple]:
    blocks: list[tuple] = [("h", 2, "Throughput and memory")]
    ok = r.ok
    if ok.empty:
        return blocks + [("p", "No ok cells: no throughput table, figures omitted.")]
    table = ok.sort_values(["model", "mode", "embedding", "cache", "table_size", "workers"])
    table = table.assign(flag=[None if pd.isna(share) else "loaded" if loaded else "quiet"
                               for share, loaded in zip(table["other_cpu_fraction"],
                                                        table["loaded"])])
    blocks.append(_table(r.with_peers(table), r.run_column() + [
        _key("model"), _LAYOUT, *_keys("hardware", "embedding"), _CACHE,
        *_keys("table_size", "sparse"), *_section("throughput", "memory", "machine"),
        ("flag", "machine load", None), *_PEER_COLUMNS],
        f"Every ok cell. samples/s = global batch / median step; peak memory of the "
        f"whole process tree (all workers). Machine: the sgemm rate measured just before "
        f"the cell, the share of the machine's CPU other processes used while it trained "
        f"and the load average at its start; 'loaded': more than "
        f"{LOADED_CPU_FRACTION:.0%} used by others, 'quiet': less. PyTorch columns (where "
        f"the run measured the cell's PyTorch twin): see PyTorch peer."))
    blocks += _scaling_figures(r)
    pub = _published_table(r.published, r.models, ("samples_per_s",))
    if not pub.empty:
        blocks.append(_published_block(pub, "Published throughput (other hardware, model "
                                            "sizes and data: for orientation, not "
                                            "comparison)."))
    return blocks


_SPREAD = "the error bar reaches down to samples/s at the p90 step time"


def _scaling_figures(r: _Report) -> list[tuple]:
    """Throughput and memory against table size (lines), or per configuration (bars)
    when no configuration ran at more than one table size; cells without a cache."""
    ok = r.ok[r.ok["cache"].isna()]
    if ok.empty:
        return [("p", f"No throughput or memory figure here: every ok cell trained "
                      f"through an embedding cache ({_CACHE_ELSEWHERE}).")]
    sizes = ok.dropna(subset=["table_size"]).groupby("series")["table_size"].nunique()
    if (sizes > 1).any():
        draw, data, scope = line_figure, ok, "against table size"
        speed, memory = ("How does training throughput change with table size?",
                         "How much memory does each configuration need as its table grows?")
        note = (f"Lines join only table sizes less than {MAX_JOIN_RATIO:.0f}x apart (nothing "
                f"was measured across a larger gap); a configuration measured at one size "
                f"is a labelled point.")
    else:
        data = ok.sort_values(["model", "workers", "mode", "embedding"])
        draw, data, scope = bar_figure, data.assign(tick=_ticks(data)), "per configuration"
        speed, memory = ("How fast does each configuration train?",
                         "How much memory does each configuration need?")
        one = ", ".join(f"{size:,.0f}" for size in sorted(ok["table_size"].dropna().unique()))
        note = f"Every configuration ran at one table size ({one} rows): no scaling to show."
    if len(ok) < len(r.ok):
        note += f" Cells with an embedding cache are left out ({_CACHE_ELSEWHERE})."
    return [
        ("figure", "throughput", draw(
            data, "samples_per_s", lower="samples_per_s_at_p90", colours=r.colours,
            title=f"Training throughput {scope}", ylabel="samples/s"),
         f"{speed} Median samples/s per configuration; {_SPREAD}. {note}"),
        ("figure", "memory", draw(data, "peak_rss_mb", colours=r.colours,
                                  title=f"Peak memory {scope}",
                                  ylabel=_KEYS["peak_rss_mb"].header),
         f"{memory} Peak RSS of the whole process tree (all workers). {note}")]


def _parallel_modes(r: _Report) -> list[tuple]:
    static = r.ok[r.ok["embedding"] == "static"]
    if (static["mode"] == "standalone").all():
        return []
    shown = static.sort_values(["model", "table_size", "workers", "mode"])
    shown = shown.assign(tick=[f"{layout}\n{model}\n{size:,.0f} rows" for layout, model, size
                               in zip(shown["layout"], shown["model"], shown["table_size"])])
    return [
        ("h", 2, "Parallel modes"),
        ("p", "Static-table cells by parallel mode: standalone (one process), data_parallel "
              "(whole model on every worker, gradients averaged) and hybrid (tables sharded "
              "by rows over the workers, the rest data parallel), all msrun workers on this "
              "machine. With as many workers as cores or more, no speed-up is expected: "
              "this shows the cost of the collectives and the memory split."),
        _table(shown, r.run_column() + [
            _key("model"), _LAYOUT, *_keys("table_size", "samples_per_s"),
            *_section("parallel"), *_keys("peak_rss_mb", "auc")],
            "Throughput counts the global batch; per worker: the largest worker's peak "
            "and its share of the tables; peak RSS: all workers together."),
        ("figure", "modes-throughput", bar_figure(
            shown, "samples_per_s", lower="samples_per_s_at_p90", colours=r.colours,
            title="Training throughput by parallel mode", ylabel="samples/s"),
         f"What does each parallel mode cost in speed? samples/s of the global batch per "
         f"mode and worker count (static tables, all workers on this machine); {_SPREAD}."),
        _modes_memory(shown, r.colours)]


def _modes_memory(shown: pd.DataFrame, colours: dict) -> tuple:
    """The per-worker memory figure, or a line saying no cell recorded it."""
    if shown["peak_rss_mb_per_worker"].isna().all():
        return ("p", "No figure of memory per worker: no cell recorded it.")
    return ("figure", "modes-memory", bar_figure(
        shown, "peak_rss_mb_per_worker", colours=colours,
        title="Peak memory per worker by parallel mode",
        ylabel=_KEYS["peak_rss_mb_per_worker"].header),
        "What does each parallel mode cost in memory? Peak RSS of the largest worker per "
        "mode and worker count (static tables).")


def _hash_tables(r: _Report) -> list[tuple]:
    rows = r.ok.dropna(subset=["hash_live_rows"])
    if rows.empty:
        return []
    return [("h", 2, "Hash tables"),
            _table(rows, r.run_column() + [
                _key("model"), _LAYOUT, _CACHE,
                *_keys("table_size", "permit_filter_value", "evict_filter_value",
                       "capacity"), *_section("hash"), *_keys("auc", "samples_per_s")],
                "End-of-training counters of the dynamic hash tables: rows live, keys "
                "admitted and evicted, keys seen but never admitted (below the permit "
                "threshold), the share of lookups that read the default row, and the "
                "host index's memory.")]


# A cache cell's baselines come from the cells of its group: the same run, model, data,
# embedding (width, admission, eviction, capacity), hardware and batch ...
_CACHE_GROUP = ["run", "model", "dataset", "emb_dim", "permit_filter_value",
                "evict_filter_value", "capacity", "hardware", "batch_size"]
# ... its smallest-device reference from its siblings: the same again, with the same
# (logical) table, tiers, their capacities, policy and lookahead: all but the device.
_CACHE_SIBLINGS = [*_CACHE_GROUP, "table_size", "cache_tiers", "host_rows", "remote_rows",
                   "cache_policy", "cache_lookahead"]
_TIERS = ("host", "remote", "ssd")
_RATIO, _DELTA = "{:.3f}", "{:+.4f}"
CACHE_INTRO = (
    "Cells trained through the multi-level embedding cache (docs/embedding-cache.md): a "
    "device tier of 'device rows' slots inside the compiled step (device fraction: those "
    "rows as a share of the rows the data touches) in front of the tiers behind it, top "
    "to bottom; 'policy' chooses the device's and the tiers' victims and 'lookahead' is "
    "the number of batches the prefetch thread stages ahead. A hit rate per lookup counts "
    "every key of a batch; per distinct key it counts each step's distinct keys once (the "
    "rows a step must place). A lower tier's hit rate is the share of the keys asked of "
    "it that it held.")
REPLAY_NOTE = (
    "The offline replays run the key trace each cell recorded at its device size, with "
    "each step's distinct keys pinned together as the device pins them: Belady's optimum "
    "(evict the key used furthest in the future), LRU and LFU. The online cache can beat "
    "the plain LRU replay because it also pins the keys of the prefetched batches: it "
    "uses future knowledge, never evicting a key the next batches need. Belady's step "
    "optimum bounds every cache that pins at least the current step, this one included, "
    "so 'of Belady' is at most 100%.")


def _embedding_cache(r: _Report) -> list[tuple]:
    cells = r.ok.dropna(subset=["cache_hit_rate"])
    if cells.empty:
        return []
    caches = [_run_cache(run_config) for run_config in cells["run_config"]]
    rows = {f"{tier}_rows": pd.Series([cache.get(f"{tier}_rows") for cache in caches],
                                      index=cells.index, dtype=float)
            for tier in ("host", "remote")}
    cells = cells.assign(data=cells["dataset"].map(_data_name), **rows)
    cells = cells.sort_values([*_CACHE_SIBLINGS, "cache_device_rows"])
    config = _cache_config(r, cells)
    return [("h", 2, "Embedding cache"), ("p", CACHE_INTRO),
            *_cache_hits(cells, config, r.colours),
            *_cache_traffic(cells, config), *_cache_memory(cells, config),
            *_cache_baselines(r, cells, config)]


def _cache_config(r: _Report, cells: pd.DataFrame) -> list[tuple]:
    """Columns naming a cache cell: run, model, data (when several), device, tiers,
    policy, lookahead."""
    data = [("data", "data", None)] if cells["dataset"].nunique() > 1 else []
    table = [_key("table_size")] if cells["table_size"].nunique() > 1 else []
    return r.run_column() + [_key("model"), *data, *table, *_keys(
        "cache_device_rows", "cache_device_fraction", "cache_tiers", "cache_policy",
        "cache_lookahead")]


def _cache_hits(cells: pd.DataFrame, config: list[tuple], colours: dict) -> list[tuple]:
    return [
        _table(cells, config + _keys(
            "cache_hit_rate", "cache_hit_rate_unique",
            *(f"cache_{tier}_hit_rate" for tier in _TIERS),
            "cache_cold_misses", "cache_capacity_misses"),
            "How often does each tier hold the key asked of it? Device hit rate per lookup "
            "and per distinct key of a step; each lower tier's share of the keys asked of "
            "it that it held; cold misses: rows created (no tier held the key: its first "
            "use); capacity misses: rows fetched back from below (held before, evicted "
            "for room)."),
        ("p", REPLAY_NOTE),
        _table(cells, config + _keys(
            "cache_hit_rate_unique", "cache_belady_hit_rate_unique",
            "cache_lru_hit_rate_unique", "cache_lfu_hit_rate_unique",
            "cache_hit_rate_vs_belady"),
            "How close does each cache come to the best possible? Hit rates per distinct "
            "key of a step (the device's granularity: a step's keys are resident "
            "together): the run's own, the offline replays of its key trace at the same "
            "device size (Belady's optimum, LRU, LFU) and the run's as a fraction of "
            "Belady's."),
        _warm_up(cells, colours), _miss_ratios(cells, colours)]


def _warm_up(cells: pd.DataFrame, colours: dict) -> tuple:
    if cells["cache_hit_curve"].isna().all():
        return ("p", "No warm-up figure: no cell recorded its hit rate per step.")
    return ("figure", "cache-warm-up", curve_figure(
        cells, "cache_hit_curve", colours=colours, top=1.0,
        title="Device hit rate per training step (distinct keys)",
        ylabel=_KEYS["cache_hit_rate_unique"].header),
        "How fast does the device tier warm up? Per training step, the share of the "
        "step's distinct keys already in the device tier, one line per cache "
        "configuration (the median of its cells). It starts at 0 (an empty device) and "
        "levels off near the run's hit rate per distinct key.")


def _miss_ratios(cells: pd.DataFrame, colours: dict) -> tuple:
    if cells["cache_mrc"].isna().all():
        return ("p", "No miss-ratio figure: no cell replayed its key trace.")
    at = (cells["cache_device_rows"] / cells["cache_touched_keys"]).fillna(
        cells["cache_device_fraction"])
    shown = cells.assign(at=at, belady_miss=1 - cells["cache_belady_hit_rate_unique"],
                         online_miss=1 - cells["cache_hit_rate_unique"])
    return ("figure", "cache-miss-ratio", miss_ratio_figure(
        shown, "cache_mrc", at="at", colours=colours,
        marks={"Belady's optimum": ("belady_miss", "v"), "the run (online)":
               ("online_miss", "o")},
        title="Miss ratio by device size: LRU replay, Belady's, the run's",
        xlabel="device rows, as a share of the rows touched (log scale)"),
        "How much would a larger or smaller device tier miss? Lines: the miss ratio (per "
        "distinct key of a step) of an LRU cache replaying the run's key trace, against "
        "the device size as a share of the keys the trace touched. Marks at each cell's "
        "device rows as a share of the same keys: triangle, Belady's optimal miss ratio; "
        "circle, the run's own (1 − its hit rate). A circle below the line: the online cache beat plain LRU by "
        "pinning prefetched keys.")


def _cache_traffic(cells: pd.DataFrame, config: list[tuple]) -> list[tuple]:
    moved = [f"cache_{tier}_mb_{way}" for tier in _TIERS for way in ("read", "written")]
    return [_table(cells, config + _keys(
        "cache_fetched_per_step", "cache_written_back_per_step", *moved,
        "cache_exposed_fetch_ms", "cache_hidden_fetch_ms", "step_ms_p50",
        "cache_bulk_load_s"),
        "How much data moves between the tiers, and how long does training wait for it? "
        "Rows fetched into the device and dirty rows written back, per step; MiB read "
        "from and written to each tier over the run (ssd written: what the SSD wears); "
        "exposed fetch: per step, the time training waited for staged rows and its "
        "batch; hidden fetch: per step, fetch time the prefetch thread spent while "
        "training ran. The median step time for scale. Bulk load: loading a table's "
        "initial rows into the SSD tier before training (not part of any step).")]


def _cache_memory(cells: pd.DataFrame, config: list[tuple]) -> list[tuple]:
    budgets = {f"{tier}_budget": [_tier_budget(row.run_config, tier, row.cache_device_rows)
                                  for row in cells.itertuples(index=False)]
               for tier in ("host", "remote")}
    return [_table(cells.assign(**budgets), config + [
        _key("cache_device_mb"),
        *(column for tier in _TIERS for column in (
            _key(f"cache_{tier}_rows_held"),
            *([(f"{tier}_budget", f"{tier} budget (rows)", None)] if tier != "ssd" else []),
            _key(f"cache_{tier}_mb_held"))),
        *_keys("peak_rss_mb", "cache_remote_peak_rss_mb")],
        f"How much memory does each tier hold against its budget? The device tier's rows "
        f"and optimizer state; rows and MiB each tier held at the end against its budget "
        f"(cache.host_rows, cache.remote_rows; a host tier above the bottom without one "
        f"holds {HOST_ROWS_PER_DEVICE_ROW} × the device rows; unbounded: no limit). The "
        f"SSD tier is the store, unbounded: its rows are RocksDB's estimate (overwritten "
        f"keys count until compaction) and its MiB the files on disk. Peak RSS of the "
        f"training process and of the Redis-protocol server the run started.")]


def _run_cache(run_config) -> dict:
    """The cache section of a cell's run config (spec ``run_config``); {} without one."""
    return (run_config.get("cache") if isinstance(run_config, dict) else None) or {}


def _data_name(dataset: str) -> str:
    """A dataset directory's name without its digest (synth-r500000-v2000000-s0-t0); a
    cached synthetic dataset is named by the directory above its ``converted``."""
    path = Path(dataset)
    name = path.parent.name if path.name == "converted" else path.name
    return re.sub(r"-[0-9a-f]{12}$", "", name)


def _tier_budget(run_config: dict | None, tier: str, device_rows: float) -> str | None:
    """The rows ``tier`` may hold, from the cell's run config: its cache.*_rows, the
    host's default above the bottom, or "unbounded"; None when the cell has no such tier
    (or no run config)."""
    cache = _run_cache(run_config)
    if not cache or tier not in cache["tiers"].split("+"):
        return None
    rows = cache[f"{tier}_rows"]
    if rows is not None:
        return f"{rows:,}"
    if tier == "host" and cache["tiers"] != "host" and pd.notna(device_rows):
        times = HOST_ROWS_PER_DEVICE_ROW
        return f"{times * device_rows:,.0f} ({times} × device)"
    return "unbounded"


def _cache_baselines(r: _Report, cells: pd.DataFrame, config: list[tuple]) -> list[tuple]:
    """Each cache cell against the no-cache cell of its group and against the cell with
    the smallest device of its siblings; the throughput figure with the baselines."""
    plain = r.ok[(r.ok["embedding"] == "hash") & r.ok["cache_device_rows"].isna()]
    base = (plain.groupby(_CACHE_GROUP, dropna=False).agg(
        base_cells=("cell_id", "count"), base_speed=("samples_per_s", "median"),
        base_auc=("auc", "mean")).reset_index())
    shown = cells[list(dict.fromkeys(
        [*_CACHE_SIBLINGS, *(column for column, _, _ in config), "samples_per_s", "auc"]))]
    shown = (shown.merge(base, on=_CACHE_GROUP, how="left")
             .merge(_smallest_devices(cells), on=_CACHE_SIBLINGS, how="left"))
    shown = shown.assign(base_ratio=shown["samples_per_s"] / shown["base_speed"],
                         base_delta=shown["auc"] - shown["base_auc"],
                         least_ratio=shown["samples_per_s"] / shown["least_speed"],
                         least_delta=shown["auc"] - shown["least_auc"])
    speed, auc = _KEYS["samples_per_s"].header, _KEYS["auc"].header
    return [
        ("p", "Baselines, measured in the same run: a cache cell's no-cache baseline is "
              "the cell (or the median of the cells) of the same model, data, embedding "
              "settings (width, admission, eviction, capacity), hardware and batch with "
              "hash tables and no cache: the whole table resident in the compiled step, "
              "every lookup a hit. Its smallest-device "
              "reference is the cell of that group with the same logical table size, "
              "tiers (and their capacities), policy and lookahead and the fewest device "
              "rows, where nearly every lookup comes from below; a cell with no smaller "
              "sibling has none. A dash: that cell was not measured."),
        _table(shown, config + [
            *_keys("samples_per_s", "auc"), ("base_cells", "no-cache cells", "{:,.0f}"),
            ("base_speed", f"no-cache {speed}", "{:,.0f}"),
            ("base_ratio", f"{speed} ÷ no cache", _RATIO),
            ("base_delta", f"{auc} − no cache", _DELTA),
            ("least_rows", "smallest device (rows)", "{:,.0f}"),
            ("least_ratio", f"{speed} ÷ smallest device", _RATIO),
            ("least_delta", f"{auc} − smallest device", _DELTA)],
            "What does the cache cost in speed and AUC? Each cache cell against the "
            "no-cache cell of its group (the whole table resident) and against its "
            "smallest-device sibling (nearly every lookup from below)."),
        _cache_speed_figure(r, cells, plain)]


def _smallest_devices(cells: pd.DataFrame) -> pd.DataFrame:
    """Per group of siblings measured at more than one device size: the fewest device
    rows (least_rows), the median samples/s and mean AUC of the cells that have them."""
    siblings = cells.groupby(_CACHE_SIBLINGS, dropna=False)["cache_device_rows"]
    several = cells[siblings.transform("nunique") > 1]
    fewest = (several.groupby(_CACHE_SIBLINGS, dropna=False)["cache_device_rows"]
              .transform("min"))
    least = several[several["cache_device_rows"] == fewest]
    return least.groupby(_CACHE_SIBLINGS, dropna=False).agg(
        least_rows=("cache_device_rows", "first"), least_speed=("samples_per_s", "median"),
        least_auc=("auc", "mean")).reset_index()


def _cache_speed_figure(r: _Report, cells: pd.DataFrame, plain: pd.DataFrame) -> tuple:
    """Bars of samples/s: per group, its no-cache baseline, then each cache cell."""
    groups = cells[_CACHE_GROUP].drop_duplicates()
    bars = pd.concat([plain.merge(groups, on=_CACHE_GROUP), cells])
    bars = bars.sort_values([*_CACHE_GROUP, "cache_tiers", "cache_policy",
                             "cache_lookahead", "cache_device_rows"], na_position="first")
    varying = [c for c in _CACHE_GROUP if groups[c].nunique() > 1]
    ticks = ["".join(f"{_group_part(c, getattr(row, c))}\n" for c in varying)
             + (row.cache.replace(", ", "\n") if isinstance(row.cache, str) else "no cache")
             for row in bars.itertuples(index=False)]
    return ("figure", "cache-throughput", bar_figure(
        bars.assign(tick=ticks), "samples_per_s", lower="samples_per_s_at_p90",
        colours=r.colours, title="Training throughput through the embedding cache",
        ylabel="samples/s"),
        f"How fast does each cache configuration train against the whole table "
        f"resident? Median samples/s per configuration; the 'no cache' bar of each group "
        f"is its baseline (hash tables, no cache); {_SPREAD}.")


def _group_part(column: str, value) -> str:
    """A bar label's part naming a cell's group (a column of :data:`_CACHE_GROUP`)."""
    if column == "dataset":
        return _data_name(value)
    if pd.isna(value):
        return {"evict_filter_value": "no eviction",
                "capacity": "capacity: the table"}.get(column, _MISSING)
    formats = {"emb_dim": "dim {:.0f}", "permit_filter_value": "permit {:.0f}",
               "evict_filter_value": "evict after {:.0f}", "capacity": "capacity {:,.0f}",
               "batch_size": "batch {:,.0f}"}
    return formats.get(column, "{}").format(value)


def _online(r: _Report) -> list[tuple]:
    cells = r.online_ok
    if cells.empty:
        return []
    cells = cells.assign(series=[
        f"{model} / {f'{rate:,.0f}' if rate == rate else 'max'} rows/s / every "
        f"{every:g} s / batch {batch:.0f}" for model, rate, every, batch in zip(
            cells["model"], cells["online_rate"], cells["online_publish_every_s"],
            cells["batch_size"])])
    colours = series_colours(cells["series"])
    config = r.run_column() + _keys("model", "online_rate", "online_publish_every_s",
                                    "batch_size")
    parts = ("lag", "train", "publish", "apply", "total")
    return [
        ("h", 2, "Online learning"), ("p", ONLINE_INTRO),
        _table(cells, config + _keys(
            "samples_per_s", "online_lag_p99_s", "online_lag_growth_s",
            "online_freshness_total_p50_s", "online_freshness_total_p99_s",
            "online_versions", "online_delta_rows_p50", "online_delta_mb_p50",
            "online_publish_s_p50", "serving_p99_ms", "serving_p99_ms_applying",
            "online_bad_rows", "peak_rss_mb"),
            "Does the loop keep up, and how fresh is what it serves? Sustained rows trained "
            "per second; consumer lag (event -> batch taken) p99 and its growth over the "
            "run (about 0: bounded); freshness (event -> first prediction served by a "
            "version trained on the row) p50 and p99; versions published, the median "
            "delta, the time to publish one; serving p99 of a one-row prediction, apart "
            "while a version is being applied."),
        _table(cells, config + _keys(*(f"online_freshness_{part}_{q}_s"
                                       for part in parts for q in ("p50", "p99"))),
               "Where does the freshness go? Its parts: consumer lag, training (predict and "
               "train one batch), waiting for and exporting a version, the serving process "
               "applying it; p50 and p99 of each over sampled rows."),
        _table(cells.assign(online_gain=cells["auc"] - cells["online_frozen_auc"],
                            bayes_gap=cells["bayes_auc"] - cells["auc"]),
               config + _keys("auc", "online_frozen_auc") + [
                   ("online_gain", "online − frozen", "{:+.4f}"), *_keys("bayes_auc"),
                   ("bayes_gap", "gap to Bayes", "{:.4f}"), *_keys("logloss")],
               "What does online learning buy on a drifting stream? Progressive AUC on the "
               "last tenth of the stream (each row predicted before training on it) of the "
               "online model and of the model frozen after the first fifth, and the "
               "Bayes-optimal AUC of the same rows."),
        ("figure", "online-quality", online_quality_figure(
            cells, colours=colours, title="Progressive AUC along the drifting stream"),
         "Does the online model follow the drift? Progressive AUC per tenth of the stream: "
         "the online model (solid), the model frozen after the first fifth (dashed) and "
         "the Bayes optimum of the same rows (dotted)."),
        ("figure", "online-lag", curve_figure(
            cells, "online_lag_curve", colours=colours, xlabel="tenth of the run",
            title="Consumer lag along the run", ylabel=_KEYS["online_lag_p50_s"].header),
         "Does the trainer keep up? The median consumer lag (event -> batch taken) in each "
         "tenth of the run: flat when it keeps up; the first tenth includes compiling."),
    ]


_PEER_COLUMNS = [("peer_samples_per_s", "PyTorch samples/s", "{:,.0f}"),
                 ("peer_ratio", "ours / PyTorch", "{:.2f}"),
                 ("peer_auc_delta", "AUC − PyTorch's", "{:+.4f}")]
PEER_INTRO = (
    "Each model against its PyTorch twin (bench/peers: the same layers, initial "
    "distributions, loss, batches from the same reader in the same order, and the same "
    "step timing), measured in the same run. PyTorch takes its fastest correct path: "
    "fused Adam for dense tables, sparse embeddings with SparseAdam for large ones (the "
    "variant column says which, with its threads). One difference of substance: the "
    "Wide&Deep wide part trains with FTRL here and with Adam in PyTorch, which has no "
    "FTRL. On the same data and schedule the two reach AUCs within about 0.002 (a slow "
    "test checks it); a larger gap points at a bug in one of them.")


def _peers(r: _Report) -> list[tuple]:
    """Every MindSpore cell with a PyTorch twin in its run: speed, roofline and AUC side
    by side (medians over repeats)."""
    if r.peer_medians.empty:
        return []
    ours = (r.ok.groupby(["run", "twin"], sort=False)
            .agg(model=("model", "first"), run_config=("run_config", "first"),
                 table_size=("table_size", "first"), sparse=("sparse", "first"),
                 samples_per_s=("samples_per_s", "median"), auc=("auc", "median"),
                 roofline_fraction=("roofline_fraction", "median"),
                 rounds=("cell_id", "count"))
            .reset_index())
    both = r.with_peers(ours).dropna(subset=["peer_samples_per_s"])
    if both.empty:
        return []
    both = both.assign(shape=[_model_shape(c) for c in both["run_config"]])
    return [("h", 2, "PyTorch peer"), ("p", PEER_INTRO),
            _table(both.sort_values(["model", "table_size"]), r.run_column() + [
                _key("model"), ("shape", "embedding and layers", None),
                *_keys("table_size", "sparse"), ("rounds", "rounds", None),
                ("samples_per_s", "ours samples/s", "{:,.0f}"), *_PEER_COLUMNS[:2],
                ("roofline_fraction", "ours roofline fraction", "{:.2f}"),
                ("peer_roofline_fraction", "PyTorch roofline fraction", "{:.2f}"),
                ("auc", "ours AUC", _F4), ("peer_auc", "PyTorch AUC", _F4),
                _PEER_COLUMNS[2], ("peer_variant", "PyTorch variant", None)],
                "Ours against PyTorch: medians over each side's rounds (repeats) in the "
                "run; ratio > 1: ours is faster.")]


def _model_shape(run_config: dict | None) -> str | None:
    """A model's widths in a few words: "emb 16, 256-128" (", 3 cross" for DCN,
    "emb 16, bottom 64-16, top 256-128" for DLRM)."""
    if not isinstance(run_config, dict):
        return None
    model = run_config.get("model_config") or {}
    parts = [f"emb {model.get('emb_dim')}"]
    for key, prefix in (("bottom_layers", "bottom "), ("top_layers", "top "),
                        ("deep_layers", "")):
        if model.get(key):
            parts.append(prefix + "-".join(map(str, model[key])))
    if "cross_layers" in model:
        parts.append(f"{model['cross_layers']} cross")
    if model.get("low_rank"):
        parts.append(f"rank {model['low_rank']}")
    return ", ".join(parts)


def _roofline(r: _Report) -> list[tuple]:
    rows = r.ok.dropna(subset=["roofline_fraction"])
    if rows.empty:
        return []
    rows = rows.sort_values("roofline_fraction", ascending=False)
    rows = rows.assign(
        ceiling_gflops=rows["roofline_samples_per_s"] * 3 * rows["flops_per_sample"] / 1e9,
        shared=["one process" if workers == 1 else f"{workers:.0f} workers on one machine"
                for workers in rows["workers"]])
    return [("h", 2, "Roofline fraction"),
            ("p", "The ceiling is the whole machine's sgemm rate (float32 matrix "
                  "multiplies in one process using all its cores, measured at the run's "
                  "start or resume: see Environment) divided by 3 × the model's forward "
                  "FLOPs per sample (forward and backward). It bounds the dense (MLP) part "
                  "of a step only. The workers of a multi-worker cell all run on this one "
                  "machine (local msrun workers) and share that one ceiling, so their "
                  "global samples/s is compared with the same machine-wide rate, not a "
                  "multiple of it. 'sgemm' is the same kernel measured just before the cell "
                  "trained: well below the ceiling's rate means the machine was busy."),
            _table(rows, r.run_column() + [
                _key("model"), _LAYOUT, *_keys("embedding", "table_size",
                                               "flops_per_sample", "samples_per_s"),
                ("ceiling_gflops", "ceiling sgemm (GFLOP/s)", _number), _key("sgemm_gflops"),
                ("shared", "ceiling shared by", None),
                *_keys("roofline_samples_per_s", "roofline_fraction")],
                "Measured samples/s against the machine's sgemm ceiling, best first.")]


def _problems(r: _Report) -> list[tuple]:
    bad = r.frame[r.frame["status"] != "ok"]
    blocks: list[tuple] = [("h", 2, "Skipped and failed cells")]
    if bad.empty:
        return blocks + [("p", "None.")]
    shown = bad.assign(first=bad["reason"].map(_first_line))
    blocks.append(_table(shown, [("run", "run", None), ("cell_id", "cell", None),
                                 ("status", "status", None), _key("hardware"),
                                 ("first", "reason", None)],
                         "The first line of each reason; multi-line reasons in full below."))
    for row in bad[bad["reason"].fillna("").str.strip().str.contains("\n")].itertuples():
        blocks.append(("details", f"{row.status}: {row.run} / {row.cell_id} (full reason)",
                       row.reason))
    return blocks


def _environment(r: _Report) -> list[tuple]:
    blocks: list[tuple] = [("h", 2, "Environment")]
    envs = {run["run"]: run["records"][0]["env"] for run in r.runs if run["records"]}
    if envs:
        table = pd.DataFrame({"key": list(ENV), **{run: [_env_value(env.get(k)) for k in ENV]
                                                   for run, env in envs.items()}})
        blocks.append(_table(table, [(c, c, None) for c in table.columns],
                             "Machine and versions, from the first record of each run."))
    measurements = [{"run": run["run"], **m} for run in r.runs if run["limits"]
                    for m in run["limits"].measurements]
    if not measurements:
        return blocks + [("p", "No machine-limit file (RUN_ID.limits.json) for these runs.")]
    limits = pd.DataFrame(measurements, columns=["run", *MEASUREMENT_KEYS])
    limits["spread"] = [_spread(m) for m in measurements]
    return blocks + [
        ("p", "Machine limits, measured at each start, resume and end of a run: sgemm, "
              "float32 2048 × 2048 matrix multiplies in one process on all cores (best "
              "of five, and their spread min..median..best: a wide spread means other work "
              "shared the machine), the copy bandwidth, and the load averages just before "
              "(compare them with the cores). Cells take their roofline ceiling from the "
              "latest start or resume."),
        _table(limits, [("run", "run", None), ("phase", "phase", None),
                        ("measured_at", "measured at", None),
                        ("sgemm_gflops", "sgemm best (GFLOP/s)", "{:.1f}"),
                        ("spread", "sgemm min..median..best", None),
                        ("mem_bw_gbs", "copy bandwidth (GB/s)", "{:.1f}"),
                        ("load_avg_1m", "load 1 min", "{:.2f}"),
                        ("load_avg_5m", "load 5 min", "{:.2f}"), ("cores", "cores", None)],
               "Machine limits and load of each run.")]


def _spread(measurement: dict) -> str | None:
    if measurement["sgemm_gflops_min"] is None:
        return None
    return "..".join(f"{measurement[k]:.1f}" for k in
                     ("sgemm_gflops_min", "sgemm_gflops_median", "sgemm_gflops"))


def _env_value(value) -> str | None:
    if isinstance(value, list):
        return "; ".join(", ".join(f"{k}={v}" for k, v in g.items()) if isinstance(g, dict)
                         else str(g) for g in value) or "none"
    return value


def _comparison(r: _Report) -> list[tuple]:
    if not r.multi:
        return []
    frame, runs = r.frame, r.runs
    blocks: list[tuple] = [("h", 2, "Run comparison")]
    cols = ["cell_id", "status", "samples_per_s", "auc"]
    speed, auc = _KEYS["samples_per_s"].header, _KEYS["auc"].header
    first = runs[0]["run"]
    base = frame[frame["run"] == first][cols].drop_duplicates("cell_id", keep="last")
    for other in (run["run"] for run in runs[1:]):
        cells = frame[frame["run"] == other][cols].drop_duplicates("cell_id", keep="last")
        both = base.merge(cells, on="cell_id", how="outer", suffixes=("_1", "_2"))
        both["ratio"] = both["samples_per_s_2"] / both["samples_per_s_1"]
        both["auc_delta"] = both["auc_2"] - both["auc_1"]
        median = both["ratio"].median()
        blocks += [("p", f"{other} (2nd) against {first} (1st), joined on cell id; "
                         f"median {speed} ratio over {both['ratio'].notna().sum()} cells "
                         f"measured in both: "
                         f"{_MISSING if pd.isna(median) else f'{median:.3f}'}."),
                   _table(both.sort_values("cell_id"), [
                       ("cell_id", "cell", None), ("status_1", "status 1st", None),
                       ("status_2", "status 2nd", None),
                       ("samples_per_s_1", f"{speed} 1st", "{:,.0f}"),
                       ("samples_per_s_2", f"{speed} 2nd", "{:,.0f}"),
                       ("ratio", f"{speed} ratio (2nd/1st)", "{:.3f}"),
                       ("auc_1", f"{auc} 1st", _F4), ("auc_2", f"{auc} 2nd", _F4),
                       ("auc_delta", f"{auc} 2nd−1st", "{:+.4f}")])]
    return blocks


def build_blocks(run_paths: list[Path], published: list[dict] | None = None) -> list[tuple]:
    """The report as blocks: ("h", level, text), ("p"|"note", text),
    ("table", frame, caption), ("figure", name, Figure, caption), ("details", summary,
    text); tables with a caption and figures are numbered ("Table 2. ...")."""
    frame, runs = load_runs(run_paths)
    r = _Report(frame, runs, load_published() if published is None else published)
    return _numbered(_summary(r) + _quality(r) + _throughput(r) + _parallel_modes(r)
                     + _hash_tables(r) + _embedding_cache(r) + _online(r) + _peers(r)
                     + _roofline(r)
                     + _problems(r)
                     + _environment(r) + _comparison(r))


def _numbered(blocks: list[tuple]) -> list[tuple]:
    """Prefix captions with "Table N." and "Figure N.", each counted in order."""
    counts = {"table": 0, "figure": 0}
    numbered = []
    for block in blocks:
        kind, caption = block[0], block[-1]
        if kind in counts and caption:
            counts[kind] += 1
            block = (*block[:-1], f"{kind.title()} {counts[kind]}. {caption}")
        numbered.append(block)
    return numbered


def _markdown(blocks: list[tuple], out_dir: Path) -> str:
    parts = []
    for kind, *rest in blocks:
        if kind == "h":
            parts.append(f"{'#' * rest[0]} {rest[1]}")
        elif kind == "p":
            parts.append(rest[0])
        elif kind == "note":
            parts.append(f"> **Note.** {rest[0]}")
        elif kind == "table":
            parts.append(_markdown_table(*rest))
        elif kind == "figure":
            name, png, caption = rest
            (out_dir / f"report.{name}.png").write_bytes(png)
            parts.append(f"![{caption.split('.')[0]}](report.{name}.png)\n\n*{caption}*")
        elif kind == "details":
            fence = "`" * max(3, 1 + max((len(m) for m in re.findall(r"`+", rest[1])),
                                         default=0))
            parts.append(f"<details><summary>{html.escape(rest[0])}</summary>\n\n"
                         f"{fence}\n{rest[1].rstrip()}\n{fence}\n\n</details>")
    return "\n\n".join(parts) + "\n"


def _markdown_table(frame: pd.DataFrame, caption: str | None) -> str:
    def cell(value) -> str:
        if isinstance(value, Link):
            return f"[{value.text.replace(']', '')}]({value.url})"
        return value.replace("|", "\\|").replace("\n", " ")
    table = tabulate(frame.map(cell), headers="keys", tablefmt="github", showindex=False,
                     disable_numparse=True)
    return f"*{caption}*\n\n{table}" if caption else table


def _html(blocks: list[tuple]) -> str:
    parts = []
    for kind, *rest in blocks:
        if kind == "h":
            parts.append(f"<h{rest[0]}>{html.escape(rest[1])}</h{rest[0]}>")
        elif kind in ("p", "note"):
            css = ' class="note"' if kind == "note" else ""
            parts.append(f"<p{css}>{html.escape(rest[0])}</p>")
        elif kind == "table":
            parts.append(_html_table(*rest))
        elif kind == "figure":
            data = base64.b64encode(rest[1]).decode("ascii")
            caption = html.escape(rest[2])
            parts.append(f'<figure><img alt="{caption}" src="data:image/png;base64,{data}">'
                         f"<figcaption>{caption}</figcaption></figure>")
        elif kind == "details":
            parts.append(f"<details><summary>{html.escape(rest[0])}</summary>"
                         f"<pre>{html.escape(rest[1])}</pre></details>")
    return ('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>mindrec-bench report</title><style>{_CSS}</style></head>\n<body>\n"
            + "\n".join(parts) + "\n</body></html>\n")


def _html_table(frame: pd.DataFrame, caption: str | None) -> str:
    """A table in its own horizontal scroll box; numbers right-aligned, links as <a>."""
    def cell(value) -> str:
        if isinstance(value, Link):
            return f'<td><a href="{html.escape(value.url)}">{html.escape(value.text)}</a></td>'
        css = ' class="num"' if _NUMBER_TEXT.match(value) else ""
        return f"<td{css}>{html.escape(value)}</td>"
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    body = "\n".join(f"<tr>{''.join(map(cell, row))}</tr>"
                     for row in frame.itertuples(index=False))
    title = f"<caption>{html.escape(caption)}</caption>" if caption else ""
    return (f'<div class="table"><table>{title}<thead><tr>{head}</tr></thead>\n'
            f"<tbody>\n{body}\n</tbody></table></div>")


def write_report(run_paths: list[Path], out_dir: Path,
                 published: list[dict] | None = None) -> tuple[Path, Path]:
    """Write ``out_dir/report.md`` (figures as ``report.<name>.png``) and a
    self-contained ``out_dir/report.html`` for the runs in ``run_paths``; returns both.

    Args:
        run_paths: result stores (``results/runs/<run-id>.jsonl``), first run first; with
            several, each later run is compared cell by cell with the first.
        out_dir: where the report goes (created if missing).
        published: published figures; None loads ``reference/published.yaml``.
    """
    if not run_paths:
        raise ValueError("write_report: no runs given")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    blocks = [(*block[:2], figure_png(block[2]), block[3]) if block[0] == "figure"
              else block for block in build_blocks([Path(p) for p in run_paths], published)]
    md_path, html_path = out_dir / "report.md", out_dir / "report.html"
    write_atomic(md_path, _markdown(blocks, out_dir))
    write_atomic(html_path, _html(blocks))
    return md_path, html_path
