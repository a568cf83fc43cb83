"""The hash embedding's host index (mirrors ``mindrec.embedding.hash_index``): lookups
and one training step's bookkeeping over a table of 1M random int64 keys. These need
neither the dataset nor MindSpore, so the class does not share the suite's setup_cache.
"""
from __future__ import annotations

import importlib.util

from .common import VERSION

KEYS = 1_000_000  # keys held by the index
BATCH_KEYS = 39_000  # keys of one training step (1000 rows x 39 fields)


class HashIndexOps:
    """``lookup`` of 1M Zipf-skewed keys, and ``train_lookup`` + ``advance`` of a step."""

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
        rng = np.random.default_rng(0)
        keys = np.unique(rng.integers(0, 2**62, int(KEYS * 1.01)))[:KEYS]
        self.queries = keys[(rng.zipf(1.1, KEYS) - 1) % len(keys)]
        self.batch = self.queries[:BATCH_KEYS]
        self.index = HashIndex(len(keys))
        self.index.insert(keys)  # also compiles (or loads) the numba kernels
        self.index.lookup(self.batch)

    def time_lookup(self):
        self.index.lookup(self.queries)

    def time_train_lookup(self):
        self.index.train_lookup(self.batch)
        self.index.advance()
