import copy
import json

import pytest

from bench.results import (SCHEMA, RecordError, append_record, read_records, validate,
                           write_record)


def record(**changes):
    base = {
        "schema": SCHEMA, "run_id": "r1", "cell_id": "c1", "suite": None,
        "started_at": "2026-11-29T00:00:00+00:00", "status": "ok", "reason": None,
        "git": {"commit": "abc", "dirty": False},
        "env": {"python": "3.11.7", "mindspore": "2.10.0", "numpy": "1.26.4", "os": "Linux",
                "cpu_model": "cpu", "cores": 2, "ram_gb": 23.4, "accelerator": "none",
                "gpus": []},
        "spec": {"model": "dcn", "dataset": "d", "rows": 10, "vocab_size": 100, "emb_dim": 8,
                 "batch_size": 5, "embedding": "static", "mode": "standalone", "workers": 1,
                 "hardware": "cpu", "steps": 2, "seed": 0},
        "metrics": {"samples_per_s": 1.0, "step_ms_p50": 1.0, "step_ms_p90": 1.0,
                    "compile_s": 1.0, "peak_rss_mb": 1.0, "peak_device_mb": None,
                    "auc": 0.7, "logloss": 0.5, "bayes_auc": None},
    }
    base.update(changes)
    return base


def test_valid_record_passes():
    assert validate(record()) is not None


@pytest.mark.parametrize("mutate, key", [
    (lambda r: r.pop("env"), "env"),
    (lambda r: r["spec"].pop("vocab_size"), "vocab_size"),
    (lambda r: r["spec"].update(rows="10"), "rows"),
    (lambda r: r["spec"].update(workers=True), "workers"),
    (lambda r: r["metrics"].pop("auc"), "auc"),
    (lambda r: r.update(schema="other/9"), "schema"),
    (lambda r: r.update(status="done"), "status"),
    (lambda r: r.update(status="skipped"), "reason"),
])
def test_invalid_records_name_the_key(mutate, key):
    bad = copy.deepcopy(record())
    mutate(bad)
    with pytest.raises(RecordError, match=key):
        validate(bad)


def test_skipped_record_needs_no_metrics():
    validate(record(status="skipped", reason="no GPU", metrics={}))


def test_store_round_trip_and_line_numbers_in_errors(tmp_path):
    store = tmp_path / "runs" / "r1.jsonl"
    append_record(store, record(cell_id="a"))
    append_record(store, record(cell_id="b"))
    assert [r["cell_id"] for r in read_records(store)] == ["a", "b"]
    with pytest.raises(RecordError):
        append_record(store, record(status="nope"))
    assert len(read_records(store)) == 2  # a rejected record leaves the store intact
    store.write_text(store.read_text() + '{"schema": "x"}\n')
    with pytest.raises(RecordError, match=r"r1\.jsonl:3"):
        read_records(store)
    single = tmp_path / "one.json"
    write_record(single, record())
    assert json.loads(single.read_text())["cell_id"] == "c1"
    assert not list(tmp_path.glob(".*tmp*"))
