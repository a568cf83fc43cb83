"""Gate logic on hand-made records: normalisation, repeats, verdicts, exit codes."""
import json

import pytest

from bench.cli import main
from bench.gate import FAIL, NEW, PASS, Thresholds, compare, make_baseline, summarize
from bench.results import append_record, write_atomic
from bench.suite import CellSpec


@pytest.fixture
def cell_record(record_factory):
    """A record of a suite cell (repeats share its measurement id)."""
    def make(model="dcn", repeat=0, sps=1000.0, auc=0.78, rss=800.0, bayes=0.80,
             sgemm=None):
        cell = CellSpec(model=model, repeat=repeat)
        metrics = {"samples_per_s": sps, "auc": auc, "peak_rss_mb": rss, "bayes_auc": bayes}
        if sgemm is not None:
            metrics["sgemm_gflops"] = sgemm
        return record_factory(cell_id=cell.cell_id, metrics=metrics,
                              spec={"model": model, "measurement_id": cell.measurement_id})
    return make


def write_run(runs, run_id, records, sgemm=200.0):
    for r in records:
        append_record(runs / f"{run_id}.jsonl", r)
    write_atomic(runs / f"{run_id}.limits.json",
                 json.dumps({"sgemm_gflops": sgemm, "mem_bw_gbs": 20.0, "measured_at": "x"}))


def test_repeats_pool_into_the_best_throughput(cell_record):
    summary = summarize([cell_record(repeat=0, sps=900), cell_record(repeat=1, sps=1000),
                         cell_record(repeat=2, sps=5000)], sgemm_gflops=100)
    (cell,) = summary.values()
    assert cell["repeats"] == 3 and cell["samples_per_s"] == 5000
    assert cell["samples_per_gflop"] == 50


def verdicts(base_records, now_records, base_sgemm=200.0, now_sgemm=200.0, **thresholds):
    base = {"cells": summarize(base_records, base_sgemm)}
    checks = compare(base, summarize(now_records, now_sgemm), Thresholds(**thresholds))
    return {c.metric: c.verdict for c in checks if c.verdict != NEW}, checks


def test_unchanged_run_passes_and_a_30_percent_slowdown_fails(cell_record):
    base = [cell_record(repeat=i) for i in range(3)]
    ok, _ = verdicts(base, [cell_record(repeat=i, sps=900) for i in range(3)])
    assert set(ok.values()) == {PASS}
    slow, _ = verdicts(base, [cell_record(repeat=i, sps=700) for i in range(3)])
    assert slow["samples/s"] == FAIL


def test_throughput_is_normalised_by_the_machine_limit(cell_record):
    """A machine 30% slower in sgemm too is not a regression of the code."""
    base = [cell_record(sps=1000)]
    ok, _ = verdicts(base, [cell_record(sps=700)], base_sgemm=200, now_sgemm=140)
    assert ok["samples/s"] == PASS
    # The cell's own kernel measurement takes precedence over the run's.
    ok, _ = verdicts([cell_record(sps=1000, sgemm=200)], [cell_record(sps=700, sgemm=140)])
    assert ok["samples/s"] == PASS
    slow, _ = verdicts([cell_record(sps=1000, sgemm=200)], [cell_record(sps=700, sgemm=200)])
    assert slow["samples/s"] == FAIL


def test_a_noisy_kernel_alone_does_not_fail(cell_record):
    """Same throughput, but the kernel read 2x faster this time: raw says no regression."""
    ok, _ = verdicts([cell_record(sps=1000, sgemm=120)], [cell_record(sps=980, sgemm=240)])
    assert ok["samples/s"] == PASS


def test_quality_and_memory_checks(cell_record):
    base = [cell_record(auc=0.78, rss=800)]
    worse, _ = verdicts(base, [cell_record(auc=0.77, rss=1000, bayes=0.83)])
    assert worse["auc vs baseline"] == FAIL
    assert worse["peak_memory_mb"] == FAIL
    assert worse["auc vs Bayes optimum"] == FAIL  # 0.83 - 0.77 > 0.05


def test_missing_and_new_cells(cell_record):
    _, checks = verdicts([cell_record(model="dcn")], [cell_record(model="wide_deep")])
    assert [(c.metric, c.verdict) for c in checks] == [("present", FAIL), ("present", NEW)]


def test_cli_exit_codes(cell_record, tmp_path, capsys):
    runs = tmp_path / "runs"
    write_run(runs, "base", [cell_record(repeat=i) for i in range(3)])
    write_run(runs, "same", [cell_record(repeat=i, sps=980) for i in range(3)])
    write_run(runs, "slow", [cell_record(repeat=i, sps=700) for i in range(3)])
    baseline = tmp_path / "baseline.json"
    assert main(["baseline", "--run", "base", "--out", str(baseline),
                 "--results", str(tmp_path)]) == 0
    assert json.loads(baseline.read_text())["cells"]
    assert main(["gate", "--baseline", str(baseline), "--run", "same",
                 "--results", str(tmp_path)]) == 0
    assert main(["gate", "--baseline", str(baseline), "--run", "slow",
                 "--results", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "gate FAILED" in out
    # A slow measurement pooled with a confirming one that is not slow passes.
    assert main(["gate", "--baseline", str(baseline), "--run", "slow", "--run", "same",
                 "--results", str(tmp_path)]) == 0
    assert main(["gate", "--baseline", str(tmp_path / "none.json"), "--run", "same",
                 "--results", str(tmp_path)]) == 2


def test_baseline_needs_ok_cells(tmp_path, record_factory):
    runs = tmp_path / "runs"
    bad = record_factory(status="failed", reason="boom")
    write_run(runs, "r", [bad])
    with pytest.raises(ValueError, match="no ok cells"):
        make_baseline(runs, "r")


@pytest.mark.parametrize("text, message", [
    ('{"schema": "mindrec-bench/baseline/1", "cells": {"c": {"auc"', "not JSON.*truncated"),
    ('{"schema": "other/1", "cells": {}}', "schema 'other/1'"),
    ('{"schema": "mindrec-bench/baseline/1", "cells": {"c": {"auc": 0.7}}}',
     "cell c lacks .*samples_per_s"),
])
def test_a_damaged_baseline_is_named(tmp_path, text, message):
    from bench.gate import load_baseline
    path = tmp_path / "gate-cpu.json"
    path.write_text(text)
    with pytest.raises(ValueError, match=f"gate-cpu.json: {message}"):
        load_baseline(path)


def test_the_committed_baseline_loads():
    from pathlib import Path

    from bench.gate import load_baseline
    from bench.suite import load_suite
    baseline = load_baseline(Path(__file__).parents[2] / "results/baseline/gate-cpu.json")
    gate_ids = {cell.measurement_id for cell in load_suite("gate").cells}
    assert set(baseline["cells"]) == gate_ids  # the gate suite's ids did not change
