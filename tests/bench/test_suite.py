"""Suites: cells are axes plus RunConfig overrides by their real names, validated by
building the RunConfig; ids are stable; --only matches resolved values."""
import pytest

from bench.suite import CellSpec, cell_from_dict, load_suite, select
from mindrec.config import ConfigError, SparseMode


def write(tmp_path, text):
    path = tmp_path / "s.yaml"
    path.write_text(text)
    return path


def test_shipped_suites_expand():
    quick = load_suite("quick")
    assert {c.model for c in quick.cells} == {"wide_deep", "dcn", "deepfm", "dcnv2", "dlrm"}
    assert {c.hardware for c in quick.cells} == {"cpu", "gpu", "ascend"}
    cpu_sizes = {(c.data.vocab, c.base_run.train.table_size) for c in quick.cells
                 if c.hardware == "cpu"}
    assert len(cpu_sizes) >= 3
    for name in ("standard", "full", "gate"):
        assert load_suite(name).cells


def test_grid_is_cross_multiplied_and_cells_are_listed(tmp_path):
    suite = load_suite(str(write(tmp_path, """
fixed: {data: {rows: 1000}, train: {max_steps: 5}}
grid: {model: [wide_deep, dcn], train.seed: [0, 1, 2]}
cells: [{model: dcn, train: {table_size: 5000, sparse: "on"}}]
""")))
    assert len(suite.cells) == 7
    last = suite.cells[-1]
    run = last.base_run
    assert run.train.table_size == 5000 and run.train.sparse is SparseMode.ON
    assert run.train.max_steps == 5 and last.data.rows == 1000
    assert len({c.cell_id for c in suite.cells}) == 7


@pytest.mark.parametrize("text, message", [
    ("grid: {model: [dcn]}\nfixd: {}", "unknown key.*fixd"),
    ("grid: {model: [dcn], layers: [1]}", "unknown key 'layers'"),
    ("grid: {model: [dcn], train.layers: [1]}", "train: unknown key.*layers"),
    ("grid: {model: [dcn], model_config.crossing_layers: [2]}", "crossing_layers"),
    ("grid: {model: [dcn], model_config.emb_dim: [0]}", "emb_dim must be at least 1"),
    ("grid: {model: [dcn], hardware: [tpu]}", "hardware.*tpu"),
    ("grid: {model: [dcn], parallel.mode: [hybrid]}", "mode hybrid with 1 workers"),
    ("grid: {model: [dcn], embedding.permit_filter_value: [3]}", "hash only"),
    ("grid: {model: [dcn], train.batch_size: [ten]}", "batch_size: expected int"),
    ("grid: {model: [dcn]}\nfixed: {data: {rows: 0}}", "data.rows must be positive"),
    ("grid: {model: dcn}", "grid.model must be a non-empty list"),
    ("cells: [{model: dcn}, {model: dcn, train.batch_size: 1000}]", "appears twice"),
    ("cells: [{train.seed: 1}]", "no model"),
    ("description: nothing", "no cells"),
    ("grid: [model", "not valid YAML"),
])
def test_bad_suites_name_the_problem(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message) as failure:
        load_suite(str(write(tmp_path, text)))
    assert "s.yaml" in str(failure.value)


def test_unknown_suite_lists_the_known_ones(tmp_path):
    with pytest.raises(ConfigError, match="quick"):
        load_suite("nosuch")
    with pytest.raises(FileNotFoundError, match="gone.yaml"):
        load_suite(str(tmp_path / "gone.yaml"))


def test_only_filters_on_resolved_values():
    cells = load_suite("quick").cells
    dcn_cpu = select(cells, "model=dcn,hardware=cpu")
    assert dcn_cpu and all(c.model == "dcn" and c.hardware == "cpu" for c in dcn_cpu)
    assert select(cells, "train.table_size=10000000")
    assert select(cells, "parallel.mode=standalone,embedding.kind=hash")
    assert len(select(cells, "train.batch_size=1000")) == len(cells)  # from the suite
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        select(cells, "colour=red")


def test_run_config_covers_the_steps():
    cell = CellSpec(model="dcn", overrides={"train": {"max_steps": 25, "batch_size": 100}})
    run = cell.run_config(train_rows=1000)
    assert run.train.max_steps == 25 and run.train.epochs == 3 and run.train.log_every == 5
    pinned = CellSpec(model="dcn", overrides={"train": {"max_steps": 25, "epochs": 1}})
    assert pinned.run_config(train_rows=100_000).train.epochs == 1
    with pytest.raises(ConfigError, match="exceeds"):
        CellSpec(model="dcn", overrides={"train": {"batch_size": 5000}}).run_config(1000)


def test_ids_are_stable_and_show_every_setting_that_changes_the_run():
    static = cell_from_dict({"model": "wide_deep", "train.max_steps": 270})
    assert static.cell_id == ("wide_deep-cpu-standalonex1-static-r300000-v200000-tdata-b1000"
                              "-n270-s0-cpu-small-auto")  # baselines key on these ids
    same = cell_from_dict({"model": "wide_deep", "train": {"max_steps": 270,
                                                           "batch_size": 1000},
                           "model_config.emb_dim": 16, "train.warmup_steps": 20})
    assert same.cell_id == static.cell_id  # preset values and timing-only fields
    hashed = cell_from_dict({"model": "wide_deep", "embedding": {
        "kind": "hash", "permit_filter_value": 3, "evict_filter_value": 50,
        "capacity": 9000}})
    assert "-hashp3e50-" in hashed.cell_id and hashed.cell_id.endswith("embedding.capacity=9000")
    wider = cell_from_dict({"model": "dcn", "model_config": {"deep_layers": [64, 32]},
                            "data.threshold": 5, "repeat": 2})
    assert wider.cell_id.endswith("-data.threshold=5-model_config.deep_layers=64x32-rep2")
    assert wider.measurement_id == wider.cell_id.removesuffix("-rep2")


def test_a_cell_round_trips_through_its_dict():
    cell = cell_from_dict({"model": "wide_deep", "hardware": "gpu", "data.vocab": 5000,
                           "embedding": {"kind": "hash", "permit_filter_value": 2},
                           "parallel": {"mode": "standalone"}})
    again = cell_from_dict(cell.to_dict())
    assert again.cell_id == cell.cell_id and again.to_dict() == cell.to_dict()
    embedding = again.run_config(300_000).embedding
    assert (embedding.kind.value, embedding.permit_filter_value) == ("hash", 2)
    assert any(c.base_run.embedding.kind.value == "hash" and c.hardware == "cpu"
               for c in load_suite("quick").cells)


def test_a_suite_includes_the_cells_of_another(tmp_path):
    inner = tmp_path / "inner.yaml"
    inner.write_text("fixed: {data.rows: 1000}\ncells: [{model: dcn}]\n")
    outer = write(tmp_path, f"fixed: {{data.rows: 5000}}\ninclude: [{inner}]\n"
                            "cells: [{model: wide_deep}]\n")
    cells = load_suite(str(outer)).cells
    assert [(c.model, c.data.rows) for c in cells] == [("wide_deep", 5000), ("dcn", 1000)]
    assert {c.cell_id for c in load_suite("cache").cells} <= {
        c.cell_id for c in load_suite("standard").cells}
    outer.write_text(f"include: [{outer}]\n")
    with pytest.raises(ConfigError, match="cannot include itself"):
        load_suite(str(outer))
