"""The remote tier: packed rows in a Redis-protocol server (Redis, Valkey) or a Redis
Cluster, through the ``redis`` client (with ``hiredis``).

Key ``{namespace}:{generation}:{key}`` (the key in decimal) -> the packed row's bytes
(:class:`~mindrec.embedding.cache.tiers.RowCodec`). Reads and writes are pipelined MGET
and MSET of ``chunk_rows`` keys each. On a cluster the keys carry no hash tag, so rows
spread over every master; each chunk's MGET and MSET is split per hash slot by the
client (``mget_nonatomic`` / ``mset_nonatomic``: one pipeline per node).

The tier keeps, in host memory, the index of the keys it wrote (a
:class:`~mindrec.embedding.cache.slot_map.SlotMap`, about 60 bytes a key) with their
dirty bits and the policy: it is the only writer of its namespace and generation, asks
the server only for keys it holds, and chooses its own victims (dirty ones are written to
``below``, then every victim is unlinked). Run the server with ``maxmemory-policy
noeviction``: a row the server dropped on its own is an error if it was not yet
written down.

A restart begins a new generation (:meth:`RedisTier.new_generation`), so rows written
after the checkpoint are never read back.
"""
from __future__ import annotations

import re
from contextlib import contextmanager
from urllib.parse import urlsplit

import numpy as np
import redis
from redis.cluster import ClusterNode, RedisCluster
from redis.exceptions import RedisClusterException

from mindrec.embedding.cache.errors import tier_error
from mindrec.embedding.cache.tiers import IndexedTier, RowCodec, Tier

_OPERATION_TIMEOUT_S = 120.0  # one pipelined command; a stuck server fails, never hangs
_SCAN_BATCH = 1000
_NAMESPACE = re.compile(r"^[A-Za-z0-9_.-]+$")  # nothing that SCAN MATCH or hash tags read


class RedisTier(IndexedTier):
    """Packed rows in Redis, Valkey or a Redis Cluster.

    Args:
        url (str): ``redis://[user:password@]host:port[/db]``, ``unix:///path.sock``, or
            ``redis://host:port,host:port,...`` for a cluster.
        width (int): floats per packed row.
        namespace (str): key prefix (letters, digits, ``_.-``).
        generation (int): the generation this tier reads and writes.
        capacity_rows (int | None): rows held at most; None: unbounded.
        policy (str): "lru" or "lfu" (with a capacity).
        below (Tier | None): the next tier down, of the same width.
        cluster (bool): a Redis Cluster even if the URL names one host.
        chunk_rows (int): keys per MGET / MSET.
        connect_timeout_s (float): how long the server has to answer at construction.
        name (str): the tier's name in errors and stats.

    Raises:
        ConnectionError: no server answers at the URL's address.
    """

    def __init__(self, url: str, width: int, namespace: str = "mindrec", generation: int = 0,
                 capacity_rows: int | None = None, policy: str = "lru",
                 below: Tier | None = None, *, cluster: bool = False, chunk_rows: int = 4096,
                 connect_timeout_s: float = 5.0, name: str = "remote"):
        if not _NAMESPACE.match(namespace):
            raise ValueError(f"{name} tier: namespace {namespace!r} must be letters, digits, "
                             f"'_', '.' or '-'")
        self.namespace, self.generation = namespace, int(generation)
        self.chunk_rows = chunk_rows
        self.address = address_of(url)
        self.where = f"{name} tier at {self.address}"
        self.cluster = cluster or "," in self.address
        self._codec = RowCodec(width)
        self._setup(name, width, capacity_rows, policy, below)
        self._client = connect(url, cluster=self.cluster, connect_timeout_s=connect_timeout_s,
                               who=f"{name} tier")

    def close(self):
        with self._lock:
            super().close()
            self._client.close()

    def new_generation(self) -> int:
        """Begin the next generation: what this tier held is forgotten (rows not yet
        written down are lost: flush first to keep them) and every key of this namespace
        from other generations is unlinked. Returns the new generation."""
        with self._lock:
            self._check_open()
            self.generation += 1
            self._reset_index()
            current = self._prefix().encode()
            with self._talking("discarding earlier generations"):
                batch = []
                for name in self._client.scan_iter(match=f"{self.namespace}:*",
                                                   count=_SCAN_BATCH):
                    if not name.startswith(current):
                        batch.append(name)
                    if len(batch) == _SCAN_BATCH:
                        self._unlink(batch)
                        batch = []
                self._unlink(batch)
            return self.generation

    # -- storage --------------------------------------------------------------------------

    def _load(self, keys, slots):
        """Rows from the server. A key it no longer has is forgotten if a tier below
        has its row (clean), else an error."""
        try:
            found, rows, steps = self._codec.unpack(self._mget(self._names(keys)))
        except ValueError as error:
            raise tier_error(self.name, self.address, error) from error
        lost = ~found
        if lost.any():
            unsaved = lost & (self._dirty[slots] | (self.below is None))
            if unsaved.any():
                raise tier_error(
                    self.name, self.address,
                    f"the server no longer has {int(unsaved.sum()):,} rows of generation "
                    f"{self.generation} that exist nowhere else (evicted under maxmemory, "
                    f"flushed, or restarted?); run it with maxmemory-policy noeviction")
            self._forget(keys[lost])
        return found, rows, steps

    def _store(self, keys, slots, rows, steps):
        self._mset(self._names(keys), self._codec.pack(rows, steps))

    def _drop(self, keys, slots):
        self._unlink(self._names(keys))

    def _prefix(self) -> str:
        return f"{self.namespace}:{self.generation}:"

    def _names(self, keys: np.ndarray) -> list[str]:
        prefix = self._prefix()
        return [f"{prefix}{key}" for key in keys.tolist()]

    def _chunks(self, items: list) -> list[list]:
        return [items[i:i + self.chunk_rows] for i in range(0, len(items), self.chunk_rows)]

    def _mget(self, names: list[str]) -> list[bytes | None]:
        if not names:
            return []
        with self._talking("reading rows"):
            if self.cluster:
                return [v for chunk in self._chunks(names)
                        for v in self._client.mget_nonatomic(chunk)]
            pipe = self._client.pipeline(transaction=False)
            for chunk in self._chunks(names):
                pipe.mget(chunk)
            return [v for part in pipe.execute() for v in part]

    def _mset(self, names: list[str], values: list[bytes]) -> None:
        if not names:
            return
        pairs = self._chunks(list(zip(names, values)))
        with self._talking("writing rows"):
            if self.cluster:
                for chunk in pairs:
                    self._client.mset_nonatomic(dict(chunk))
                return
            pipe = self._client.pipeline(transaction=False)
            for chunk in pairs:
                pipe.mset(dict(chunk))
            pipe.execute()

    def _unlink(self, names: list) -> None:
        if not names:
            return
        with self._talking("unlinking rows"):
            pipe = self._client.pipeline(transaction=False)
            if self.cluster:  # multi-key commands must stay in one hash slot
                for name in names:
                    pipe.unlink(name)
            else:
                for chunk in self._chunks(names):
                    pipe.unlink(*chunk)
            pipe.execute()

    @contextmanager
    def _talking(self, what: str):
        """Errors of the client as errors naming this tier and its address."""
        try:
            yield
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as error:
            raise ConnectionError(f"{self.name} tier: lost the server at {self.address} "
                                  f"while {what}: {error}") from error
        except (redis.exceptions.RedisError, RedisClusterException) as error:
            raise tier_error(self.name, self.address, f"{what}: {error}") from error


def address_of(url: str) -> str:
    """``host:port[,host:port...]`` (or a socket's path) of a Redis URL, without
    credentials: what error messages name."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return parts.path
    if parts.scheme not in ("redis", "rediss"):
        raise ValueError(f"Redis URL {url!r}: the scheme must be redis://, rediss:// or "
                         f"unix://")
    hosts = [h for h in parts.netloc.rpartition("@")[2].split(",") if h]
    if not hosts:
        raise ValueError(f"Redis URL {url!r} names no host")
    return ",".join(hosts)


def connect(url: str, *, cluster: bool = False, connect_timeout_s: float = 5.0,
            who: str = "remote tier"):
    """A ``redis`` client of ``url`` that has answered PING: a ``RedisCluster`` when the
    URL names several hosts or ``cluster`` is set, else a ``Redis``.

    Raises:
        ConnectionError: nothing answers at the address within ``connect_timeout_s``;
            the message starts with ``who`` and names the address.
    """
    address = address_of(url)
    options = {"socket_connect_timeout": connect_timeout_s,
               "socket_timeout": _OPERATION_TIMEOUT_S}
    try:
        if cluster or "," in address:
            parts = urlsplit(url)
            nodes = [ClusterNode(*_host_port(host)) for host in address.split(",")]
            client = RedisCluster(startup_nodes=nodes, username=parts.username,
                                  password=parts.password, ssl=parts.scheme == "rediss",
                                  **options)
        else:
            client = redis.Redis.from_url(url, **options)
        client.ping()
    except (redis.exceptions.RedisError, RedisClusterException, OSError) as error:
        raise ConnectionError(f"{who}: no Redis server answers at {address} within "
                              f"{connect_timeout_s:g} s ({error})") from error
    return client


def _host_port(host: str) -> tuple[str, int]:
    name, _, port = host.rpartition(":")
    return (name, int(port)) if name else (host, 6379)
