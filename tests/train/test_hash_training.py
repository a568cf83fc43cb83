"""Training with hash embeddings: who gets updated, fresh state on slot reuse, and
quality against static tables."""
import numpy as np
import pytest
from mindspore import Tensor

from mindrec.config import build_run_config
from mindrec.data.criteo import NUM_FIELDS
from mindrec.models.registry import build_model
from mindrec.train.step import TrainStep, configure_runtime
from mindrec.train.trainer import batches, build, evaluate, fit

BATCH = 8


def hash_net(model="wide_deep", **embedding):
    configure_runtime(seed=0)
    run = build_run_config(model, "cpu-small", embedding={"kind": "hash", **embedding})
    net = build_model(run, 1000)
    return net, TrainStep(net)


def step(net, train_step, keys):
    rng = np.random.default_rng(len(keys))
    slots, _ = net.hash_index.train_lookup(keys)
    vals = np.ones((BATCH, NUM_FIELDS), np.float32)
    labels = rng.integers(0, 2, (BATCH, 1)).astype(np.float32)
    train_step(Tensor(slots), Tensor(vals), Tensor(labels))
    net.hash_index.advance()
    return slots


def deep_table(net):
    return net.deep_embedding.table


def test_candidates_read_the_default_and_get_no_update():
    net, train_step = hash_net(permit_filter_value=2)
    keys = np.arange(BATCH * NUM_FIELDS, dtype=np.int64).reshape(BATCH, NUM_FIELDS) * 1000
    before = deep_table(net).table.asnumpy().copy()
    slots = step(net, train_step, keys)  # first sight: every key is a candidate
    assert (slots == 0).all()
    np.testing.assert_array_equal(deep_table(net).table.asnumpy(), before)
    slots = step(net, train_step, keys)  # second sight: admitted and trained
    assert (slots > 0).all()
    trained = deep_table(net).table.asnumpy()
    assert not np.allclose(trained[1:len(np.unique(keys)) + 1], 0)
    np.testing.assert_array_equal(trained[0], 0)  # the default row never moves


def test_a_recycled_slot_restarts_its_row_and_optimizer_state():
    net, train_step = hash_net(evict_filter_value=1)
    old = np.full((BATCH, NUM_FIELDS), 7, np.int64)
    (slot,) = np.unique(step(net, train_step, old))
    table = deep_table(net)
    moments = [p for p, _ in table._optimizer_states]
    assert len(moments) == 2 and all(np.abs(m.asnumpy()[slot]).sum() > 0 for m in moments)
    net.hash_index.advance()  # key 7 idle for 2 steps: evicted
    assert len(net.hash_index) == 0
    new = np.full((BATCH, NUM_FIELDS), 8, np.int64)
    net.hash_index.train_lookup(new)  # admitted into the recycled slot
    assert net.hash_index.lookup(new[:1, :1])[0, 0] == slot
    assert all(np.abs(m.asnumpy()[slot]).sum() == 0 for m in moments)
    # FTRL's accumulator restarts at initial_accum (1.0), its linear term at 0.
    wide_states = net.wide_table._optimizer_states
    assert sorted(float(initial[0]) for _, initial in wide_states) == [0.0, 1.0]
    for state, initial in wide_states:
        np.testing.assert_array_equal(state.asnumpy()[slot], initial)


@pytest.mark.parametrize("model", ["wide_deep", "dcn"])
def test_hash_tables_train_like_static_tables(model, tiny_data):
    aucs = {}
    for kind in ("static", "hash"):
        run = build_run_config(model, "cpu-small", embedding={"kind": kind},
                               train_overrides={"batch_size": 500})
        net = build(run, tiny_data)
        result = fit(net, run, tiny_data, progress=None)
        aucs[kind] = evaluate(net, tiny_data).auc
        if kind == "hash":
            stats = result.table_stats
            assert stats["live_rows"] == stats["admitted"] > 1000
            assert stats["default_lookups"] == 0  # permit 1: every key has a row
    assert aucs["hash"] == pytest.approx(aucs["static"], abs=0.01)


def test_a_permit_threshold_drops_rare_keys_and_counts_them(tiny_data):
    run = build_run_config("wide_deep", "cpu-small",
                           embedding={"kind": "hash", "permit_filter_value": 3},
                           train_overrides={"batch_size": 500})
    net = build(run, tiny_data)
    stats = fit(net, run, tiny_data, progress=None).table_stats
    assert stats["candidates"] > 0 and stats["default_lookups"] > 0
    assert stats["admitted"] == stats["live_rows"]
    # Evaluation serves the dropped keys the default row.
    keys = next(batches(tiny_data, "test", 500))[0]
    assert (net.hash_index.lookup(keys) == 0).any()
