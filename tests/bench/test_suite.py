import pytest

from bench.suite import CellSpec, load_suite, select
from mindrec.config import ConfigError, SparseMode


def write(tmp_path, text):
    path = tmp_path / "s.yaml"
    path.write_text(text)
    return path


def test_shipped_suites_expand():
    quick = load_suite("quick")
    assert {c.model for c in quick.cells} == {"wide_deep", "dcn"}
    assert {c.hardware for c in quick.cells} == {"cpu", "gpu", "ascend"}
    cpu_sizes = {(c.vocab, c.table_size) for c in quick.cells if c.hardware == "cpu"}
    assert len(cpu_sizes) >= 3
    for name in ("standard", "full"):
        assert load_suite(name).cells


def test_grid_is_cross_multiplied_and_cells_are_listed(tmp_path):
    suite = load_suite(str(write(tmp_path, """
fixed: {rows: 1000, steps: 5}
grid: {model: [wide_deep, dcn], seed: [0, 1, 2]}
cells: [{model: dcn, table_size: 5000, sparse: "on"}]
""")))
    assert len(suite.cells) == 7
    last = suite.cells[-1]
    assert last.table_size == 5000 and last.sparse is SparseMode.ON and last.rows == 1000
    assert len({c.cell_id for c in suite.cells}) == 7


@pytest.mark.parametrize("text, message", [
    ("grid: {model: [dcn]}\nfixd: {}", "unknown key.*fixd"),
    ("grid: {model: [dcn], layers: [1]}", "layers"),
    ("grid: {model: [dcn], hardware: [tpu]}", "hardware.*tpu"),
    ("grid: {model: [dcn], mode: [hybrid]}", "mode"),
    ("grid: {model: dcn}", "grid.model must be a non-empty list"),
    ("cells: [{model: dcn}, {model: dcn}]", "appears twice"),
    ("description: nothing", "no cells"),
])
def test_bad_suites_name_the_problem(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        load_suite(str(write(tmp_path, text)))


def test_unknown_suite_lists_the_known_ones():
    with pytest.raises(ConfigError, match="quick"):
        load_suite("nosuch")


def test_only_filters_cells():
    cells = load_suite("quick").cells
    dcn_cpu = select(cells, "model=dcn,hardware=cpu")
    assert dcn_cpu and all(c.model == "dcn" and c.hardware == "cpu" for c in dcn_cpu)
    assert select(cells, "table_size=10000000")
    with pytest.raises(ConfigError, match="AXIS=VALUE"):
        select(cells, "colour=red")


def test_run_config_covers_the_steps():
    run = CellSpec(model="dcn", steps=25, batch_size=100).run_config(train_rows=1000)
    assert run.train.max_steps == 25 and run.train.epochs == 3
    with pytest.raises(ConfigError, match="exceeds"):
        CellSpec(model="dcn", batch_size=5000).run_config(train_rows=1000)


def test_hash_cells_carry_their_filters():
    cell = CellSpec(model="wide_deep", embedding="hash", permit=3, evict=50)
    assert "hashp3e50" in cell.cell_id
    embedding = cell.run_config(300_000).embedding
    assert (embedding.kind.value, embedding.permit_filter_value,
            embedding.evict_filter_value) == ("hash", 3, 50)
    static = CellSpec(model="wide_deep")
    assert "-static-" in static.cell_id  # static ids unchanged (baselines key on them)
    with pytest.raises(ConfigError, match="hash only"):
        CellSpec(model="wide_deep", permit=3)
    assert any(c.embedding == "hash" and c.hardware == "cpu" for c in load_suite("quick").cells)
