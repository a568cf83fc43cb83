"""The report (bench/report.py): the structure of its Markdown and HTML and the data of
its figures, on hand-made records (``record_factory``) and on real /1 records."""
import json
import re
import shutil
from pathlib import Path

import pytest
from matplotlib.colors import to_hex

from bench.job.limits import SCHEMA as LIMITS_SCHEMA
from bench.references import load_published
from bench.report import (LOADED_CPU_FRACTION, SYNTHETIC_DISCLAIMER, VOCABULARY_NOTE,
                          _model_shape,
                          build_blocks, load_runs, write_report)
from bench.results import METRICS, SPEC, append_record
from bench.suite import CellSpec, DataSpec

DATA = Path(__file__).parent / "data"
FAILED_LOG = "Traceback (most recent call last):\n  File \"x.py\", line 1\nMemoryError: | pipe"


@pytest.fixture(scope="module")
def published():
    return load_published()


def cell(make, *, model="wide_deep", table_size=200_000, mode="standalone", workers=1,
         embedding="static", run_id="r1", repeat=0, speed=1.0, **metrics):
    """An ok record of one configuration; samples/s falls with the table size."""
    base = {"wide_deep": 10_000.0, "dcn": 7_000.0}[model] * speed
    suffix = f"-rep{repeat}" if repeat else ""
    return make(run_id=run_id, cell_id=f"{model}-{mode}x{workers}-{embedding}-t{table_size}"
                f"{suffix}",
                spec={"model": model, "table_size": table_size, "data_vocab": 32_542,
                      "mode": mode, "workers": workers, "embedding": embedding},
                metrics={"samples_per_s": base / (1 + table_size / 1e7),
                         "peak_rss_mb": 800 + table_size / 1e4,
                         "peak_rss_mb_per_worker": (800 + table_size / 1e4) / workers,
                         "flops_per_sample": 2.65e6, "roofline_samples_per_s": 24_000.0,
                         "roofline_fraction": base / 24_000, **metrics})


def store(path: Path, records: list[dict]) -> Path:
    for record in records:
        append_record(path, record)
    return path


def standard_run(make, runs_dir: Path, run_id="r1", speed=1.0, limits=True) -> Path:
    """Two models at two table sizes, a skipped and a failed cell, a version 1 limits file."""
    records = [cell(make, model=model, table_size=size, run_id=run_id, speed=speed)
               for model in ("wide_deep", "dcn") for size in (200_000, 10_000_000)]
    records += [make(run_id=run_id, cell_id="dcn-gpu", status="skipped",
                     spec={"hardware": "gpu"},
                     reason="no NVIDIA GPU on this machine (nvmlInit failed)"),
                make(run_id=run_id, cell_id="wide_deep-ascend", status="failed",
                     spec={"model": "wide_deep", "hardware": "ascend"}, reason=FAILED_LOG)]
    path = store(runs_dir / f"{run_id}.jsonl", records)
    if limits:
        (runs_dir / f"{run_id}.limits.json").write_text(json.dumps(
            {"sgemm_gflops": 197.5, "mem_bw_gbs": 12.25, "measured_at": "2026-11-29T00:00"}))
    return path


def section(md: str, title: str) -> str:
    return md.split(f"\n## {title}\n")[1].split("\n## ")[0]


def md_rows(text: str, first_header: str) -> list[dict]:
    """The rows of the first Markdown table whose first header is ``first_header``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if re.match(rf"\| {first_header} +\|", line))
    heads = [c.strip() for c in lines[start].strip("|").split("|")]
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append(dict(zip(heads, (c.strip() for c in line.strip("|").split("|")))))
    return rows


def figures(blocks: list[tuple]) -> dict:
    return {block[1]: block[2] for block in blocks if block[0] == "figure"}


def legend_colours(fig) -> dict[str, str]:
    """Legend label -> colour (hex) of a line or bar figure."""
    handles, labels = fig.axes[0].get_legend_handles_labels()
    colours = {}
    for handle, label in zip(handles, labels):
        artist = handle[0] if hasattr(handle, "__getitem__") else handle
        colours[label] = to_hex(artist.get_color() if hasattr(artist, "get_color")
                                else artist.get_facecolor())
    return colours


def test_one_run_report(tmp_path, published, record_factory):
    run = standard_run(record_factory, tmp_path / "runs")
    md_path, html_path = write_report([run], tmp_path / "out", published)
    md, page = md_path.read_text(), html_path.read_text()
    assert "4 ok, 1 skipped, 1 failed" in md
    for title in ("Quality", "Throughput and memory", "Roofline fraction",
                  "Skipped and failed cells", "Environment"):
        assert f"\n## {title}\n" in md
    assert SYNTHETIC_DISCLAIMER in md and "NOT Criteo figures" in page
    quality = md_rows(section(md, "Quality"), "model")
    assert {row["gap to Bayes"] for row in quality} == {"0.0200"}  # 0.80 - 0.78
    assert "0.80937" in md
    speed = md_rows(section(md, "Throughput and memory"), "model")
    assert [row["table size (rows)"] for row in speed] == ["200,000", "10,000,000"] * 2
    assert speed[2]["samples/s"] == "9,804"  # 10000 / 1.02
    # skipped reason in the table; the failed log's first line in it, all of it below
    problems = md_rows(section(md, "Skipped and failed cells"), "run")
    assert [row["reason"] for row in problems] == [
        "no NVIDIA GPU on this machine (nvmlInit failed)",
        "Traceback (most recent call last):"]
    assert "MemoryError: | pipe" in md.split("<details>")[1]
    assert "197.5" in md and "12.2" in md and "AMD EPYC" in md
    assert "Run comparison" not in md
    # figures beside the markdown; the HTML embeds them and loads nothing from outside
    assert (tmp_path / "out" / "report.throughput.png").is_file()
    assert page.count("data:image/png;base64,") == 3  # AUC, throughput, memory
    assert not re.search(r"""src=["']?(https?:)?//""", page)
    assert "<link" not in page and "<script" not in page
    assert "MemoryError: | pipe" in page and "<details>" in page


def test_the_frame_has_a_column_per_declared_key_and_headers_come_from_them(
        tmp_path, published, record_factory):
    run = standard_run(record_factory, tmp_path / "runs")
    frame, _ = load_runs([run])
    assert set(SPEC) | set(METRICS) <= set(frame.columns)
    md = write_report([run], tmp_path / "out", published)[0].read_text()
    heads = md_rows(section(md, "Throughput and memory"), "model")[0]
    for name in ("table_size", "samples_per_s", "step_ms_p50", "step_ms_p90", "compile_s",
                 "peak_rss_mb"):
        assert (SPEC | METRICS)[name].header in heads
    assert "peak RSS (MiB)" in heads and not re.search(r"\bMB\b", md)


def test_published_sources_are_short_links(tmp_path, published, record_factory):
    run = standard_run(record_factory, tmp_path / "runs")
    md_path, html_path = write_report([run], tmp_path / "out", published)
    md, page = md_path.read_text(), html_path.read_text()
    shown = [e for e in published if e["model"] in ("wide_deep", "dcn")]
    links = re.findall(r'<a href="([^"]+)">([^<]+)</a>', page)
    assert {url for url, _ in links} == {e["source"]["url"] for e in shown}
    assert all(len(text) <= 60 and "https" not in text for _, text in links)
    assert ("openbenchmark.github.io/BARS/CTR/leaderboard/criteo_x1.html",
            "openbenchmark.github.io: leaderboard/criteo_x1.html") in {
        (url.removeprefix("https://"), text) for url, text in links}
    md_links = re.findall(r"\[([^\]]+)\]\((https://[^)]+)\)", md)
    assert {url for _, url in md_links} == {e["source"]["url"] for e in shown}
    # no address as visible text, no entry ids
    visible = re.sub(r'href="[^"]*"', "", page)
    assert "https://" not in visible and "https://" not in re.sub(r"\]\([^)]*\)", "", md)
    assert not any(e["id"] in md for e in shown)


def test_every_table_sits_in_its_own_scroll_box(tmp_path, published, record_factory):
    run = standard_run(record_factory, tmp_path / "runs")
    page = write_report([run], tmp_path / "out", published)[1].read_text()
    assert page.count("<table") >= 8
    assert page.count("<table") == page.count('<div class="table"><table>')
    css = page.split("<style>")[1].split("</style>")[0]
    assert ".table{overflow-x:auto" in css
    assert re.search(r"th,td\{[^}]*max-width:[^}]*overflow-wrap:break-word", css)


def test_quality_has_a_row_per_mode_and_explains_the_vocabulary(tmp_path, published,
                                                                  record_factory):
    definition = CellSpec(model="wide_deep", data=DataSpec(rows=300_000, vocab=200_000))
    records = [cell(record_factory, mode=mode, workers=workers, repeat=repeat, auc=auc,
                    table_size=32_542)
               for mode, workers, repeat, auc in (("standalone", 1, 0, 0.70),
                                                  ("standalone", 1, 1, 0.68),
                                                  ("data_parallel", 2, 0, 0.72),
                                                  ("hybrid", 2, 0, 0.74))]
    for record in records:
        record["spec"]["cell"] = definition.to_dict()
    run = store(tmp_path / "runs" / "q.jsonl", records)
    md = write_report([run], tmp_path / "out", published)[0].read_text()
    quality = section(md, "Quality")
    rows = {row["mode × workers"]: row for row in md_rows(quality, "model")}
    assert set(rows) == {"standalone x1", "data_parallel x2", "hybrid x2"}
    assert (rows["standalone x1"]["cells"], rows["standalone x1"]["AUC (mean)"],
            rows["standalone x1"]["AUC (min)"]) == ("2", "0.6900", "0.6800")
    assert rows["hybrid x2"]["AUC (mean)"] == "0.7400"
    assert rows["data_parallel x2"]["AUC (mean)"] == "0.7200"
    assert {(row["generator vocabulary (v)"], row["data vocabulary"],
             row["table size (rows)"]) for row in rows.values()} == {
        ("200,000", "32,542", "32,542")}
    assert VOCABULARY_NOTE in quality and "modes are never averaged together" in quality


def test_roofline_says_what_the_ceiling_is_and_who_shares_it(tmp_path, published,
                                                             record_factory):
    records = [cell(record_factory), cell(record_factory, mode="hybrid", workers=2,
                                          sgemm_gflops=150.0)]
    run = store(tmp_path / "runs" / "roof.jsonl", records)
    md = write_report([run], tmp_path / "out", published)[0].read_text()
    roofline = section(md, "Roofline fraction")
    shared = {row["mode × workers"]: row["ceiling shared by"]
              for row in md_rows(roofline, "model")}
    assert shared == {"standalone x1": "one process", "hybrid x2": "2 workers on one machine"}
    assert "whole machine's sgemm rate" in roofline and "share that one ceiling" in roofline
    row = md_rows(roofline, "model")[0]
    assert row["ceiling sgemm (GFLOP/s)"] == "191"  # 24000 * 3 * 2.65e6 / 1e9
    assert row["roofline fraction"] == "41.7%"


def test_cells_on_a_loaded_machine_are_flagged(tmp_path, published, record_factory):
    busy = cell(record_factory, table_size=1_000, other_cpu_fraction=0.40, load_avg_1m=2.5)
    quiet = cell(record_factory, table_size=2_000, other_cpu_fraction=0.10)
    old = cell(record_factory, table_size=3_000)
    run = store(tmp_path / "runs" / "load.jsonl", [busy, quiet, old])
    md = write_report([run], tmp_path / "out", published)[0].read_text()
    summary = md.split("\n## ")[0]
    assert "1 of 2 cells ran on a loaded machine" in summary
    assert f"more than {LOADED_CPU_FRACTION:.0%}" in summary and busy["cell_id"] in summary
    assert quiet["cell_id"] not in summary
    rows = {row["table size (rows)"]: row
            for row in md_rows(section(md, "Throughput and memory"), "model")}
    assert [rows[size]["machine load"] for size in ("1,000", "2,000", "3,000")] == [
        "loaded", "quiet", "—"]
    assert rows["1,000"]["other load"] == "40.0%" and rows["1,000"]["load average"] == "2.50"


def test_no_loaded_cells_and_unrecorded_load_are_said(tmp_path, published, record_factory):
    quiet = store(tmp_path / "runs" / "quiet.jsonl",
                  [cell(record_factory, other_cpu_fraction=0.1)])
    md = write_report([quiet], tmp_path / "a", published)[0].read_text()
    assert "in none of the 1 cells that recorded it" in md and "machine load |" not in md
    old = store(tmp_path / "runs" / "old.jsonl", [cell(record_factory)])
    md = write_report([old], tmp_path / "b", published)[0].read_text()
    assert "Machine load while cells trained was not recorded" in md


def test_environment_lists_every_limits_measurement(tmp_path, published, record_factory):
    run = store(tmp_path / "runs" / "lim.jsonl", [cell(record_factory)])
    measurement = {"measured_at": "2026-12-01T00:00:00+00:00", "sgemm_gflops": 190.0,
                   "sgemm_gflops_min": 150.0, "sgemm_gflops_median": 170.0,
                   "mem_bw_gbs": 20.0, "load_avg_1m": 1.5, "load_avg_5m": 0.75, "cores": 2}
    (tmp_path / "runs" / "lim.limits.json").write_text(json.dumps({
        "schema": LIMITS_SCHEMA, "measurements": [
            {**measurement, "phase": phase} for phase in ("start", "resume", "end")]}))
    md = write_report([run], tmp_path / "out", published)[0].read_text()
    rows = md_rows(section(md, "Environment"), "run")
    assert [row["phase"] for row in rows] == ["start", "resume", "end"]
    assert rows[0]["sgemm min..median..best"] == "150.0..170.0..190.0"
    assert (rows[0]["sgemm best (GFLOP/s)"], rows[0]["load 1 min"],
            rows[0]["load 5 min"], rows[0]["cores"]) == ("190.0", "1.50", "0.75", "2")


def test_figures_and_captioned_tables_are_numbered(tmp_path, published, record_factory):
    records = [cell(record_factory, mode=mode, workers=workers)
               for mode, workers in (("standalone", 1), ("hybrid", 2))]
    run = store(tmp_path / "runs" / "n.jsonl", records)
    blocks = build_blocks([run], published)
    captions = [block[-1] for block in blocks if block[0] == "figure"]
    assert len(captions) == 5  # AUC, throughput, memory, two by parallel mode
    for number, caption in enumerate(captions, 1):
        assert caption.startswith(f"Figure {number}. ") and "?" in caption
    tables = [block[-1] for block in blocks if block[0] == "table" and block[-1]]
    assert [t.split(".")[0] for t in tables] == [f"Table {n}" for n in
                                                 range(1, len(tables) + 1)]
    md_path, html_path = write_report([run], tmp_path / "out", published)
    page, md = html_path.read_text(), md_path.read_text()
    assert len(re.findall(r"<figure><img [^>]+><figcaption>Figure \d+\. ", page)) == 5
    assert "<caption>Table 1. " in page
    assert re.search(r"!\[Figure 2\]\(report\.\w+\.png\)\n\n\*Figure 2\. How ", md)


def test_one_configuration_has_one_colour_in_every_figure(tmp_path, published,
                                                          record_factory):
    records = [cell(record_factory, mode=mode, workers=workers, table_size=size)
               for mode, workers in (("standalone", 1), ("hybrid", 2))
               for size in (200_000, 1_000_000)]
    records.append(cell(record_factory, embedding="hash", table_size=200_000))
    run = store(tmp_path / "runs" / "c.jsonl", records)
    drawn = {name: legend_colours(fig)
             for name, fig in figures(build_blocks([run], published)).items()}
    assert set(drawn) == {"auc", "throughput", "memory", "modes-throughput",
                          "modes-memory"}
    hybrid = "wide_deep / hybrid x2 / static"
    assert all(hybrid in colours for colours in drawn.values())
    for label in {label for colours in drawn.values() for label in colours}:
        assert len({colours[label] for colours in drawn.values() if label in colours}) == 1
    assert len(set(drawn["throughput"].values())) == 3  # three configurations


def test_throughput_against_table_size_or_per_configuration(tmp_path, published,
                                                            record_factory):
    sizes = store(tmp_path / "runs" / "s.jsonl",
                  [cell(record_factory, table_size=size) for size in (30_000, 10_000_000)])
    blocks = build_blocks([sizes], published)
    fig = figures(blocks)["throughput"]
    assert fig.axes[0].get_xscale() == "log" and fig.axes[0].get_ylim()[0] == 0
    caption = next(b[-1] for b in blocks if b[0] == "figure" and b[1] == "throughput")
    assert "less than 10x apart" in caption and "p90 step time" in caption
    one = store(tmp_path / "runs" / "o.jsonl",
                [cell(record_factory, model=model, table_size=1_330)
                 for model in ("wide_deep", "dcn")])
    blocks = build_blocks([one], published)
    assert len(figures(blocks)["throughput"].axes[0].patches) == 2
    caption = next(b[-1] for b in blocks if b[0] == "figure" and b[1] == "throughput")
    assert "one table size (1,330 rows)" in caption


def test_two_runs_compare_on_cell_id(tmp_path, published, record_factory):
    first = standard_run(record_factory, tmp_path / "runs", "r1")
    second = standard_run(record_factory, tmp_path / "runs", "r2", speed=1.5, limits=False)
    md = write_report([first, second], tmp_path / "out", published)[0].read_text()
    comparison = section(md, "Run comparison")
    rows = {row["cell"]: row for row in md_rows(comparison, "cell")}
    assert rows["dcn-standalonex1-static-t200000"]["samples/s ratio (2nd/1st)"] == "1.500"
    assert "median samples/s ratio over 4 cells measured in both: 1.500" in comparison
    assert {row["run"] for row in md_rows(section(md, "Throughput and memory"),
                                          "run")} == {"r1", "r2"}


def test_runs_without_ok_cells_still_report(tmp_path, record_factory):
    path = store(tmp_path / "runs" / "r3.jsonl", [
        record_factory(run_id="r3", status="skipped", spec={"hardware": "gpu"},
                       reason="no GPU")])
    md_path, html_path = write_report([path], tmp_path / "out", published=[])
    md = md_path.read_text()
    assert "0 ok, 1 skipped, 0 failed" in md and "figures omitted" in md
    assert "no GPU" in md and "No machine-limit file" in md
    assert "data:image/png" not in html_path.read_text()


def test_parallel_modes_and_hash_tables_get_their_sections(tmp_path, published,
                                                           record_factory):
    records = [cell(record_factory, mode=mode, workers=workers, table_size=1_000_000,
                    peak_rss_mb_per_worker=700.0, table_mb_per_worker=table_mb)
               for mode, workers, table_mb in (("standalone", 1, 64.0),
                                               ("data_parallel", 2, 64.0),
                                               ("hybrid", 2, 32.0))]
    records.append(cell(record_factory, embedding="hash", table_size=1_000_000,
                        hash_live_rows=900, hash_admitted=1000, hash_evicted=100,
                        hash_candidates=25, hash_default_fraction=0.0125,
                        hash_index_mb=1.5))
    run = store(tmp_path / "runs" / "p.jsonl", records)
    md = write_report([run], tmp_path / "out", published)[0].read_text()
    modes = md_rows(section(md, "Parallel modes"), "model")
    assert [(row["mode × workers"], row["tables per worker (MiB)"]) for row in modes] == [
        ("standalone x1", "64.00"), ("data_parallel x2", "64.00"), ("hybrid x2", "32.00")]
    assert "report.modes-throughput.png" in md and "report.modes-memory.png" in md
    assert (tmp_path / "out" / "report.modes-memory.png").stat().st_size > 1000
    hashed = md_rows(section(md, "Hash tables"), "model")
    assert [(row["default lookups"], row["live rows"]) for row in hashed] == [
        ("1.2%", "900")]
    records = [cell(record_factory, mode=mode, peak_rss_mb_per_worker=None)
               for mode in ("standalone", "hybrid")]
    md = write_report([store(tmp_path / "runs" / "n.jsonl", records)], tmp_path / "n",
                      published)[0].read_text()
    assert "No figure of memory per worker: no cell recorded it." in md
    assert "report.modes-throughput.png" in md and "report.modes-memory.png" not in md


def test_real_version_1_records_report(tmp_path, published):
    runs = tmp_path / "runs"
    runs.mkdir()
    shutil.copy(DATA / "records-v1.jsonl", runs / "v1.jsonl")
    (runs / "v1.limits.json").write_text(json.dumps(
        {"sgemm_gflops": 185.67, "mem_bw_gbs": 20.96, "measured_at": "2026-12-03T07:34"}))
    md = write_report([runs / "v1.jsonl"], tmp_path / "out", published)[0].read_text()
    for title in ("Quality", "Throughput and memory", "Parallel modes", "Hash tables",
                  "Roofline fraction", "Skipped and failed cells", "Environment"):
        assert f"\n## {title}\n" in md
    quality = md_rows(section(md, "Quality"), "model")
    # The /1 cell definitions migrate, so the generator vocabulary is known.
    assert {row["generator vocabulary (v)"] for row in quality} == {"2,000"}
    assert {row["mode × workers"] for row in quality} == {"standalone x1", "hybrid x2"}
    limits = md_rows(section(md, "Environment"), "run")
    assert [(row["phase"], row["sgemm best (GFLOP/s)"]) for row in limits] == [
        ("start", "185.7")]


@pytest.mark.integration
def test_report_of_a_real_sweep(tiny_sweep, tmp_path, published):
    _, records = tiny_sweep
    md_path, html_path = write_report([records], tmp_path / "out", published)
    md = md_path.read_text()
    quality = md_rows(section(md, "Quality"), "model")
    assert {row["generator vocabulary (v)"] for row in quality} == {"2,000"}
    assert all(0 < int(row["data vocabulary"].replace(",", "")) < 2000 for row in quality)
    assert {row["mode × workers"] for row in quality} == {"standalone x1", "hybrid x2"}
    limits = md_rows(section(md, "Environment"), "run")
    assert [row["phase"] for row in limits] == ["start", "end"]
    assert all(re.fullmatch(r"[\d.]+\.\.[\d.]+\.\.[\d.]+", row["sgemm min..median..best"])
               for row in limits)
    # AUC, throughput, memory, two by parallel mode, three of the cache cell
    assert html_path.read_text().count("<figure>") == 8
    cache = md_rows(section(md, "Embedding cache"), "model")
    assert [(row["device rows"], row["tiers behind"]) for row in cache] == [
        ("1,200", "host+remote+ssd")]
    assert float(cache[0]["device hit rate"].rstrip("%")) > 0
    (peer,) = md_rows(section(md, "PyTorch peer"), "model")
    assert peer["model"] == "wide_deep" and peer["rounds"] == "1"
    assert float(peer["ours / PyTorch"]) > 0 and "fused Adam" in peer["PyTorch variant"]


# The embedding cache section.

TIER_METRICS = ("hit_rate", "rows_held", "mb_held", "mb_read", "mb_written")


def cache_cell(make, fraction=0.3, tiers="host+ssd", policy="lru", *, lookahead=1,
               model="wide_deep", dataset="synthetic", host_rows=None, speed=8_000.0,
               auc=0.75, hit=0.97, run_id="r1", table_size=10_000, **metrics):
    """An ok record of a cell trained through the cache: 10,000 rows touched, the device
    ``fraction`` of them; tier metrics for each tier named; hit rates from ``hit``."""
    rows = round(fraction * 10_000)
    run_config = {"cache": {"device_rows": None, "device_fraction": fraction,
                            "tiers": tiers, "host_rows": host_rows, "remote_rows": None,
                            "remote_url": None, "ssd_path": None, "policy": policy,
                            "lookahead": lookahead}}
    tier_values = {"hit_rate": 0.5, "rows_held": 2_000, "mb_held": 0.5, "mb_read": 4.0,
                   "mb_written": 3.0}
    return make(
        run_id=run_id, cell_id=f"{model}-{dataset}-c{fraction}-{tiers}-{policy}-la{lookahead}"
        f"-h{host_rows}-t{table_size}",
        spec={"model": model, "dataset": dataset, "data_vocab": 10_000,
              "table_size": table_size, "embedding": "hash", "cache_device_rows": rows,
              "cache_device_fraction": fraction, "cache_tiers": tiers,
              "cache_policy": policy, "cache_lookahead": lookahead,
              "run_config": run_config},
        metrics={"samples_per_s": speed, "auc": auc, "cache_hit_rate": hit,
                 "cache_hit_rate_unique": hit - 0.2, "cache_hit_curve": [0.0, 0.5, hit - 0.2],
                 "cache_cold_misses": 9_990, "cache_capacity_misses": 30_000,
                 "cache_fetched_per_step": 300.0, "cache_written_back_per_step": 320.0,
                 "cache_exposed_fetch_ms": 3.0, "cache_hidden_fetch_ms": 2.0,
                 "cache_device_mb": rows * 200 / 2**20,
                 "cache_belady_hit_rate_unique": hit - 0.1,
                 "cache_lru_hit_rate_unique": hit - 0.25,
                 "cache_lfu_hit_rate_unique": hit - 0.22,
                 "cache_hit_rate_vs_belady": (hit - 0.2) / (hit - 0.1),
                 "cache_mrc": [[0.2, 0.4], [0.5, 0.15], [1.0, 0.05]],
                 **{f"cache_{tier}_{name}": value for tier in tiers.split("+")
                    for name, value in tier_values.items()}, **metrics})


def no_cache_cell(make, *, model="wide_deep", dataset="synthetic", speed=10_000.0,
                  auc=0.76, repeat=0, run_id="r1", **spec):
    """An ok record with hash tables and no cache: the whole table resident."""
    return make(run_id=run_id, cell_id=f"{model}-{dataset}-hash-rep{repeat}",
                spec={"model": model, "dataset": dataset, "data_vocab": 10_000,
                      "table_size": 10_000, "embedding": "hash", **spec},
                metrics={"samples_per_s": speed, "auc": auc})


def cache_rows(md: str, first_header: str, column: str) -> list[dict]:
    """The rows of the cache section's first table with ``first_header`` first and a
    ``column``."""
    text = section(md, "Embedding cache")
    while True:
        rows = md_rows(text, first_header)
        if column in rows[0]:
            return rows
        text = text.split(f"| {first_header}", 1)[1].split("\n\n", 1)[1]


def test_no_cache_section_without_cache_records(tmp_path, published, record_factory):
    records = [no_cache_cell(record_factory), cell(record_factory),
               record_factory(cell_id="cache-failed", status="failed", reason="boom",
                              spec={"embedding": "hash", "cache_device_rows": 3_000,
                                    "cache_tiers": "host", "cache_policy": "lru",
                                    "cache_lookahead": 1})]
    run = store(tmp_path / "runs" / "n.jsonl", records)
    md = write_report([run], tmp_path / "out", published)[0].read_text()
    assert "Embedding cache" not in md and "cache (device, tiers, policy)" not in md
    assert "cache-" not in "".join(figures(build_blocks([run], published)))
    frame, _ = load_runs([run])
    # cells without a cache keep the series (and colour) they had before the cache
    assert list(frame["series"]) == [
        "wide_deep / standalone x1 / hash", "wide_deep / standalone x1 / static",
        "dcn / standalone x1 / hash / cache 3,000 rows, host, lru"]


def cache_run(make, tmp_path) -> Path:
    return store(tmp_path / "runs" / "cache.jsonl", [
        no_cache_cell(make),
        cache_cell(make, 0.1, host_rows=1_000, speed=5_000.0, auc=0.74, hit=0.90),
        cache_cell(make, 0.3, host_rows=1_000, speed=6_000.0),
        cache_cell(make, 1.0, host_rows=1_000, speed=9_000.0, auc=0.76, hit=0.99),
        cache_cell(make, 0.3, "host", speed=5_500.0),
        cache_cell(make, 0.3, "host+remote+ssd", "lfu", speed=4_000.0,
                   cache_remote_peak_rss_mb=7.5)])


def test_cache_section_answers_hit_rates_traffic_and_memory(tmp_path, published,
                                                            record_factory):
    md = write_report([cache_run(record_factory, tmp_path)], tmp_path / "out",
                      published)[0].read_text()
    cache = section(md, "Embedding cache")
    config = ["model", "device rows", "device fraction", "tiers behind", "policy",
              "lookahead"]
    hits = cache_rows(md, "model", "device hit rate")
    assert list(hits[0]) == config + [
        "device hit rate", "device hit rate (distinct keys)", "host hit rate",
        "remote hit rate", "ssd hit rate", "cold misses (rows)", "capacity misses (rows)"]
    # sorted by tiers, policy, lookahead, then device size
    assert [(row["tiers behind"], row["policy"], row["device rows"],
             row["device fraction"]) for row in hits] == [
        ("host", "lru", "3,000", "30.0%"), ("host+remote+ssd", "lfu", "3,000", "30.0%"),
        ("host+ssd", "lru", "1,000", "10.0%"), ("host+ssd", "lru", "3,000", "30.0%"),
        ("host+ssd", "lru", "10,000", "100.0%")]
    assert (hits[2]["device hit rate"], hits[2]["device hit rate (distinct keys)"],
            hits[2]["host hit rate"], hits[2]["remote hit rate"],
            hits[2]["cold misses (rows)"]) == ("90.0%", "70.0%", "50.0%", "—", "9,990")
    replay = cache_rows(md, "model", "Belady hit rate")
    assert list(replay[0])[len(config):] == [
        "device hit rate (distinct keys)", "Belady hit rate", "LRU (replay)",
        "LFU (replay)", "of Belady"]
    assert (replay[2]["Belady hit rate"], replay[2]["LRU (replay)"],
            replay[2]["of Belady"]) == ("80.0%", "65.0%", "87.5%")
    assert ("pins the keys of the prefetched batches" in cache
            and "bounds every cache that pins at least the current step" in cache)
    traffic = cache_rows(md, "model", "exposed fetch (ms)")
    assert {"fetched per step (rows)", "written back per step (rows)", "ssd written (MiB)",
            "hidden fetch (ms)", "step p50 (ms)"} <= set(traffic[0])
    assert [row["remote read (MiB)"] for row in traffic] == [
        "—", "4.00", "—", "—", "—"]
    memory = cache_rows(md, "model", "host budget (rows)")
    assert [(row["host budget (rows)"], row["remote budget (rows)"])
            for row in memory] == [
        ("unbounded", "—"), ("30,000 (10 × device)", "unbounded"), ("1,000", "—"),
        ("1,000", "—"), ("1,000", "—")]
    assert [row["server peak RSS (MiB)"] for row in memory] == [
        "—", "7.50", "—", "—", "—"]
    assert {"device tier (MiB)", "host rows", "ssd rows", "ssd held (MiB)",
            "peak RSS (MiB)"} <= set(memory[0])
    captions = re.findall(r"\*(?:Table|Figure) \d+\. ([^*]+)\*", cache)
    assert len(captions) == 8 and all("?" in caption for caption in captions)


def test_cache_cells_are_paired_with_the_baselines_of_their_group(tmp_path, published,
                                                                  record_factory):
    make = record_factory
    records = [
        no_cache_cell(make, speed=10_000.0, auc=0.76),
        no_cache_cell(make, speed=50_000.0, batch_size=4_000),  # another group
        no_cache_cell(make, speed=40_000.0, permit_filter_value=3, repeat=2),  # another
        cache_cell(make, 0.1, speed=5_000.0, auc=0.75),
        cache_cell(make, 1.0, speed=9_000.0, auc=0.76),
        cache_cell(make, 0.3, "host", speed=6_000.0),
        cache_cell(make, 0.3, host_rows=500, speed=3_000.0),  # other capacities
        cache_cell(make, 0.3, table_size=10**9, speed=2_000.0),  # a larger logical table
        no_cache_cell(make, model="dcn", speed=6_000.0, auc=0.77),
        no_cache_cell(make, model="dcn", speed=8_000.0, auc=0.79, repeat=1),
        cache_cell(make, 0.5, model="dcn", speed=3_500.0, auc=0.78),
        cache_cell(make, 0.5, dataset="/data/other-0123456789ab", speed=1_000.0)]  # none
    run = store(tmp_path / "runs" / "pairs.jsonl", records)
    md = write_report([run], tmp_path / "out", published)[0].read_text()
    rows = cache_rows(md, "model", "samples/s ÷ no cache")
    got = [(row["model"], row["data"], row["device rows"], row["tiers behind"],
            row["no-cache cells"], row["no-cache samples/s"],
            row["samples/s ÷ no cache"], row["AUC − no cache"],
            row["smallest device (rows)"], row["samples/s ÷ smallest device"],
            row["AUC − smallest device"]) for row in rows]
    assert got == [
        ("dcn", "synthetic", "5,000", "host+ssd", "2", "7,000", "0.500", "+0.0000",
         "—", "—", "—"),
        ("wide_deep", "other", "5,000", "host+ssd", *["—"] * 7),
        ("wide_deep", "synthetic", "3,000", "host", "1", "10,000", "0.600", "-0.0100",
         "—", "—", "—"),
        ("wide_deep", "synthetic", "3,000", "host+ssd", "1", "10,000", "0.300", "-0.0100",
         "—", "—", "—"),
        ("wide_deep", "synthetic", "1,000", "host+ssd", "1", "10,000", "0.500", "-0.0100",
         "1,000", "1.000", "+0.0000"),
        ("wide_deep", "synthetic", "10,000", "host+ssd", "1", "10,000", "0.900", "+0.0000",
         "1,000", "1.800", "+0.0100"),
        ("wide_deep", "synthetic", "3,000", "host+ssd", "1", "10,000", "0.200", "-0.0100",
         "—", "—", "—")]
    baselines = section(md, "Embedding cache")
    assert "hash tables and no cache: the whole table resident" in baselines
    # a cache configuration on other data or another logical table is its own series
    series = set(load_runs([run])[0]["series"])
    assert {"wide_deep / standalone x1 / hash / cache 30%, host+ssd, lru, host 500 rows, "
            "table 10,000 / synthetic",
            "wide_deep / standalone x1 / hash / cache 30%, host+ssd, lru, host 10 × device, "
            "table 1,000,000,000 / synthetic",
            "wide_deep / standalone x1 / hash / cache 50%, host+ssd, lru, host 10 × device, "
            "table 10,000 / other", "wide_deep / standalone x1 / hash"} <= series
    assert "nearly every lookup comes from below" in baselines


def test_cache_figures_warm_up_miss_ratio_and_throughput(tmp_path, published,
                                                         record_factory):
    blocks = build_blocks([cache_run(record_factory, tmp_path)], published)
    drawn = figures(blocks)
    assert {"cache-warm-up", "cache-miss-ratio", "cache-throughput"} <= set(drawn)
    hostssd = "wide_deep / standalone x1 / hash / cache 10%, host+ssd, lru, host 1,000 rows"
    warm = drawn["cache-warm-up"].axes[0]
    lines = {line.get_label(): line for line in warm.get_lines()}
    assert len(lines) == 5
    assert list(lines[hostssd].get_xdata()) == [1, 2, 3]
    assert list(lines[hostssd].get_ydata()) == pytest.approx([0.0, 0.5, 0.70])
    assert warm.get_ylim() == (0, 1)
    mrc = drawn["cache-miss-ratio"].axes[0]
    curve = next(line for line in mrc.get_lines() if line.get_label() == hostssd)
    assert list(curve.get_xdata()) == [0.2, 0.5, 1.0]
    assert list(curve.get_ydata()) == [0.4, 0.15, 0.05]
    marks = [(list(line.get_xdata()), list(line.get_ydata())) for line in mrc.get_lines()
             if line.get_marker() in ("v", "o") and len(line.get_xdata())]
    assert ([0.1], pytest.approx([0.2])) in marks  # Belady: 1 - 0.80 at 10%
    assert ([0.1], pytest.approx([0.3])) in marks  # the run: 1 - 0.70
    assert mrc.get_ylim() == (0, 1) and mrc.get_xscale() == "log"
    speed = drawn["cache-throughput"].axes[0]
    assert [t.get_text() for t in speed.get_xticklabels()][0] == "no cache"
    assert sorted(b.get_height() for b in speed.patches) == [
        4_000.0, 5_000.0, 5_500.0, 6_000.0, 9_000.0, 10_000.0]
    assert speed.get_ylim()[0] == 0
    # one colour per configuration: the cache configurations are new series, the
    # no-cache cell keeps the colour it has in every other figure
    colours = {name: legend_colours(fig) for name, fig in drawn.items()}
    assert colours["cache-throughput"]["wide_deep / standalone x1 / hash"] == colours[
        "throughput"]["wide_deep / standalone x1 / hash"]
    for label in {label for drawn_colours in colours.values() for label in drawn_colours}:
        assert len({c[label] for c in colours.values() if label in c}) == 1
    assert len(set(colours["cache-throughput"].values())) == 6


def test_the_general_figures_leave_cache_cells_to_their_section(tmp_path, published,
                                                                record_factory):
    run = cache_run(record_factory, tmp_path)
    blocks = build_blocks([run], published)
    drawn = figures(blocks)
    for name in ("auc", "throughput", "memory"):
        assert set(legend_colours(drawn[name])) - {"Bayes-optimal AUC"} == {
            "wide_deep / standalone x1 / hash"}
        caption = next(b[-1] for b in blocks if b[0] == "figure" and b[1] == name)
        assert "see Embedding cache" in caption
    only = store(tmp_path / "runs" / "only.jsonl", [cache_cell(record_factory)])
    blocks = build_blocks([only], published)
    assert set(figures(blocks)) == {"cache-warm-up", "cache-miss-ratio", "cache-throughput"}
    assert sum("No AUC figure here" in b[1] or "No throughput or memory figure" in b[1]
               for b in blocks if b[0] == "p") == 2
    # a cache cell without a baseline still has its bar
    assert len(figures(blocks)["cache-throughput"].axes[0].patches) == 1
    # the AUC and throughput tables name each cell's cache
    md = write_report([run], tmp_path / "out", published)[0].read_text()
    for title in ("Quality", "Throughput and memory"):
        shown = [row["cache (device, tiers, policy)"]
                 for row in md_rows(section(md, title), "model")]
        # what differs between the cache cells is named: here the host tier's capacity
        assert sorted(shown) == [
            "10%, host+ssd, lru, host 1,000 rows", "100%, host+ssd, lru, host 1,000 rows",
            "30%, host+remote+ssd, lfu, host 10 × device",
            "30%, host+ssd, lru, host 1,000 rows", "30%, host, lru, host unbounded", "—"]


def online_cell(make, rate=5000.0, every=2.0, auc=0.77, frozen=0.74, run_id="r1"):
    """An ok record of an online cell (bench/job/online.py)."""
    curve = [0.6, 0.7, 0.72, 0.74, 0.75, 0.75, 0.76, 0.76, 0.77, auc]
    return make(
        run_id=run_id, cell_id=f"wide_deep-online-{rate:g}-{every:g}",
        spec={"model": "wide_deep", "embedding": "hash", "online_rate": rate,
              "online_publish_every_s": every,
              "run_config": {"online": {"stream": True, "rate": rate}}},
        metrics={"samples_per_s": rate, "auc": auc, "bayes_auc": 0.80,
                 "online_frozen_auc": frozen, "online_auc_curve": curve,
                 "online_frozen_auc_curve": [None, None] + [frozen] * 8,
                 "online_bayes_auc_curve": [0.8] * 10, "online_lag_curve": [2.0] + [0.3] * 9,
                 "online_freshness_total_p99_s": 4.5, "online_lag_growth_s": 0.01})


def test_online_cells_have_their_own_section_and_no_other(tmp_path, published,
                                                          record_factory):
    run = store(tmp_path / "runs" / "online.jsonl", [
        cell(record_factory, model="dcn", table_size=200_000),
        online_cell(record_factory), online_cell(record_factory, every=5.0, auc=0.76)])
    blocks = build_blocks([run], published)
    drawn = figures(blocks)
    assert {"online-quality", "online-lag"} <= set(drawn)
    labels = set(legend_colours(drawn["online-quality"]))
    assert "wide_deep / 5,000 rows/s / every 2 s / batch 1000: frozen" in labels
    assert len(labels) == 6  # online, frozen and Bayes lines of two cells
    md = write_report([run], tmp_path / "out", published)[0].read_text()
    online = section(md, "Online learning").split("What does online learning buy")[1]
    assert sorted(row["online − frozen"] for row in md_rows(online, "model")) == [
        "+0.0200", "+0.0300"]
    for name in ("auc", "throughput", "memory"):  # only the dcn cell there
        assert set(legend_colours(drawn[name])) - {"Bayes-optimal AUC"} == {
            "dcn / standalone x1 / static"}


# The PyTorch peer.

def peer_cell(make, twin: dict, speed: float, auc: float, repeat: int = 0) -> dict:
    """The PyTorch twin of the ``cell`` record ``twin``, measured at ``speed`` samples/s."""
    cell_id = twin["spec"]["measurement_id"] + "-torch" + (f"-rep{repeat}" if repeat else "")
    spec = {k: twin["spec"][k] for k in ("model", "table_size", "data_vocab", "mode",
                                         "workers", "embedding")}
    return make(run_id=twin["run_id"], cell_id=cell_id,
                spec={**spec, "backend": "torch",
                      "peer_variant": "torch 2.13.0+cpu, fused Adam, 2 threads"},
                metrics={"samples_per_s": speed, "auc": auc, "roofline_fraction": 0.5})


def test_peer_cells_are_a_column_and_a_section_of_their_own(tmp_path, published,
                                                            record_factory):
    ours = [cell(record_factory, model="dcn", auc=0.79, repeat=k) for k in range(3)]
    lone = cell(record_factory, model="wide_deep")
    peers = [peer_cell(record_factory, ours[0], speed, auc, k)
             for k, (speed, auc) in enumerate([(5000.0, 0.785), (4000.0, 0.786),
                                               (100.0, 0.7)])]
    run = store(tmp_path / "runs" / "r1.jsonl", [*ours, lone, *peers])
    md = write_report([run], tmp_path / "out", published)[0].read_text()
    throughput = md_rows(section(md, "Throughput and memory"), "model")
    assert len(throughput) == 4  # peer cells are not rows of their own
    by_model = {}
    for row in throughput:
        by_model.setdefault(row["model"], []).append(row)
    # The median of the twin's three rounds: 4,000 samples/s, AUC 0.785.
    assert {row["PyTorch samples/s"] for row in by_model["dcn"]} == {"4,000"}
    assert {row["AUC − PyTorch's"] for row in by_model["dcn"]} == {"+0.0050"}
    assert by_model["wide_deep"][0]["PyTorch samples/s"] == "—"
    (row,) = md_rows(section(md, "PyTorch peer"), "model")
    ratio = 7000.0 / (1 + 200_000 / 1e7) / 4000.0
    assert (row["rounds"], row["ours / PyTorch"]) == ("3", f"{ratio:.2f}")
    assert row["PyTorch variant"].startswith("torch 2.13.0+cpu, fused Adam")
    assert "FTRL" in section(md, "PyTorch peer")
    # Peer cells stay out of every other section: their AUCs are not in Quality.
    assert all(row["cells"] == "3" for row in md_rows(section(md, "Quality"), "model")
               if row["model"] == "dcn")


@pytest.mark.parametrize("model_config, shape", [
    ({"emb_dim": 16, "deep_layers": [256, 128]}, "emb 16, 256-128"),
    ({"emb_dim": 30, "deep_layers": [1024, 1024], "cross_layers": 6},
     "emb 30, 1024-1024, 6 cross"),
    ({"emb_dim": 16, "deep_layers": [256, 256], "cross_layers": 3, "low_rank": 64},
     "emb 16, 256-256, 3 cross, rank 64"),
    ({"emb_dim": 16, "bottom_layers": [64, 16], "top_layers": [256, 128]},
     "emb 16, bottom 64-16, top 256-128"),
])
def test_the_peer_section_names_each_models_widths(model_config, shape):
    assert _model_shape({"model_config": model_config}) == shape


def test_no_peer_section_without_peer_cells(tmp_path, published, record_factory):
    run = standard_run(record_factory, tmp_path / "runs")
    md = write_report([run], tmp_path / "out", published)[0].read_text()
    assert "## PyTorch peer" not in md and "PyTorch samples/s" not in md


def test_a_learning_curve_plots_the_gap_to_bayes_against_training_rows(
        tmp_path, published, record_factory):
    records = [record_factory(cell_id=f"dcn-r{rows}-s{seed}", spec={
        "rows": rows, "seed": seed, "measurement_id": f"dcn-r{rows}-s{seed}"},
        metrics={"auc": 0.80 - gap, "bayes_auc": 0.80})
        for rows, gaps in ((90_000, (0.03, 0.02, 0.025)), (270_000, (0.015, 0.02, 0.01)))
        for seed, gap in enumerate(gaps)]
    run = store(tmp_path / "runs" / "r1.jsonl", records)
    blocks = build_blocks([run], published)
    assert "learning-curve" in figures(blocks)
    md = write_report([run], tmp_path / "out", published)[0].read_text()
    curve = md_rows(md.split("### Learning curve")[1], "configuration")
    assert [(row["training rows"], row["seeds"], row["gap to Bayes (median)"],
             row["gap (lowest)"], row["gap (highest)"]) for row in curve] == [
        ("90,000", "3", "0.0250", "0.0200", "0.0300"),
        ("270,000", "3", "0.0150", "0.0100", "0.0200")]


def test_no_learning_curve_when_every_configuration_has_one_size(tmp_path, published,
                                                                 record_factory):
    run = standard_run(record_factory, tmp_path / "runs")
    assert "Learning curve" not in write_report([run], tmp_path / "out",
                                                published)[0].read_text()
