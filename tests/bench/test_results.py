"""The record schema: declared keys only, migration of /1 records, the JSONL store."""
import copy
import json
from pathlib import Path

import pytest

from bench.results import (METRICS, SCHEMA, SCHEMA_V1, SPEC, RecordError, append_record,
                           metric, migrate, read_records, spec_value, validate, write_record)

DATA = Path(__file__).with_name("data")


def test_valid_record_passes(record_factory):
    assert validate(record_factory()) is not None


@pytest.mark.parametrize("mutate, key", [
    (lambda r: r.pop("env"), "env"),
    (lambda r: r["spec"].pop("table_size"), "table_size"),
    (lambda r: r["spec"].update(rows="10"), "rows"),
    (lambda r: r["spec"].update(workers=True), "workers"),
    (lambda r: r["spec"].update(modle="dcn"), "modle"),
    (lambda r: r["metrics"].pop("auc"), "auc"),
    (lambda r: r["metrics"].update(samples_per_sec=1.0), "samples_per_sec"),
    (lambda r: r["metrics"].update(auc="0.7"), "auc"),
    (lambda r: r["env"].update(gpu_count=0), "gpu_count"),
    (lambda r: r.update(comment="hi"), "comment"),
    (lambda r: r.update(schema="other/9"), "schema"),
    (lambda r: r.update(status="done"), "status"),
    (lambda r: r.update(status="skipped"), "reason"),
])
def test_invalid_records_name_the_key(record_factory, mutate, key):
    bad = copy.deepcopy(record_factory())
    mutate(bad)
    with pytest.raises(RecordError, match=key):
        validate(bad)


def test_a_misspelt_metric_is_rejected_where_it_is_written_and_read(record_factory, tmp_path):
    record = record_factory()
    record["metrics"]["peak_rss_MB"] = 1.0
    with pytest.raises(RecordError, match="peak_rss_MB"):
        append_record(tmp_path / "r.jsonl", record)
    with pytest.raises(KeyError, match="peak_rss_MB"):
        metric(record_factory(), "peak_rss_MB")
    with pytest.raises(KeyError, match="vocab"):
        spec_value(record_factory(), "vocab")


def test_skipped_record_needs_no_metrics(record_factory):
    skipped = record_factory(status="skipped", reason="no GPU")
    assert skipped["metrics"] == {} and metric(skipped, "auc") is None


def test_every_key_is_declared_once_with_a_unit_or_none():
    assert set(SPEC).isdisjoint(METRICS)
    assert METRICS["peak_rss_mb"].header == "peak RSS (MiB)"
    assert METRICS["samples_per_s"].header == "samples/s"
    assert all(key.doc for key in (*SPEC.values(), *METRICS.values()))


def test_version_1_records_load_through_the_migration():
    """Real /1 records written by the previous version (ok, hash, hybrid, skipped,
    failed, a repeat, and a `train --out` record)."""
    raw = [json.loads(line) for line in (DATA / "records-v1.jsonl").read_text().splitlines()]
    assert {r["schema"] for r in raw} == {SCHEMA_V1}
    records = read_records(DATA / "records-v1.jsonl")
    assert [r["status"] for r in records] == ["ok", "ok", "ok", "skipped", "failed", "ok"]
    assert {r["spec"]["embedding"] for r in records} == {"static", "hash"}
    assert any(r["spec"]["mode"] == "hybrid" for r in records)
    repeat = records[-1]
    assert repeat["cell_id"].endswith("-rep1")
    assert repeat["spec"]["measurement_id"] == repeat["cell_id"].removesuffix("-rep1")
    for old, new in zip(raw, records):
        assert new["schema"] == SCHEMA and new["metrics"] == old["metrics"]
        assert new["spec"]["table_size"] == old["spec"]["table_size"]
    (train,) = read_records(DATA / "train-out-v1.json")
    assert train["spec"]["measurement_id"] == train["cell_id"]


def test_an_unknown_version_is_refused_by_name(record_factory, tmp_path):
    future = {**record_factory(), "schema": "mindrec-bench/result/7"}
    with pytest.raises(RecordError, match="result/7.*cannot be read"):
        migrate(future)
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps(future) + "\n")
    with pytest.raises(RecordError, match=r"r\.jsonl:1: .*result/7"):
        read_records(path)


def test_store_round_trip_and_line_numbers_in_errors(record_factory, tmp_path):
    store = tmp_path / "runs" / "r1.jsonl"
    append_record(store, record_factory(cell_id="a"))
    append_record(store, record_factory(cell_id="b"))
    assert [r["cell_id"] for r in read_records(store)] == ["a", "b"]
    with pytest.raises(RecordError):
        append_record(store, {**record_factory(), "status": "nope"})
    assert len(read_records(store)) == 2  # a rejected record leaves the store intact
    store.write_text(store.read_text() + '{"schema": "mindrec-bench/res')
    with pytest.raises(RecordError, match=r"r1\.jsonl:3: not JSON.*truncated"):
        read_records(store)
    single = tmp_path / "one.json"
    write_record(single, record_factory())
    assert json.loads(single.read_text())["schema"] == SCHEMA
    assert not list(tmp_path.glob(".*tmp*"))
    with pytest.raises(FileNotFoundError, match="nothere"):
        read_records(tmp_path / "nothere.jsonl")


def test_a_version_1_cell_becomes_the_cell_of_todays_suites():
    """The migrated ``spec.cell`` rebuilds the same cell, with the same id."""
    from bench.suite import cell_from_dict
    for record in read_records(DATA / "records-v1.jsonl"):
        cell = cell_from_dict(record["spec"]["cell"], record["cell_id"])
        assert cell.cell_id == record["cell_id"]
