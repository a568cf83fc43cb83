"""The hash embedding's host index beside a Python dict and numpy binary search, and
the train step on hash tables beside static ones (the whole cost of dynamic keys per
step).

Lookups and inserts use one core (numba kernels, no threads). Keys are random int64
values over the whole range, so they carry no locality a sequential id would give.
"""
from __future__ import annotations

import time

import numpy as np
import pytest

from bench.benchmarks.loops import held_batch_loop
from bench.micro.settings import BATCH, HASH_KEYS, HASH_RATIO_PAIRS, HASH_TRAIN_STEPS, SEED
from mindrec.data.criteo import NUM_FIELDS


@pytest.fixture(scope="session")
def keys() -> np.ndarray:
    """HASH_KEYS distinct random int64 keys (none reserved)."""
    rng = np.random.default_rng(SEED)
    population = np.unique(rng.integers(0, 2**62, int(HASH_KEYS * 1.01)))
    return rng.permutation(population)[:HASH_KEYS]


@pytest.fixture(scope="session")
def queries(keys) -> np.ndarray:
    """HASH_KEYS lookups of held keys, Zipf-skewed as feature ids are."""
    rng = np.random.default_rng(SEED + 1)
    return keys[(rng.zipf(1.1, HASH_KEYS) - 1) % len(keys)]


@pytest.fixture(scope="session")
def filled_index(keys):
    from mindrec.embedding.hash_index import HashIndex
    index = HashIndex(len(keys))
    index.insert(keys)
    return index


def test_index_lookup(benchmark, filled_index, queries, per_second):
    """HashIndex.lookup (inference path) of HASH_KEYS keys in a table of HASH_KEYS."""
    benchmark(filled_index.lookup, queries)
    per_second(len(queries), "lookups_per_s")


def test_dict_lookup(benchmark, keys, queries, per_second):
    """The baseline: a Python dict key -> slot, the same lookups."""
    table = dict(zip(keys.tolist(), range(1, len(keys) + 1)))
    listed = queries.tolist()
    benchmark(lambda: [table.get(k, 0) for k in listed])
    per_second(len(queries), "lookups_per_s")


def test_numpy_sorted_lookup(benchmark, keys, queries, per_second):
    """The vectorised numpy alternative: binary search in the sorted keys."""
    order = np.argsort(keys)
    sorted_keys, slots = keys[order], (order + 1).astype(np.int32)

    def lookup():
        at = np.minimum(np.searchsorted(sorted_keys, queries), len(sorted_keys) - 1)
        return np.where(sorted_keys[at] == queries, slots[at], 0)

    benchmark(lookup)
    per_second(len(queries), "lookups_per_s")


def test_index_train_lookup(benchmark, filled_index, queries, per_second):
    """HashIndex.train_lookup + advance: hit counting, admission, eviction bookkeeping."""
    batch = queries[:BATCH * NUM_FIELDS]

    def step():
        filled_index.train_lookup(batch)
        filled_index.advance()

    benchmark(step)
    per_second(len(batch), "lookups_per_s")


def test_index_insert(benchmark, keys, per_second):
    """HashIndex.insert of HASH_KEYS new keys into an empty index sized for them."""
    from mindrec.embedding.hash_index import HashIndex
    benchmark.pedantic(lambda index: index.insert(keys),
                       setup=lambda: ((HashIndex(len(keys)),), {}), rounds=5)
    per_second(len(keys), "inserts_per_s")


def test_dict_insert(benchmark, keys, per_second):
    """The baseline: building a Python dict of the same keys."""
    listed = keys.tolist()

    def build():
        table = {}
        for slot, key in enumerate(listed, 1):
            table[key] = slot
        return table

    benchmark.pedantic(build, rounds=5)
    per_second(len(keys), "inserts_per_s")


@pytest.fixture(scope="session")
def train_loops(runtime, dataset) -> dict:
    """HASH_TRAIN_STEPS Wide&Deep (cpu-small) train steps on held batches, per table
    kind, after one warm-up pass (which compiles and admits every key). Hash tables
    always take sparse updates, so ``static-sparse`` is their like-for-like twin;
    ``static-dense`` is what a static table of this size uses by default. With hash
    tables each step also turns its keys into slots and ends the index step."""
    from mindrec.config import build_run_config
    from mindrec.train.trainer import build
    loops = {}
    for name, kind, sparse in TABLES:
        run = build_run_config("wide_deep", "cpu-small", embedding={"kind": kind},
                               train_overrides={"seed": SEED, "sparse": sparse})
        loops[name] = held_batch_loop(build(run, dataset), run, dataset, HASH_TRAIN_STEPS,
                                      warmup_steps=HASH_TRAIN_STEPS)
    return loops


TABLES = [("static-dense", "static", "off"), ("static-sparse", "static", "on"),
          ("hash", "hash", "on")]


def _interleaved_ratio(loops: dict, name: str, twin: str, pairs: int) -> float:
    """Median time of loop ``name`` / loop ``twin`` over alternating pairs (one run, so
    machine drift cancels)."""
    times = {name: [], twin: []}
    for i in range(pairs):
        for key in ((name, twin) if i % 2 else (twin, name)):
            start = time.perf_counter()
            loops[key]()
            times[key].append(time.perf_counter() - start)
    return float(np.median(times[name]) / np.median(times[twin]))


@pytest.mark.parametrize("name", [t[0] for t in TABLES])
def test_train_steps(benchmark, train_loops, medians, name, per_second):
    """The train-step loop of each table kind; the hash case also measures its ratio to
    both static twins on alternating pairs (the summary prints them)."""
    benchmark.pedantic(train_loops[name], rounds=7)
    per_second(BATCH * HASH_TRAIN_STEPS, "samples_per_s")
    if benchmark.stats is None or name != "hash":
        return
    for twin in ("static-sparse", "static-dense"):
        ratio = _interleaved_ratio(train_loops, "hash", twin, HASH_RATIO_PAIRS)
        benchmark.extra_info[f"ratio_to_{twin}"] = medians[f"hash/{twin}"] = ratio
