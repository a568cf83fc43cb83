"""The hash index's shared layout: one module without numba that the index and its
kernels both import (no import circle), and counters that land in their named slots."""
import subprocess
import sys

import numpy as np

from mindrec.embedding import hash_layout
from mindrec.embedding.hash_index import HashIndex


def _modules_after(statement: str) -> set[str]:
    """Names in sys.modules after running ``statement`` in a fresh interpreter."""
    code = f"import sys\n{statement}\nprint(' '.join(sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=True)
    return set(done.stdout.split())


def test_layout_imports_nothing_and_kernels_do_not_import_the_index():
    assert "numba" not in _modules_after("import mindrec.embedding.hash_layout")
    loaded = _modules_after("import mindrec.embedding.hash_kernels")
    assert "mindrec.embedding.hash_index" not in loaded


def test_counter_slots_are_distinct_and_fill_the_array():
    slots = [value for name, value in vars(hash_layout).items()
             if name.isupper() and isinstance(value, int) and name not in
             ("EMPTY", "DELETED", "N_COUNTERS")]
    assert sorted(slots) == list(range(hash_layout.N_COUNTERS))


def test_counters_land_in_their_named_slots():
    index = HashIndex(capacity=1, permit_filter_value=2, evict_filter_value=1)
    index.train_lookup(np.array([7, 7, 9]))  # two candidates, three default lookups
    index.advance()
    index.train_lookup(np.array([7, 9]))  # 7 takes the only row; 9 is refused
    index.erase(np.array([7]))
    index.insert(np.array([5]))
    for _ in range(3):
        index.advance()  # 5 and 9 idle past evict_filter_value
    stats = index.stats()
    assert (stats.lookups, stats.default_lookups) == (5, 4)
    assert (stats.admitted, stats.erased, stats.evicted, stats.rejected_full) == (2, 1, 1, 1)
    assert (stats.live_rows, stats.candidates) == (0, 0)
    removed, _, _ = index.take_changes()
    assert sorted(removed.tolist()) == [5, 7]
