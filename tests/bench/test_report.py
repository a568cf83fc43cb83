import json
import re

import pytest

from bench.references import load_published
from bench.report import SYNTHETIC_DISCLAIMER, write_report
from bench.results import SCHEMA, append_record

ENV = {"python": "3.11.7", "mindspore": "2.10.0", "numpy": "1.26.4", "os": "Linux",
       "cpu_model": "AMD EPYC", "cores": 2, "ram_gb": 23.4, "accelerator": "none",
       "gpus": []}
FAILED_LOG = "Traceback (most recent call last):\n  File \"x.py\", line 1\nMemoryError: | pipe"


def record(run_id, model, table_size, status="ok", reason=None, hardware="cpu", speed=1.0):
    spec = {"model": model, "dataset": "synthetic", "rows": 300000, "vocab_size": 200000,
            "emb_dim": 16, "batch_size": 1000, "embedding": "static", "mode": "standalone",
            "workers": 1, "hardware": hardware, "steps": 270, "seed": 0,
            "table_size": table_size}
    metrics = {}
    if status == "ok":
        base = {"wide_deep": 10000.0, "dcn": 7000.0}[model] * speed
        metrics = {"samples_per_s": base / (1 + table_size / 1e7), "step_ms_p50": 90.0,
                   "step_ms_p90": 95.0, "compile_s": 1.2, "peak_rss_mb": 800 + table_size / 1e4,
                   "peak_device_mb": None, "auc": 0.74, "logloss": 0.47, "bayes_auc": 0.77,
                   "flops_per_sample": 2.65e6 * 3, "roofline_samples_per_s": 24000.0,
                   "roofline_fraction": base / 24000}
    return {"schema": SCHEMA, "run_id": run_id,
            "cell_id": f"{model}-{hardware}-t{table_size}", "suite": "quick",
            "started_at": "2026-11-29T00:00:00+00:00", "status": status, "reason": reason,
            "git": {"commit": "0123456789abcdef", "dirty": False}, "env": ENV, "spec": spec,
            "metrics": metrics}


def write_run(runs_dir, run_id, speed=1.0, limits=True):
    path = runs_dir / f"{run_id}.jsonl"
    for model in ("wide_deep", "dcn"):
        for table_size in (200000, 10000000):
            append_record(path, record(run_id, model, table_size, speed=speed))
    append_record(path, record(run_id, "dcn", 200000, status="skipped", hardware="gpu",
                               reason="no NVIDIA GPU on this machine (nvmlInit failed)"))
    append_record(path, record(run_id, "wide_deep", 200000, status="failed",
                               hardware="ascend", reason=FAILED_LOG))
    if limits:
        (runs_dir / f"{run_id}.limits.json").write_text(json.dumps(
            {"sgemm_gflops": 197.5, "mem_bw_gbs": 12.25, "measured_at": "2026-11-29T00:00:00"}))
    return path


@pytest.fixture(scope="module")
def published():
    return load_published()


def test_one_run_report(tmp_path, published):
    run = write_run(tmp_path / "runs", "r1")
    md_path, html_path = write_report([run], tmp_path / "out", published)
    md, page = md_path.read_text(), html_path.read_text()
    assert "4 ok, 1 skipped, 1 failed" in md
    # quality, throughput and roofline tables, with the published figures and disclaimer
    assert "Bayes AUC (target)" in md and "0.0300" in md  # gap 0.77 - 0.74
    assert SYNTHETIC_DISCLAIMER in md and "NOT Criteo figures" in page
    assert "0.80937" in md and "bars-criteo-x1-dcn-auc" in md
    assert "samples/s" in md and "10,000,000" in md and "peak RSS MB" in md
    assert "Roofline fraction" in md and "0.417" in md  # 10000 / 24000
    # skipped reason in the table; the failed log's first line in it, all of it below
    assert "no NVIDIA GPU on this machine (nvmlInit failed)" in md
    assert re.search(r"\| failed +\| ascend +\| Traceback \(most recent call last\): +\|", md)
    assert "<details>" in md and "MemoryError: \\| pipe" not in md.split("<details>")[1]
    assert "MemoryError: | pipe" in md.split("<details>")[1]
    assert "197.5" in md and "12.2" in md and "AMD EPYC" in md
    assert "Run comparison" not in md
    # plots beside the markdown; the HTML embeds them and loads nothing from outside
    assert (tmp_path / "out" / "report.throughput.png").is_file()
    assert page.count("data:image/png;base64,") >= 2
    assert not re.search(r"""src=["']?(https?:)?//""", page)
    assert "<link" not in page and "<script" not in page
    assert "MemoryError: | pipe" in page and "<details>" in page


def test_two_runs_compare_on_cell_id(tmp_path, published):
    first = write_run(tmp_path / "runs", "r1")
    second = write_run(tmp_path / "runs", "r2", speed=1.5, limits=False)
    md_path, html_path = write_report([first, second], tmp_path / "out", published)
    md = md_path.read_text()
    section = md.split("## Run comparison")[1]
    header = next(line for line in section.splitlines() if line.startswith("| cell"))
    assert "samples/s ratio (2nd/1st)" in header
    row = next(line for line in section.splitlines()
               if line.startswith("| dcn-cpu-t200000 "))
    cells = [c.strip() for c in row.strip("|").split("|")]
    heads = [c.strip() for c in header.strip("|").split("|")]
    assert cells[heads.index("samples/s ratio (2nd/1st)")] == "1.500"
    assert "median samples/s ratio over 4 cells measured in both: 1.500" in section
    assert "| r2 " in md and "| r1 " in md


def test_runs_without_ok_cells_still_report(tmp_path, published):
    path = tmp_path / "runs" / "r3.jsonl"
    append_record(path, record("r3", "dcn", 200000, status="skipped", hardware="gpu",
                               reason="no GPU"))
    md_path, html_path = write_report([path], tmp_path / "out", published=[])
    md = md_path.read_text()
    assert "0 ok, 1 skipped, 0 failed" in md and "plots omitted" in md
    assert "no GPU" in md and "No machine-limit sidecar" in md
    assert "data:image/png" not in html_path.read_text()


def test_parallel_modes_and_hash_tables_get_their_sections(tmp_path, published):
    path = tmp_path / "runs" / "p.jsonl"
    for mode, workers, table_mb in (("standalone", 1, 64.0), ("data_parallel", 2, 64.0),
                                    ("hybrid", 2, 32.0)):
        r = record("p", "wide_deep", 1000000)
        r["cell_id"] = f"wide_deep-{mode}x{workers}"
        r["spec"].update(mode=mode, workers=workers)
        r["metrics"].update(peak_rss_mb_per_worker=700.0, table_mb_per_worker=table_mb)
        append_record(path, r)
    hashed = record("p", "wide_deep", 1000000)
    hashed["cell_id"] = "wide_deep-hash"
    hashed["spec"]["embedding"] = "hash"
    hashed["metrics"].update(hash_live_rows=900, hash_admitted=1000, hash_evicted=100,
                             hash_candidates=25, hash_default_fraction=0.0125,
                             hash_index_mb=1.5)
    append_record(path, hashed)
    md_path, _ = write_report([path], tmp_path / "out", published)
    md = md_path.read_text()
    modes = md.split("## Parallel modes")[1].split("\n## ")[0]
    assert "hybrid x2" in modes and "data_parallel x2" in modes and "32.00" in modes
    assert "report.modes-throughput.png" in modes and "report.modes-memory.png" in modes
    assert (tmp_path / "out" / "report.modes-memory.png").stat().st_size > 1000
    hash_section = md.split("## Hash tables")[1].split("\n## ")[0]
    assert "1.25%" in hash_section and "wide_deep-hash" in hash_section
