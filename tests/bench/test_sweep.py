"""The sweep end to end: every record kind, skips, failures, time-outs, resume."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from bench.results import metric, read_records
from bench.suite import cell_from_dict, load_suite
from bench.sweep import run_sweep, skip_reason

pytestmark = pytest.mark.integration


def by_cell(store) -> dict[str, dict]:
    """Records of the tiny sweep keyed by what distinguishes its cells."""
    keys = {}
    for r in read_records(store):
        spec = r["spec"]
        key = f"{spec['model']}/{spec['hardware']}/{spec['batch_size']}"
        if spec["embedding"] == "hash" or spec["mode"] != "standalone":
            key += f"/{spec['embedding']}/{spec['mode']}"
        if spec.get("cache_device_rows"):
            key += "/cache"
        if spec["table_size"] == 50000:
            key += "/t50000"
        if spec.get("backend", "mindspore") != "mindspore":
            key += f"/{spec['backend']}"
        keys[key] = r
    return keys


def test_sweep_records_every_cell(tiny_sweep):
    results, store = tiny_sweep
    records = by_cell(store)
    assert len(records) == 9 == len(read_records(store))
    ok = [r for r in records.values() if r["status"] == "ok"]
    assert len(ok) == 6
    assert records["dcn/cpu/200/t50000"]["spec"]["table_size"] == 50000
    for r in ok:
        assert r["spec"]["steps"] == 8 and metric(r, "samples_per_s") > 0
        assert metric(r, "peak_rss_mb") > 0 and metric(r, "bayes_auc") is not None
        # Structural, not a speed: the roofline is throughput over the machine's ceiling.
        assert metric(r, "roofline_fraction") == pytest.approx(
            metric(r, "samples_per_s") / metric(r, "roofline_samples_per_s"))
        assert r["spec"]["cell"]["model"] == r["spec"]["model"]
        assert r["spec"]["run_config"]["train"]["max_steps"] == 8
    assert "no NVIDIA GPU" in records["dcn/gpu/200"]["reason"]
    assert "no Ascend NPU" in records["dcn/ascend/200"]["reason"]
    failed = records["dcn/cpu/100000"]
    assert failed["status"] == "failed"
    first_line = failed["reason"].splitlines()[0]  # what the sweep prints and the report shows
    assert first_line.startswith("cell exited with code 1") and "exceeds" in first_line
    assert (results / "runs" / "tiny.limits.json").is_file()


def test_every_record_kind_carries_its_own_keys(tiny_sweep):
    """ok, skipped, failed, parallel and hash records all pass the schema on reading
    (read_records validates) and carry the keys of their kind."""
    records = by_cell(tiny_sweep[1])
    hashed = records["wide_deep/cpu/200/hash/standalone"]
    assert hashed["spec"]["permit_filter_value"] == 2
    assert metric(hashed, "hash_live_rows") > 0 and metric(hashed, "hash_index_mb") > 0
    hybrid = records["wide_deep/cpu/200/static/hybrid"]
    assert hybrid["spec"]["workers"] == 2
    assert metric(hybrid, "table_mb_per_worker") > 0 and metric(hybrid, "launch_s") > 0
    cached = records["wide_deep/cpu/200/hash/standalone/cache"]
    assert cached["spec"]["cache_tiers"] == "host+remote+ssd"
    assert 0 < metric(cached, "cache_hit_rate") <= 1
    assert metric(cached, "cache_remote_peak_rss_mb") > 0  # the sweep started a server
    assert metric(cached, "cache_host_mb_written") > 0  # rows went down the tiers
    assert metric(cached, "cache_belady_hit_rate_unique") >= metric(
        cached, "cache_lru_hit_rate_unique")
    peer, ours = records["wide_deep/cpu/200/torch"], records["wide_deep/cpu/200"]
    assert peer["spec"]["peer_variant"].startswith("torch 2.13")
    assert ours["spec"]["backend"] == "mindspore" and "peer_variant" not in ours["spec"]
    assert peer["env"]["torch"].startswith("2.13")
    for status in ("skipped", "failed"):
        record = next(r for r in records.values() if r["status"] == status)
        assert record["metrics"] == {} and record["spec"]["measurement_id"]


def tiny_suite(tmp_path, timeout=300):
    path = tmp_path / "tiny.yaml"
    path.write_text(f"""
timeout_s: {timeout}
fixed: {{data: {{rows: 4000, vocab: 2000}}, train: {{batch_size: 200, max_steps: 8,
        warmup_steps: 2}}}}
cells:
  - {{model: wide_deep}}
  - {{model: dcn, hardware: gpu}}
  - {{model: dcn}}
""")
    return path


def test_timeout_becomes_failed(tmp_path):
    suite = load_suite(str(tiny_suite(tmp_path, timeout=1)))
    store = run_sweep(suite, tmp_path / "results", run_id="t2", only="model=wide_deep")
    (record,) = read_records(store)
    assert record["status"] == "failed" and "timed out after 1 s" in record["reason"]


def test_killed_sweep_resumes_without_duplicates(tmp_path):
    suite_file = tiny_suite(tmp_path)
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
    assert 1 <= len(first) < 3
    done = subprocess.run(command + ["--resume"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "already recorded" in done.stderr
    records = read_records(store)
    assert len(records) == 3 == len({r["cell_id"] for r in records})
    assert records[:len(first)] == first
    refused = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "--resume" in refused.stderr



def test_a_cell_record_that_breaks_the_schema_becomes_a_failed_record(tmp_path,
                                                                      record_factory):
    """A cell whose record does not match the schema (a bug in the cell) does not stop
    the sweep: it is recorded as failed, naming the key, and its output is kept."""
    from bench.suite import CellSpec
    from bench.sweep import cell_output_record
    out = tmp_path / "cell.json"
    bad = record_factory()
    bad["metrics"]["stray_metric"] = 1.0
    out.write_text(json.dumps(bad))
    record = cell_output_record(out, CellSpec(model="dcn"), "r", "tiny")
    assert record["status"] == "failed" and "stray_metric" in record["reason"]
    assert out.is_file()
    out.write_text(json.dumps(record_factory()))
    assert cell_output_record(out, CellSpec(model="dcn"), "r", "tiny")["status"] == "ok"
    assert not out.exists()


def test_an_online_cell_off_the_cpu_is_skipped_with_the_reason():
    online = {"model": "wide_deep", "embedding": {"kind": "hash", "capacity": 1000},
              "online": {"stream": True}}
    assert skip_reason(cell_from_dict(online)) is None
    reason = skip_reason(cell_from_dict({**online, "hardware": "gpu"}))
    assert reason.startswith("online cells run on the CPU only") and reason.endswith("gpu")


def test_a_rerun_with_the_same_seeds_gives_identical_metrics(tmp_path):
    """Generation, conversion, training and evaluation, twice from nothing (separate
    result directories, so the dataset is made again): the same bytes of data and the
    same metrics, to the last bit."""
    suite_file = tmp_path / "again.yaml"
    suite_file.write_text("""
fixed:
  data: {rows: 4000, vocab: 2000, seed: 3}
  train: {batch_size: 200, max_steps: 12, warmup_steps: 2, seed: 5}
cells:
  - {model: deepfm}
""")
    runs = [read_records(run_sweep(load_suite(str(suite_file)), tmp_path / name,
                                   run_id=name))[0] for name in ("first", "second")]
    datasets = [json.loads(next((tmp_path / name / "cache").glob("*/converted/meta.json"))
                           .read_text()) for name in ("first", "second")]
    assert datasets[0]["integrity"] == datasets[1]["integrity"]
    for name in ("auc", "logloss", "bayes_auc", "train_loss_first", "train_loss_last"):
        assert metric(runs[0], name) == metric(runs[1], name), name
