"""The run's limits file: measured at start, each resume and the end; the latest start or
resume is in force; a version 1 file still reads and is upgraded on the next write."""
import io
import json

import pytest

from bench.job import limits
from bench.job.limits import MEASUREMENT_KEYS, SCHEMA, read_limits, record_limits
from bench.suite import load_suite
from bench.sweep import run_sweep


@pytest.fixture
def quick_kernels(monkeypatch):
    """Kernels that return at once: sgemm rates 1.5, 2, 3.25 GFLOP/s, then 4.5, 5, 6.25..."""
    calls = iter(range(1, 100))
    monkeypatch.setattr(limits, "sgemm_rates",
                        lambda: [next(calls) + 0.5, next(calls), next(calls) + 0.25])
    monkeypatch.setattr(limits, "mem_bw_gbs", lambda: 7.0)


def test_start_resume_end_and_the_measurement_in_force(tmp_path, quick_kernels):
    path = tmp_path / "run.limits.json"
    start = record_limits(path, "start")
    assert list(start) == list(MEASUREMENT_KEYS)
    assert start["sgemm_gflops"] == 3.25 and start["sgemm_gflops_min"] == 1.5
    assert start["sgemm_gflops_median"] == 2.0 and start["cores"] >= 1
    assert read_limits(path).in_force == start
    resume = record_limits(path, "resume")
    assert read_limits(path).in_force == resume != start
    end = record_limits(path, "end")
    run = read_limits(path)
    assert run.in_force == resume  # an end measurement is for the report only
    assert [m["phase"] for m in run.measurements] == ["start", "resume", "end"]
    assert run.measurements == [start, resume, end]
    assert json.loads(path.read_text())["schema"] == SCHEMA


def test_phases_must_follow_a_start(tmp_path, quick_kernels):
    path = tmp_path / "run.limits.json"
    with pytest.raises(ValueError, match="cannot add 'resume'"):
        record_limits(path, "resume")
    record_limits(path, "start")
    with pytest.raises(ValueError, match="cannot add 'start'"):
        record_limits(path, "start")
    with pytest.raises(ValueError, match="phase must be one of"):
        record_limits(path, "middle")
    assert len(read_limits(path).measurements) == 1


def test_version_1_reads_as_a_start_and_is_upgraded(tmp_path, quick_kernels):
    path = tmp_path / "old.limits.json"
    v1 = {"sgemm_gflops": 190.5, "mem_bw_gbs": 11.0, "measured_at": "2026-12-01T10:00:00+00:00"}
    path.write_text(json.dumps(v1))
    (start,) = read_limits(path).measurements
    assert start == {**dict.fromkeys(MEASUREMENT_KEYS), **v1, "phase": "start"}
    resume = record_limits(path, "resume")
    assert read_limits(path).measurements == [start, resume]
    assert json.loads(path.read_text())["schema"] == SCHEMA


def test_unknown_schema_is_refused(tmp_path):
    path = tmp_path / "x.limits.json"
    path.write_text(json.dumps({"schema": "mindrec-bench/limits/9", "measurements": []}))
    with pytest.raises(ValueError, match="unknown limits schema 'mindrec-bench/limits/9'"):
        read_limits(path)


def test_real_kernels_give_the_spread(tmp_path):
    start = record_limits(tmp_path / "run.limits.json", "start")
    assert 0 < start["sgemm_gflops_min"] <= start["sgemm_gflops_median"] <= start["sgemm_gflops"]
    assert start["mem_bw_gbs"] > 0 and start["load_avg_1m"] >= 0


def test_a_sweep_measures_at_every_start_and_end(tmp_path, quick_kernels):
    """A sweep and its resume (one cell, skipped where there is no Ascend NPU)."""
    suite_file = tmp_path / "suite.yaml"
    suite_file.write_text("cells:\n  - {model: wide_deep, hardware: ascend}\n")
    suite = load_suite(str(suite_file))
    run_sweep(suite, tmp_path / "results", run_id="r", progress=io.StringIO())
    path = tmp_path / "results" / "runs" / "r.limits.json"
    assert [m["phase"] for m in read_limits(path).measurements] == ["start", "end"]
    run_sweep(suite, tmp_path / "results", run_id="r", resume=True, progress=io.StringIO())
    run = read_limits(path)
    assert [m["phase"] for m in run.measurements] == ["start", "end", "resume", "end"]
    assert run.in_force == run.measurements[2]


def test_a_damaged_limits_file_is_named(tmp_path):
    path = tmp_path / "run.limits.json"
    path.write_text('{"schema": "mindrec-bench/limits/2", "measurements": [{"pha')
    with pytest.raises(ValueError, match="run.limits.json: not JSON.*truncated"):
        read_limits(path)
    path.write_text("[1, 2]")
    with pytest.raises(ValueError, match="run.limits.json: not a limits file"):
        read_limits(path)
