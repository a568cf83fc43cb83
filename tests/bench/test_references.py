import copy

import pytest
import yaml

from bench.references import (DEFAULT_PATH, SCHEMA, format_value, load_published,
                              published_auc)


def test_the_repo_file_loads_and_every_entry_cites_a_source():
    entries = load_published()
    assert DEFAULT_PATH.name == "published.yaml" and len(entries) >= 20
    assert len({e["id"] for e in entries}) == len(entries)
    for entry in entries:
        assert entry["source"]["url"].startswith("https://"), entry["id"]
        assert entry["source"]["note"], entry["id"]


def test_figures_from_the_facts_sheet_are_present():
    by_id = {e["id"]: e for e in load_published()}
    values = {e.get("value") for e in by_id.values()}
    for figure in (0.80937, 0.80971, 0.80862, 0.80834, 0.803786, 0.8057789, 0.813822,
                   0.438046, 0.813767, 0.438075, 0.813939, 0.813812, 0.813804, 0.814232,
                   0.814437, 267558, 767663, 1163636):
        assert figure in values, figure
    assert format_value(by_id["mlperf-dlrmv2-target-auc"]) == ">= 0.80275"
    assert format_value(by_id["torchrec-dlrm-criteo-1tb-auc"]) == "0.8025-0.8032"
    assert format_value(by_id["mindrec-benchmarks-wide-deep-throughput-8gpu"]) == "1,163,636"


def test_published_auc_filters_by_model_and_metric():
    dcn = published_auc("dcn")
    assert dcn and all(e["model"] == "dcn" and e["metric"] == "auc" for e in dcn)
    assert 0.438075 not in {e["value"] for e in dcn}  # the logloss entry is its own
    assert published_auc("dcn", entries=[]) == []


def _write(tmp_path, entries):
    path = tmp_path / "published.yaml"
    path.write_text(yaml.safe_dump({"schema": SCHEMA, "entries": entries}))
    return path


@pytest.fixture
def good():
    return copy.deepcopy(load_published()[:3])


@pytest.mark.parametrize("mutate, match", [
    (lambda e: e[1].pop("source"), r"'mindrec-readme-dcn-auc' \(#1\): source: missing"),
    (lambda e: e[2].update(id=e[0]["id"]), r"#2\): id: duplicate of entry #0"),
    (lambda e: e[0]["source"].update(url="http://example.org"), r"#0\)\.source: url"),
    (lambda e: e[0]["source"].pop("url"), r"source: url: missing"),
    (lambda e: e[1].update(model="xgboost"), r"#1\): model: 'xgboost'"),
    (lambda e: e[1].update(crossing_layers=3), r"#1\): crossing_layers: unknown key"),
    (lambda e: e[1].update(devices="8"), r"#1\): devices: '8' has the wrong type"),
    (lambda e: e[1].update(value=None), r"#1\): value: missing"),
    (lambda e: e[1].update(kind="range"), r"#1\): value_min: missing"),
    (lambda e: e[1].update(kind="target"), r"#1\): comparison"),
    (lambda e: e[0].pop("id"), r"entry #0: id: missing"),
])
def test_broken_entries_are_named(tmp_path, good, mutate, match):
    mutate(good)
    with pytest.raises(ValueError, match=match):
        load_published(_write(tmp_path, good))


def test_wrong_schema_is_rejected(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump({"schema": "other/2", "entries": []}))
    with pytest.raises(ValueError, match="schema"):
        load_published(path)
