"""Errors of the cache tiers: each message names the tier and its address or path."""
from __future__ import annotations


class TierError(RuntimeError):
    """A tier cannot do what was asked (its storage refuses, or holds something else)."""


class CapacityError(TierError):
    """No room: a full tier with nowhere to write its victims, or too few unpinned slots."""


def tier_error(tier: str, where: str, error: Exception | str) -> TierError:
    """A :class:`TierError` naming the tier and its address or path."""
    return TierError(f"{tier} tier at {where}: {error}")
