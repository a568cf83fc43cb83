"""What a cell with an embedding cache needs around its training: the services of its
tiers (a Redis-protocol server, an SSD directory) and the record metrics of the cache.
"""
from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import numpy as np

from bench.services import RedisServer, remote_url
from mindrec.config import RunConfig
from mindrec.embedding.cache.analysis import KeyTrace, summary
from mindrec.embedding.cache.device import DeviceCache

MB = 2**20


@dataclasses.dataclass
class CacheServices:
    """The run with its cache's services in place, and the server started for it."""

    run: RunConfig
    server: RedisServer | None = None


@contextmanager
def cache_services(run: RunConfig, work_dir: Path | None = None) -> Iterator[CacheServices]:
    """For the ``with``: a Redis-protocol server when the remote tier has no URL (the
    user's URL is checked), and a fresh directory for the SSD tier when none is set
    (inside ``work_dir``, or a temporary one); removed at the end, server stopped."""
    cache = run.cache
    if not cache.enabled:
        yield CacheServices(run)
        return
    with ExitStack() as stack:
        server = None
        changes = {}
        if "remote" in cache.tier_names:
            if cache.remote_url is None:
                server = stack.enter_context(RedisServer(log_dir=work_dir))
                changes["remote_url"] = server.url
            else:
                stack.enter_context(remote_url(cache.remote_url))  # it answers, or an error
        if "ssd" in cache.tier_names and cache.ssd_path is None:
            root = stack.enter_context(tempfile.TemporaryDirectory(
                prefix="mindrec-ssd-", dir=work_dir))
            changes["ssd_path"] = str(Path(root) / "table")
        if changes:
            run = dataclasses.replace(run, cache=dataclasses.replace(cache, **changes))
        yield CacheServices(run, server)


def cache_metrics(cache: DeviceCache, server: RedisServer | None) -> dict:
    """The record metrics of a cache after training (bench/results.py, cache_*)."""
    c = cache.counters
    steps = max(1, c.steps)
    metrics = {
        "cache_hit_rate": c.lookup_hits / max(1, c.lookups),
        "cache_hit_rate_unique": c.unique_hits / max(1, c.unique),
        "cache_hit_curve": [round(rate, 4) for rate in c.hit_curve],
        "cache_cold_misses": c.created, "cache_capacity_misses": c.fetched,
        "cache_victims": c.victims, "cache_written_back": c.written_back,
        "cache_fetched_per_step": c.fetched / steps,
        "cache_written_back_per_step": c.written_back / steps,
        "cache_exposed_fetch_ms": 1e3 * c.exposed_fetch_s / steps,
        "cache_hidden_fetch_ms": 1e3 * c.hidden_fetch_s / steps,
        "cache_device_mb": cache.index.capacity * cache.width * 4 / MB,
        "cache_bulk_load_s": cache.bulk_load_s,
        "cache_remote_peak_rss_mb": None if server is None else server.peak_rss_mb(),
    }
    if cache.trace:
        metrics.update(replay_metrics(cache))
    for name, stats in cache.chain.stats().items():
        metrics[f"cache_{name}_hit_rate"] = stats.hits / stats.gets if stats.gets else None
        metrics[f"cache_{name}_rows_held"] = stats.rows_held
        metrics[f"cache_{name}_mb_held"] = stats.bytes_held / MB
        metrics[f"cache_{name}_mb_read"] = stats.bytes_read / MB
        metrics[f"cache_{name}_mb_written"] = stats.bytes_written / MB
    return metrics


# Device sizes of the miss-ratio curve, as fractions of the keys the run touched.
MRC_FRACTIONS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)


def replay_metrics(cache: DeviceCache) -> dict:
    """The recorded key trace replayed offline at the device's size: Belady's optimum
    and LRU and LFU with each step's keys pinned together (as the device pins them), the
    run's own hit rate against Belady's, and the LRU miss-ratio curve."""
    trace = KeyTrace.from_steps(cache.trace)
    biggest_step = max(len(keys) for keys in cache.trace)
    touched = len(np.unique(trace.keys))
    sizes = sorted({max(biggest_step, round(f * touched)) for f in MRC_FRACTIONS})
    report = summary(trace, capacity=max(cache.index.capacity, biggest_step), sizes=sizes)
    rates = report["per_step_key"]
    online = cache.counters.unique_hits / max(1, cache.counters.unique)
    curve = report["lru_miss_ratio"]
    return {
        "cache_touched_keys": touched,
        "cache_belady_hit_rate_unique": rates["belady"],
        "cache_lru_hit_rate_unique": rates["lru"],
        "cache_lfu_hit_rate_unique": rates["lfu"],
        "cache_hit_rate_vs_belady": online / rates["belady"] if rates["belady"] else None,
        "cache_mrc": [[round(size / touched, 4), round(ratio, 4)]
                      for size, ratio in zip(curve["sizes"], curve["per_step_key"])],
    }
