"""The hash embedding's host index (mirrors ``mindrec.embedding.hash_index``): lookups
and one training step's bookkeeping over a table of 1M random int64 keys. These need
neither the dataset nor MindSpore, so the class does not share the suite's setup_cache.
"""
from __future__ import annotations

import importlib.util

from .common import HASH_INDEX, NUM_FIELDS, VERSION


class HashIndexOps:
    """``lookup`` of 1M Zipf-skewed keys, and ``train_lookup`` + ``advance`` of a step
    (common.HASH_INDEX)."""

    timeout = 120
    number = 1
    repeat = 10
    rounds = 1
    min_run_count = 1
    version = VERSION

    def setup(self):
        if importlib.util.find_spec("mindrec.embedding.hash_index") is None:
            raise NotImplementedError("mindrec.embedding.hash_index does not exist at this commit")
        import numpy as np

        from mindrec.embedding.hash_index import HashIndex
        size = HASH_INDEX["keys"]
        rng = np.random.default_rng(HASH_INDEX["seed"])
        keys = np.unique(rng.integers(0, 2**62, int(size * 1.01)))[:size]
        self.queries = keys[(rng.zipf(HASH_INDEX["zipf"], size) - 1) % len(keys)]
        self.batch = self.queries[:HASH_INDEX["batch_rows"] * NUM_FIELDS]
        self.index = HashIndex(len(keys))
        self.index.insert(keys)  # also compiles (or loads) the numba kernels
        self.index.lookup(self.batch)

    def time_lookup(self):
        self.index.lookup(self.queries)

    def time_train_lookup(self):
        self.index.train_lookup(self.batch)
        self.index.advance()
