"""Builds a run's cache from its :class:`~mindrec.config.CacheConfig`: the device tier
over a hash index and the tiers behind it."""
from __future__ import annotations

import os
import uuid
from pathlib import Path

from mindrec.config import CacheConfig, ConfigError
from mindrec.embedding.cache.device import SNAPSHOT_NAMES, DeviceCache
from mindrec.embedding.cache.tiers import HostTier, Tier, TierChain
from mindrec.embedding.hash_index import HashIndex


def device_cache(config: CacheConfig, index: HashIndex, seed: int = 0) -> DeviceCache:
    """The device tier over ``index`` (whose capacity is the device rows) and the tiers
    behind it, made once the row width is known."""
    namespace = f"mindrec-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    generations = iter(range(1 << 62))  # a restart reads no row of an earlier one

    def make_chain(width: int, snapshot: Path | None) -> TierChain:
        return build_chain(config, width, index.capacity, namespace, next(generations),
                           snapshot)
    return DeviceCache(index, make_chain, policy=config.policy.value,
                       lookahead=config.lookahead, initial_rows=config.initial_rows or 0,
                       seed=seed)


def build_chain(config: CacheConfig, width: int, device_rows: int, namespace: str,
                generation: int = 0, snapshot: Path | None = None) -> TierChain:
    """The tiers named by ``config.tiers``, bottom first so each knows the one below;
    the bottom one a copy of ``snapshot`` (a cache snapshot directory) if given."""
    below: Tier | None = None
    tiers = []
    for name in reversed(config.tier_names):
        bottom = below is None
        saved = snapshot / SNAPSHOT_NAMES[name] if bottom and snapshot is not None else None
        if name == "ssd":
            tier = _ssd(config, width, saved)
        elif name == "remote":
            if saved is not None:
                raise ConfigError("cache.tiers: a remote tier at the bottom cannot be "
                                  "restored from a checkpoint (it is a cache, not a store)")
            tier = _remote(config, width, namespace, generation, below)
        else:
            rows = config.tier_rows("host", device_rows)
            tier = (HostTier(width, rows, config.policy.value, below) if saved is None else
                    HostTier.from_snapshot(saved, rows, config.policy.value, below))
        tiers.insert(0, tier)
        below = tier
    return TierChain(tiers)


def _ssd(config: CacheConfig, width: int, saved: Path | None) -> Tier:
    from mindrec.embedding.cache.ssd import SSDTier
    if config.ssd_path is None:
        raise ConfigError("cache.ssd_path: the ssd tier needs a directory (mindrec-bench "
                          "makes one per run)")
    if saved is None:
        return SSDTier(config.ssd_path, width)
    return SSDTier.from_snapshot(saved, _fresh(config.ssd_path), width)


def _fresh(path: str) -> Path:
    """A new directory beside ``path`` for a restored SSD tier (the old one may still
    hold rows written after the checkpoint)."""
    return Path(f"{path}.restored-{uuid.uuid4().hex[:8]}")


def _remote(config: CacheConfig, width: int, namespace: str, generation: int,
            below: Tier | None) -> Tier:
    from mindrec.embedding.cache.remote import RedisTier
    if config.remote_url is None:
        raise ConfigError("cache.remote_url: the remote tier needs a Redis-protocol server "
                          "(mindrec-bench starts one, or pass --redis-url)")
    return RedisTier(config.remote_url, width, namespace, generation,
                     capacity_rows=config.tier_rows("remote", 0), policy=config.policy.value,
                     below=below)
