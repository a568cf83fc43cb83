"""The device tier: training through the cache is training on the whole table.

A run whose device tier holds a fraction of the keys, with the rest in the tiers below,
must give the same losses and the same rows (values and optimizer state) as the plain
hash table that holds every key: placement is not allowed to change what is learnt.
"""
import numpy as np
import pytest

from mindrec.config import build_run_config
from mindrec.embedding.cache.device import DeviceCache, DeviceTierTooSmall
from mindrec.train.trainer import build, fit

BATCH, STEPS, DEVICE_ROWS = 50, 60, 1600


def run_config(model="wide_deep", cache=None, embedding=None):
    return build_run_config(
        model, embedding={"kind": "hash", **(embedding or {})}, cache=cache or {},
        train_overrides={"batch_size": BATCH, "max_steps": STEPS, "epochs": 10, "seed": 4})


def train(run, data):
    network = build(run, data)
    result = fit(network, run, data, progress=None)
    return network, result


def logical_rows(network, keys):
    """Every key's packed row (values and optimizer state), from a cache or a table."""
    index = network.hash_index
    if isinstance(index, DeviceCache):
        found, rows = index.rows(keys)
        return found, rows
    tables = [cell for _, cell in network.cells_and_names()
              if type(cell).__name__ == "HashEmbedding"]
    slots = index.peek(keys)[0]
    parts = []
    for table in tables:
        for param in [table.table, *(state for state, _ in table.optimizer_states)]:
            parts.append(param.asnumpy()[slots])
    return slots > 0, np.concatenate(parts, axis=1)


@pytest.fixture(scope="module")
def reference(tiny_data):
    """The plain hash table (every key resident) and the keys the run touched."""
    network, result = train(run_config(), tiny_data)
    keys = network.hash_index.items()[0]
    return network, result, keys


@pytest.mark.parametrize("cache", [
    {"device_rows": DEVICE_ROWS, "lookahead": 0},
    {"device_rows": DEVICE_ROWS, "lookahead": 2},
    {"device_rows": DEVICE_ROWS, "lookahead": 1, "policy": "lfu"},
    {"device_rows": DEVICE_ROWS, "host_rows": 600, "tiers": "host+ssd"},
], ids=["inline", "lookahead2", "lfu", "host+ssd"])
def test_training_through_the_cache_learns_the_same_rows(tiny_data, reference, cache,
                                                         tmp_path):
    if "ssd" in cache.get("tiers", ""):
        cache = {**cache, "ssd_path": str(tmp_path / "ssd")}
    ref_network, ref_result, keys = reference
    network, result = train(run_config(cache=cache), tiny_data)
    assert len(keys) > DEVICE_ROWS  # the device really holds only part of the table
    counters = network.hash_index.counters
    assert counters.victims > 0 and counters.fetched > 0  # rows moved both ways
    np.testing.assert_allclose(result.losses, ref_result.losses, rtol=0, atol=1e-6)
    found, rows = logical_rows(network, keys)
    ref_found, ref_rows = logical_rows(ref_network, keys)
    assert found.all() and ref_found.all()
    np.testing.assert_allclose(rows, ref_rows, rtol=0, atol=1e-6)


def test_admission_and_eviction_keep_their_meaning(tiny_data):
    """permit 2 / evict 5: the cached run admits and evicts the same keys as the table."""
    embedding = {"permit_filter_value": 2, "evict_filter_value": 5}
    ref_network, ref_result = train(run_config(embedding=embedding), tiny_data)
    network, result = train(run_config(embedding=embedding,
                                       cache={"device_rows": DEVICE_ROWS}), tiny_data)
    np.testing.assert_allclose(result.losses, ref_result.losses, rtol=0, atol=1e-6)
    keys = ref_network.hash_index.items()[0]
    found, rows = logical_rows(network, keys)
    ref_found, ref_rows = logical_rows(ref_network, keys)
    assert found.all()
    np.testing.assert_allclose(rows, ref_rows, rtol=0, atol=1e-6)


def test_a_device_tier_smaller_than_a_batch_is_a_clear_error(tiny_data):
    with pytest.raises(DeviceTierTooSmall, match="device tier of 300 rows"):
        train(run_config(cache={"device_rows": 300}), tiny_data)


def test_clean_rows_are_not_written_back(tiny_data, reference):
    """Inference places rows without training them: evicting them writes nothing."""
    reference_keys = reference[2]
    network, _ = train(run_config(cache={"device_rows": DEVICE_ROWS}), tiny_data)
    cache = network.hash_index
    cache.flush()
    keys = reference_keys
    before = cache.counters.written_back
    for start in range(0, len(keys), 400):  # more keys than the device holds
        cache.lookup(keys[start:start + 400])
    assert cache.counters.victims > 0
    assert cache.counters.written_back == before


def test_a_bulk_loaded_table_serves_every_key_and_creates_none(tiny_data, tmp_path):
    """20,000 rows loaded into the SSD tier before training (never through the device);
    the data's keys, spread over those 20,000, are all found there, and an untouched
    row is a new row: wide weight 0 with FTRL's initial slots, a drawn deep row with
    zero Adam moments."""
    run = build_run_config(
        "wide_deep", embedding={"kind": "hash"},
        cache={"device_rows": DEVICE_ROWS, "tiers": "host+ssd", "host_rows": 600,
               "ssd_path": str(tmp_path / "ssd"), "initial_rows": 20_000},
        train_overrides={"batch_size": BATCH, "max_steps": 20, "table_size": 20_000})
    network = build(run, tiny_data)
    cache = network.hash_index
    cache.record_trace()
    fit(network, run, tiny_data, progress=None)
    assert cache.counters.created == 0 and cache.counters.fetched > 0
    assert cache.chain.stats()["ssd"].puts >= 20_000
    untouched = np.setdiff1d(np.arange(20_000), np.concatenate(cache.trace))[:5]
    found, rows = cache.rows(untouched)
    assert found.all()
    wide, accum, linear, deep, moments = (rows[:, 0], rows[:, 1], rows[:, 2], rows[:, 3:19],
                                          rows[:, 19:])
    assert not wide.any() and not linear.any() and not moments.any()
    assert (accum == run.model_config.ftrl_initial_accum).all()
    assert deep.std() > 0


@pytest.mark.parametrize("model", ["dcn", "deepfm", "dcnv2", "dlrm"])
def test_every_model_trains_through_the_cache_as_on_the_whole_table(tiny_data, model):
    plain_network, plain = train(run_config(model), tiny_data)
    network, cached = train(run_config(model, cache={"device_rows": DEVICE_ROWS}), tiny_data)
    keys = plain_network.hash_index.items()[0]
    assert len(keys) > DEVICE_ROWS and network.hash_index.counters.victims > 0
    np.testing.assert_allclose(cached.losses, plain.losses, rtol=0, atol=1e-6)
    found, rows = logical_rows(network, keys)
    plain_found, plain_rows = logical_rows(plain_network, keys)
    assert found.all() and plain_found.all()
    np.testing.assert_allclose(rows, plain_rows, rtol=0, atol=1e-6)
