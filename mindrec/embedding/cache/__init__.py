"""The multi-level embedding cache: device, host, remote and SSD tiers (docs/embedding-cache.md)."""
