"""The sweep end to end on a tiny suite: records, skips, failures, time-outs, resume."""
import os
import signal
import subprocess
import sys
import time

from bench.results import read_records
from bench.suite import load_suite
from bench.sweep import run_sweep

TINY = """
timeout_s: {timeout}
fixed: {{rows: 4000, vocab: 2000, batch_size: 200, steps: 8, warmup_steps: 2}}
cells:
  - {{model: wide_deep}}
  - {{model: dcn, table_size: 50000}}
  - {{model: dcn, hardware: gpu}}
  - {{model: dcn, hardware: ascend}}
  - {{model: dcn, batch_size: 100000}}
"""


def tiny_suite(tmp_path, timeout=300):
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY.format(timeout=timeout))
    return load_suite(str(path))


def test_sweep_records_every_cell(tmp_path):
    store = run_sweep(tiny_suite(tmp_path), tmp_path / "results", run_id="t1")
    records = {r["spec"]["cell_spec"]["model"] + "/" + r["spec"]["hardware"] + "/"
               + str(r["spec"]["batch_size"]): r for r in read_records(store)}
    assert len(records) == 5
    ok = [r for r in records.values() if r["status"] == "ok"]
    assert len(ok) == 2
    sized = next(r for r in ok if r["spec"]["model"] == "dcn")
    assert sized["spec"]["vocab_size"] == 50000
    for r in ok:
        m = r["metrics"]
        assert r["spec"]["steps"] == 8 and m["samples_per_s"] > 0 and m["peak_rss_mb"] > 100
        assert 0 < m["roofline_fraction"] < 1 and m["bayes_auc"] is not None
    assert "no NVIDIA GPU" in records["dcn/gpu/200"]["reason"]
    assert "no Ascend NPU" in records["dcn/ascend/200"]["reason"]
    failed = records["dcn/cpu/100000"]
    assert failed["status"] == "failed" and "exceeds" in failed["reason"]
    assert (tmp_path / "results" / "runs" / "t1.limits.json").is_file()


def test_timeout_becomes_failed(tmp_path):
    suite = tiny_suite(tmp_path, timeout=1)
    store = run_sweep(suite, tmp_path / "results", run_id="t2", only="model=wide_deep")
    (record,) = read_records(store)
    assert record["status"] == "failed" and "timed out after 1 s" in record["reason"]


def test_killed_sweep_resumes_without_duplicates(tmp_path):
    suite_file = tmp_path / "tiny.yaml"
    tiny_suite(tmp_path)  # writes the file
    results = tmp_path / "results"
    store = results / "runs" / "r.jsonl"
    command = [sys.executable, "-m", "bench.cli", "sweep", "--suite", str(suite_file),
               "--run-id", "r", "--results", str(results)]
    sweep = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and not (store.exists() and store.read_text().strip()):
        time.sleep(0.2)
    os.killpg(sweep.pid, signal.SIGKILL)
    sweep.wait()
    first = read_records(store)
    assert 1 <= len(first) < 5
    done = subprocess.run(command + ["--resume"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "already recorded" in done.stderr
    records = read_records(store)
    assert len(records) == 5 == len({r["cell_id"] for r in records})
    assert records[:len(first)] == first
    refused = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "--resume" in refused.stderr
