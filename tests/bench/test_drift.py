"""A hash table with eviction on a drifting stream stays bounded."""
from bench.drift import DriftSpec, run_drift


def test_eviction_bounds_rows_and_index_memory_on_a_drifting_stream():
    spec = DriftSpec(distinct_keys=300_000, window=10_000, batch=4_000, evict=5, samples=20)
    result = run_drift(spec, progress=None)
    series = result["series"]
    assert series[-1]["admitted"] > 250_000  # the stream really moved on
    assert series[-1]["evicted"] > 200_000
    half = series[len(series) // 2:]
    # Live rows stay near the window (plus what has not idled out yet), far below what
    # passed, and the index stops growing once eviction balances admission.
    assert max(s["live_rows"] for s in series) < 3 * spec.window
    assert half[-1]["index_mb"] == half[0]["index_mb"]
