"""Comparison report of one or more sweep runs: ``report.md`` and ``report.html``.

Reads ``results/runs/<run-id>.jsonl`` (result records, :mod:`bench.results`), the optional
``<run-id>.limits.json`` beside each (machine-limit kernels measured at run start) and the
published figures (:mod:`bench.references`). Sections: summary, quality against the
Bayes optimum and the published Criteo AUCs, throughput and memory (table and plots),
roofline fraction, skipped and failed cells, environment, and, given several runs, a
cell-by-cell comparison of each later run with the first.

The report is built once as a list of blocks and rendered twice: Markdown (tables by
tabulate, plots as ``report.<name>.png`` beside it) and self-contained HTML (inline CSS,
plots as base64 PNG). Runs with no ``ok`` cell still give a report, without plots.
"""
from __future__ import annotations

import base64
import html
import json
import re
from pathlib import Path

import pandas as pd
from tabulate import tabulate

from bench.plots import bar_plot_png, line_plot_png
from bench.references import format_value, load_published
from bench.results import STATUSES, now_iso, read_records, write_atomic

SYNTHETIC_DISCLAIMER = (
    "Synthetic-data AUCs are NOT Criteo figures: they cannot be compared with the "
    "published Criteo AUCs. For a synthetic run only the gap to the Bayes-optimal AUC of "
    "the same synthetic test split is meaningful.")

_SPEC = ("model", "dataset", "mode", "workers", "hardware", "embedding", "vocab_size",
         "table_size", "sparse")
_METRICS = ("samples_per_s", "step_ms_p50", "step_ms_p90", "compile_s", "peak_rss_mb",
            "peak_device_mb", "auc", "logloss", "bayes_auc", "flops_per_sample",
            "roofline_samples_per_s", "roofline_fraction", "peak_rss_mb_per_worker",
            "hash_live_rows", "hash_admitted", "hash_evicted", "hash_candidates",
            "hash_default_fraction", "hash_index_mb", "table_mb_per_worker")
_INT, _F0, _F2, _F3, _F4 = "{:,.0f}", "{:,.0f}", "{:.2f}", "{:.3f}", "{:.4f}"
_CSS = """body{font:14px/1.45 system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;
color:#222}table{border-collapse:collapse;margin:.6em 0 1.2em;font-size:13px}
th,td{border:1px solid #ccc;padding:3px 8px;text-align:left}th{background:#f0f0f0}
tr:nth-child(even) td{background:#fafafa}.note{background:#fff6d6;border-left:4px solid #e0b000;
padding:.5em .8em}pre{background:#f6f6f6;padding:.6em;overflow-x:auto;font-size:12px}
img{max-width:100%;border:1px solid #ddd;margin:.4em 0}h2{border-bottom:1px solid #ddd}"""


def load_runs(run_paths: list[Path]) -> tuple[pd.DataFrame, list[dict]]:
    """One row per record (all runs, in the given order) and one summary dict per run."""
    rows, runs = [], []
    for path in map(Path, run_paths):
        records = read_records(path)
        run_id = records[0]["run_id"] if records else path.name.removesuffix(".jsonl")
        limits_path = path.with_name(f"{path.name.removesuffix('.jsonl')}.limits.json")
        runs.append({"run": run_id, "path": path, "records": records,
                     "limits": json.loads(limits_path.read_text())
                     if limits_path.is_file() else None})
        rows += [{"run": run_id, "cell_id": r["cell_id"], "status": r["status"],
                  "reason": r["reason"], **{k: r["spec"].get(k) for k in _SPEC},
                  **{k: r["metrics"].get(k) for k in _METRICS}} for r in records]
    frame = pd.DataFrame(rows, columns=["run", "cell_id", "status", "reason", *_SPEC,
                                        *_METRICS])
    for column in ("workers", "vocab_size", "table_size", *_METRICS):
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
    frame["table_size"] = frame["table_size"].fillna(frame["vocab_size"])
    return frame, runs


def _show(frame: pd.DataFrame, columns: list[tuple[str, str, str | None]]) -> pd.DataFrame:
    """Display copy: (column, header, format) -> formatted strings, missing as an em dash."""
    def cell(value, fmt):
        if value is None or (not isinstance(value, (list, dict)) and pd.isna(value)):
            return "—"
        return fmt.format(value) if fmt else str(value)
    return pd.DataFrame({header: [cell(v, fmt) for v in frame[col]]
                         for col, header, fmt in columns})


def _first_line(text: str | None) -> str:
    return (text or "").strip().splitlines()[0] if (text or "").strip() else ""


def _summary(frame: pd.DataFrame, runs: list[dict]) -> list[tuple]:
    counts = (frame.groupby("run")["status"].value_counts().unstack(fill_value=0)
              .reindex(index=[r["run"] for r in runs], columns=list(STATUSES), fill_value=0))
    table = pd.DataFrame([{
        "run": r["run"], "suite": (r["records"] or [{}])[0].get("suite"),
        "records": str(r["path"]), "cells": len(r["records"]),
        **{s: int(counts.loc[r["run"], s]) for s in STATUSES},
        "started": min((x["started_at"] for x in r["records"]), default=None),
        "git": _git(r["records"])} for r in runs])
    total = {s: int(counts[s].sum()) for s in STATUSES}
    return [("h", 1, "mindrec-bench report"),
            ("p", f"Runs: {', '.join(r['run'] for r in runs)}. Cells: {len(frame)} "
                  f"({total['ok']} ok, {total['skipped']} skipped, {total['failed']} failed). "
                  f"Generated {now_iso()} from the result records listed below."),
            ("table", _show(table, [(c, c, None) for c in table.columns]))]


def _git(records: list[dict]) -> str | None:
    if not records or not records[0]["git"].get("commit"):
        return None
    git = records[0]["git"]
    return f"{git['commit'][:12]}{' (dirty)' if git.get('dirty') else ''}"


def _published_table(published: list[dict], models: list[str], metrics: tuple) -> pd.DataFrame:
    rows = [{"model": e["model"], "metric": e["metric"], "figure": format_value(e),
             "dataset": e["dataset"], "split": e["split"], "hardware": e["hardware"],
             "devices": e["devices"], "id": e["id"], "source": e["source"]["url"]}
            for e in published if e["model"] in models and e["metric"] in metrics]
    frame = pd.DataFrame(rows, columns=["model", "metric", "figure", "dataset", "split",
                                        "hardware", "devices", "id", "source"], dtype=object)
    return _show(frame, [(c, c, None) for c in frame.columns])


def _quality(ok: pd.DataFrame, models: list[str], published: list[dict],
             multi: bool) -> list[tuple]:
    blocks: list[tuple] = [("h", 2, "Quality"), ("note", SYNTHETIC_DISCLAIMER)]
    measured = ok.dropna(subset=["auc"])
    if measured.empty:
        blocks.append(("p", "No ok cell measured an AUC."))
    else:
        keys = (["run"] if multi else []) + ["model", "embedding", "table_size", "bayes_auc"]
        table = (measured.groupby(keys, dropna=False, sort=True)
                 .agg(cells=("cell_id", "count"), auc=("auc", "mean"),
                      auc_min=("auc", "min"), logloss=("logloss", "mean")).reset_index())
        table["gap"] = table["bayes_auc"] - table["auc"]
        blocks += [("p", "Measured test AUC per model, embedding and table size (mean over "
                         "its cells), "
                         "the Bayes-optimal AUC of the synthetic test split (the target) "
                         "and the gap between them (Bayes − measured)."),
                   ("table", _show(table, ([("run", "run", None)] if multi else []) + [
                       ("model", "model", None), ("embedding", "embedding", None),
                       ("table_size", "table size", _INT),
                       ("cells", "cells", None), ("auc", "AUC", _F4),
                       ("auc_min", "AUC min", _F4), ("logloss", "logloss", _F4),
                       ("bayes_auc", "Bayes AUC (target)", _F4),
                       ("gap", "gap to Bayes", _F4)]))]
    pub = _published_table(published, models, ("auc", "logloss"))
    blocks.append(("h", 3, "Published Criteo figures for these models"))
    if pub.empty:
        blocks.append(("p", "reference/published.yaml has no AUC or logloss for these models."))
    else:
        blocks += [("p", "Real Criteo data, other splits and hardware; see "
                         "reference/published.yaml for settings and sources."), ("table", pub)]
    return blocks


def _throughput(ok: pd.DataFrame, published: list[dict], models: list[str],
                multi: bool) -> list[tuple]:
    blocks: list[tuple] = [("h", 2, "Throughput and memory")]
    if ok.empty:
        return blocks + [("p", "No ok cells: no throughput table, plots omitted.")]
    table = ok.sort_values(["model", "mode", "embedding", "table_size", "workers"])
    columns = ([("run", "run", None)] if multi else []) + [
        ("model", "model", None), ("mode", "mode", None), ("workers", "workers", _INT),
        ("hardware", "hardware", None), ("embedding", "embedding", None),
        ("table_size", "table size", _INT), ("samples_per_s", "samples/s", _F0),
        ("step_ms_p50", "step p50 ms", _F2), ("step_ms_p90", "step p90 ms", _F2),
        ("compile_s", "compile s", _F2), ("peak_rss_mb", "peak RSS MB", _F0),
        ("roofline_fraction", "roofline fraction", _F3)]
    if table["sparse"].notna().any():
        columns.insert(6 + multi, ("sparse", "sparse", None))
    blocks.append(("table", _show(table, columns)))
    by = ([c for c in ("run", "hardware") if ok[c].nunique() > 1]
          + ["model", "mode", "workers", "embedding"])
    for name, y, label in (("throughput", "samples_per_s", "samples/s"),
                           ("memory", "peak_rss_mb", "peak RSS (MB)")):
        png = line_plot_png(ok, y, by, title=f"{label} vs table size", ylabel=label)
        blocks.append(("img", name, png, f"{label} vs table size") if png
                      else ("p", f"Plot of {label} omitted: no ok cell recorded it."))
    pub = _published_table(published, models, ("samples_per_s",))
    if not pub.empty:
        blocks += [("p", "Published throughput (other hardware, model sizes and data; "
                         "for orientation, not comparison):"), ("table", pub)]
    return blocks


def _parallel_modes(ok: pd.DataFrame, multi: bool) -> list[tuple]:
    static = ok[ok["embedding"] == "static"]
    if (static["mode"] == "standalone").all():
        return []
    shown = static.assign(layout=static["mode"] + " x" + static["workers"].astype(int).astype(str))
    # Standalone first, then the parallel layouts by workers.
    shown = shown.sort_values(["workers", "mode", "model", "table_size"])
    blocks: list[tuple] = [
        ("h", 2, "Parallel modes"),
        ("p", "Static-table cells by parallel mode: standalone (one process), data_parallel "
              "(whole model on every worker, gradients averaged) and hybrid (tables sharded "
              "by rows over the workers, the rest data parallel), all msrun workers on this "
              "machine. Throughput counts the global batch; memory is each worker's peak "
              "(the largest worker) and its share of the tables. With as many workers as "
              "cores or more, no speed-up is expected: this shows the cost of the "
              "collectives and the memory split."),
        ("table", _show(shown, ([("run", "run", None)] if multi else []) + [
            ("model", "model", None), ("layout", "mode x workers", None),
            ("table_size", "table size", _INT), ("samples_per_s", "samples/s", _F0),
            ("peak_rss_mb_per_worker", "peak RSS MB per worker", _F0),
            ("table_mb_per_worker", "table MB per worker", _F2),
            ("peak_rss_mb", "peak RSS MB (all workers)", _F0), ("auc", "AUC", _F4)]))]
    by = [c for c in ("run", "hardware") if ok[c].nunique() > 1] + ["model", "table_size"]
    for name, y, label in (("modes-throughput", "samples_per_s", "samples/s"),
                           ("modes-memory", "peak_rss_mb_per_worker", "peak RSS per worker (MB)")):
        png = bar_plot_png(shown, y, "layout", by, title=f"{label} by parallel mode",
                           ylabel=label, xlabel="mode x workers")
        blocks.append(("img", name, png, f"{label} by parallel mode") if png
                      else ("p", f"Plot of {label} omitted: no ok cell recorded it."))
    return blocks


def _hash_tables(ok: pd.DataFrame, multi: bool) -> list[tuple]:
    rows = ok.dropna(subset=["hash_live_rows"])
    if rows.empty:
        return []
    return [("h", 2, "Hash tables"),
            ("p", "End-of-training counters of the dynamic hash tables: rows live, keys "
                  "admitted and evicted, keys seen but never admitted (below the permit "
                  "threshold), the share of lookups that read the default row, and the "
                  "host index's memory."),
            ("table", _show(rows, ([("run", "run", None)] if multi else []) + [
                ("cell_id", "cell", None), ("hash_live_rows", "live rows", _INT),
                ("hash_admitted", "admitted", _INT), ("hash_evicted", "evicted", _INT),
                ("hash_candidates", "not admitted", _INT),
                ("hash_default_fraction", "default lookups", "{:.2%}"),
                ("hash_index_mb", "index MB", _F2), ("auc", "AUC", _F4),
                ("samples_per_s", "samples/s", _F0)]))]


def _roofline(ok: pd.DataFrame, multi: bool) -> list[tuple]:
    rows = ok.dropna(subset=["roofline_fraction"])
    if rows.empty:
        return []
    rows = rows.assign(mflops=rows["flops_per_sample"] / 1e6).sort_values(
        "roofline_fraction", ascending=False)
    return [("h", 2, "Roofline fraction"),
            ("p", "Measured samples/s over the sgemm ceiling (sgemm rate / 3 × forward "
                  "FLOPs per sample) of the machine the run measured at its start."),
            ("table", _show(rows, ([("run", "run", None)] if multi else []) + [
                                   ("model", "model", None), ("mode", "mode", None),
                                   ("embedding", "embedding", None),
                                   ("table_size", "table size", _INT),
                                   ("mflops", "MFLOP/sample (fwd)", _F3),
                                   ("samples_per_s", "samples/s", _F0),
                                   ("roofline_samples_per_s", "roofline samples/s", _F0),
                                   ("roofline_fraction", "fraction", _F3)]))]


def _problems(frame: pd.DataFrame) -> list[tuple]:
    bad = frame[frame["status"] != "ok"]
    blocks: list[tuple] = [("h", 2, "Skipped and failed cells")]
    if bad.empty:
        return blocks + [("p", "None.")]
    shown = bad.assign(first=bad["reason"].map(_first_line))
    blocks.append(("table", _show(shown, [("run", "run", None), ("cell_id", "cell", None),
                                          ("status", "status", None),
                                          ("hardware", "hardware", None),
                                          ("first", "reason", None)])))
    for row in bad[bad["reason"].fillna("").str.strip().str.contains("\n")].itertuples():
        blocks.append(("details", f"{row.status}: {row.run} / {row.cell_id} (full reason)",
                       row.reason))
    return blocks


def _environment(runs: list[dict]) -> list[tuple]:
    blocks: list[tuple] = [("h", 2, "Environment")]
    envs = {r["run"]: r["records"][0]["env"] for r in runs if r["records"]}
    if envs:
        keys = list(dict.fromkeys(k for env in envs.values() for k in env))
        table = pd.DataFrame({"key": keys, **{run: [_env_value(env.get(k)) for k in keys]
                                              for run, env in envs.items()}})
        blocks += [("p", "From the first record of each run."),
                   ("table", _show(table, [(c, c, None) for c in table.columns]))]
    limits = pd.DataFrame([{"run": r["run"], **r["limits"]} for r in runs if r["limits"]],
                          columns=["run", "sgemm_gflops", "mem_bw_gbs", "measured_at"])
    if limits.empty:
        blocks.append(("p", "No machine-limit sidecar (RUN_ID.limits.json) for these runs."))
    else:
        blocks += [("p", "Machine limits measured at the start of the run:"),
                   ("table", _show(limits, [("run", "run", None),
                                            ("sgemm_gflops", "sgemm GFLOP/s", "{:.1f}"),
                                            ("mem_bw_gbs", "copy bandwidth GB/s", "{:.1f}"),
                                            ("measured_at", "measured at", None)]))]
    return blocks


def _env_value(value) -> str | None:
    if isinstance(value, list):
        return "; ".join(", ".join(f"{k}={v}" for k, v in g.items()) if isinstance(g, dict)
                         else str(g) for g in value) or "none"
    return value


def _comparison(frame: pd.DataFrame, runs: list[dict]) -> list[tuple]:
    if len(runs) < 2:
        return []
    blocks: list[tuple] = [("h", 2, "Run comparison")]
    cols = ["cell_id", "status", "samples_per_s", "auc"]
    first = runs[0]["run"]
    base = frame[frame["run"] == first][cols].drop_duplicates("cell_id", keep="last")
    for other in (r["run"] for r in runs[1:]):
        cells = frame[frame["run"] == other][cols].drop_duplicates("cell_id", keep="last")
        both = base.merge(cells, on="cell_id", how="outer", suffixes=("_1", "_2"))
        both["ratio"] = both["samples_per_s_2"] / both["samples_per_s_1"]
        both["auc_delta"] = both["auc_2"] - both["auc_1"]
        median = both["ratio"].median()
        blocks += [("p", f"{other} (2nd) against {first} (1st), joined on cell id; "
                         f"median samples/s ratio over {both['ratio'].notna().sum()} cells "
                         f"measured in both: "
                         f"{'—' if pd.isna(median) else f'{median:.3f}'}."),
                   ("table", _show(both.sort_values("cell_id"), [
                       ("cell_id", "cell", None), ("status_1", "status 1st", None),
                       ("status_2", "status 2nd", None),
                       ("samples_per_s_1", "samples/s 1st", _F0),
                       ("samples_per_s_2", "samples/s 2nd", _F0),
                       ("ratio", "samples/s ratio (2nd/1st)", _F3),
                       ("auc_1", "AUC 1st", _F4), ("auc_2", "AUC 2nd", _F4),
                       ("auc_delta", "AUC 2nd−1st", "{:+.4f}")]))]
    return blocks


def build_blocks(run_paths: list[Path], published: list[dict] | None = None) -> list[tuple]:
    """The report as blocks: ("h", level, text), ("p"|"note", text), ("table", frame),
    ("img", name, png, alt), ("details", summary, text)."""
    frame, runs = load_runs(run_paths)
    published = load_published() if published is None else published
    ok = frame[frame["status"] == "ok"]
    models = list(dict.fromkeys(frame["model"].dropna()))
    multi = len(runs) > 1
    return (_summary(frame, runs) + _quality(ok, models, published, multi)
            + _throughput(ok, published, models, multi) + _parallel_modes(ok, multi)
            + _hash_tables(ok, multi)
            + _roofline(ok, multi) + _problems(frame)
            + _environment(runs) + _comparison(frame, runs))


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
            cells = rest[0].map(lambda s: s.replace("|", "\\|").replace("\n", " "))
            parts.append(tabulate(cells, headers="keys", tablefmt="github",
                                  showindex=False, disable_numparse=True))
        elif kind == "img":
            name, png, alt = rest
            (out_dir / f"report.{name}.png").write_bytes(png)
            parts.append(f"![{alt}](report.{name}.png)")
        elif kind == "details":
            fence = "`" * max(3, 1 + max((len(m) for m in re.findall(r"`+", rest[1])),
                                         default=0))
            parts.append(f"<details><summary>{html.escape(rest[0])}</summary>\n\n"
                         f"{fence}\n{rest[1].rstrip()}\n{fence}\n\n</details>")
    return "\n\n".join(parts) + "\n"


def _html(blocks: list[tuple]) -> str:
    parts = []
    for kind, *rest in blocks:
        if kind == "h":
            parts.append(f"<h{rest[0]}>{html.escape(rest[1])}</h{rest[0]}>")
        elif kind in ("p", "note"):
            css = ' class="note"' if kind == "note" else ""
            parts.append(f"<p{css}>{html.escape(rest[0])}</p>")
        elif kind == "table":
            parts.append(tabulate(rest[0], headers="keys", tablefmt="html",
                                  showindex=False, disable_numparse=True))
        elif kind == "img":
            data = base64.b64encode(rest[1]).decode("ascii")
            parts.append(f'<img alt="{html.escape(rest[2])}" '
                         f'src="data:image/png;base64,{data}">')
        elif kind == "details":
            parts.append(f"<details><summary>{html.escape(rest[0])}</summary>"
                         f"<pre>{html.escape(rest[1])}</pre></details>")
    return ('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>mindrec-bench report</title><style>{_CSS}</style></head>\n<body>\n"
            + "\n".join(parts) + "\n</body></html>\n")


def write_report(run_paths: list[Path], out_dir: Path,
                 published: list[dict] | None = None) -> tuple[Path, Path]:
    """Write ``out_dir/report.md`` (plots as ``report.<name>.png``) and a self-contained
    ``out_dir/report.html`` for the runs in ``run_paths``; returns both paths.

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
    blocks = build_blocks([Path(p) for p in run_paths], published)
    md_path, html_path = out_dir / "report.md", out_dir / "report.html"
    write_atomic(md_path, _markdown(blocks, out_dir))
    write_atomic(html_path, _html(blocks))
    return md_path, html_path
