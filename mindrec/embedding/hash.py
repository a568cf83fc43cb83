"""Dynamic hash embedding: rows for arbitrary integer keys, admitted after
``permit_filter_value`` hits and evicted after ``evict_filter_value`` idle steps.

Two implementations of one surface (``put``, ``get``, ``erase``, ``len``, ``keys``,
``values``, incremental export and import):

* :class:`HashEmbedding` (CPU): MindSpore 2.10 has no CPU kernels for MapParameter
  (FACTS.md), so a host-side :class:`~mindrec.embedding.hash_index.HashIndex` turns keys
  into row slots before each step and the compiled step reads a plain table of
  ``capacity + 1`` rows. Slot 0 is the default row: keys without a row read the default
  value and get no update. A newly admitted (or recycled) slot starts from a fresh row
  and fresh optimizer state. Tables built on one index share its keys (Wide&Deep's wide
  and deep tables admit and evict together).
* :class:`DeviceHashEmbedding` (GPU): MindSpore's own ``MapParameter``, whose hash table,
  filters and sparse optimizer updates run in device kernels.

``default_value`` is "normal" (new rows drawn from N(0, init_std^2), as MindSpore's
Normal initializer; keys without a row read 0, the mean), "zeros", "ones" or a number.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import mindspore as ms
import numpy as np
from mindspore import Tensor, nn, ops

from mindrec.embedding.hash_index import HashIndex
from mindrec.embedding.static import StaticEmbedding
from mindrec.npz import load_npz, save_npz

DEFAULT_VALUES = ("normal", "zeros", "ones")


def resolve_default(default_value) -> float | None:
    """The constant a default value stands for; None for "normal" (random rows)."""
    if isinstance(default_value, str):
        if default_value not in DEFAULT_VALUES:
            raise ValueError(f"default_value {default_value!r} is not one of "
                             f"{', '.join(DEFAULT_VALUES)} or a number")
        return {"normal": None, "zeros": 0.0, "ones": 1.0}[default_value]
    if isinstance(default_value, bool) or not isinstance(default_value, (int, float)):
        raise ValueError(f"default_value must be a name or a number, got {default_value!r}")
    return float(default_value)


def _row_width(value_shape) -> int:
    shape = (value_shape,) if isinstance(value_shape, int) else tuple(value_shape)
    if len(shape) != 1 or shape[0] < 1:
        raise ValueError(f"value_shape must be one positive width (embedding rows), "
                         f"got {value_shape!r}")
    return int(shape[0])


class HashEmbedding(nn.Cell):
    """CPU hash embedding: a :class:`HashIndex` in front of a ``(capacity + 1, dim)`` table.

    Args:
        index (HashIndex): the key -> slot index (may be shared by several tables).
        value_shape (int | tuple[int]): row width.
        default_value: "normal", "zeros", "ones" or a number (module docstring).
        init_std (float): standard deviation of "normal" rows.
        seed (int): seed of the rows drawn for new keys.

    Shapes:
        ``construct(slots)``: slots (B, F) int32 from ``index.train_lookup`` or
        ``index.lookup`` -> rows (B, F, dim) float32.

    Example::

        >>> table = HashEmbedding(HashIndex(capacity=100), 4, default_value="zeros")
        >>> table.put(np.array([10**12]), np.ones((1, 4), np.float32))
        >>> table.get(np.array([10**12, 5]))[:, 0]
        array([1., 0.], dtype=float32)
    """

    sparse = True  # only the rows of the batch are updated (lazy optimizers)

    def __init__(self, index: HashIndex, value_shape, default_value="normal",
                 init_std: float = 0.01, seed: int = 0):
        super().__init__()
        self.index = index
        self.dim = _row_width(value_shape)
        self.fill = resolve_default(default_value)
        self.default_value = default_value
        self.init_std = init_std
        self.rng = np.random.default_rng(seed)  # draws the rows of new keys
        self.store = StaticEmbedding(index.capacity + 1, self.dim, sparse=True, init_std=0.0)
        self.read_fill = 0.0 if self.fill is None else self.fill
        self._optimizer_states: list[tuple[ms.Parameter, np.ndarray]] = []
        index.on_admit(self._init_rows)

    @property
    def table(self) -> ms.Parameter:
        """The trainable ``(capacity + 1, dim)`` Parameter (row 0: the default row)."""
        return self.store.table

    def construct(self, slots):
        rows = self.store(slots)
        mask = ops.expand_dims(ops.cast(slots > 0, ms.float32), -1)
        if self.read_fill == 0.0:
            return rows * mask
        return rows * mask + self.read_fill * (1.0 - mask)

    @property
    def optimizer_states(self) -> list[tuple[ms.Parameter, np.ndarray]]:
        """``(state parameter, its initial row)`` of each optimizer slot of this table, in
        the optimizers' order (bound by :meth:`bind_optimizer_states`)."""
        return self._optimizer_states

    def bind_optimizer_states(self, optimizers) -> None:
        """Find this table's optimizer state (Adam moments, FTRL accumulators) so that a
        recycled slot restarts it from its initial value."""
        name = self.table.name
        self._optimizer_states = [
            (p, p.asnumpy()[0].copy())
            for opt in optimizers for p in opt.get_parameters()
            if p is not self.table and p.name.endswith("." + name) and p.shape == self.table.shape]

    def _init_rows(self, slots: np.ndarray) -> None:
        n = len(slots)
        if self.fill is None:
            rows = self.rng.normal(0.0, self.init_std, (n, self.dim)).astype(np.float32)
        else:
            rows = np.full((n, self.dim), self.fill, np.float32)
        index = Tensor(slots.astype(np.int32))
        ops.scatter_update(self.table, index, Tensor(rows))
        for state, initial in self._optimizer_states:
            ops.scatter_update(state, index, Tensor(np.broadcast_to(initial, (n, self.dim)).copy()))

    # -- the MapParameter surface -------------------------------------------------------

    def put(self, keys, values) -> None:
        """Set the rows of distinct ``keys`` (admitting them now). Nothing changes when the
        rows do not match the keys or the table has no room for the new keys."""
        keys = np.asarray(keys).reshape(-1)
        values = np.asarray(values, np.float32).reshape(-1, self.dim)
        if len(values) != len(keys):
            raise ValueError(f"put: {len(keys)} keys but {len(values)} rows of width {self.dim}")
        if len(np.unique(keys)) != len(keys):
            raise ValueError("put: keys repeat; give each key one row")
        _require_room(self.index, keys, None, "put")
        slots, _ = self.index.insert(keys)
        self.write_rows(slots, values)

    def write_rows(self, slots: np.ndarray, values: np.ndarray) -> None:
        """Overwrite table rows ``slots`` with ``values``."""
        ops.scatter_update(self.table, Tensor(slots.astype(np.int32)),
                           Tensor(np.ascontiguousarray(values, np.float32)))

    def get(self, keys) -> np.ndarray:
        """Rows of ``keys`` (the default for keys without a row); records no hit."""
        return self.read_slots(self.index.lookup(np.asarray(keys).reshape(-1)))

    def read_slots(self, slots: np.ndarray) -> np.ndarray:
        """Rows at ``slots``, with the default for slot 0."""
        rows = self.table.asnumpy()[slots]
        rows[slots == 0] = self.read_fill
        return rows

    def erase(self, keys) -> None:
        """Remove ``keys`` (from every table sharing the index)."""
        self.index.erase(keys)

    def __len__(self) -> int:
        return len(self.index)

    def keys(self) -> np.ndarray:
        """Every key holding a row."""
        return self.index.items()[0]

    def values(self) -> np.ndarray:
        """Rows of :meth:`keys`, in the same order."""
        return self.read_slots(self.index.items()[1])

    def export_delta(self, full: bool = False) -> TableDelta:
        """Changes since the previous export (everything with ``full``)."""
        return export_delta(self.index, {"values": self}, full)

    def apply_delta(self, delta: TableDelta) -> None:
        """Apply a delta exported by a table of the same shape, in sequence."""
        apply_delta(self.index, {"values": self}, delta)


class DeviceHashEmbedding(nn.Cell):
    """GPU hash embedding on MindSpore's ``MapParameter``: keys go straight to the
    device table, which admits, evicts and (with Adam, LazyAdam or FTRL) updates rows.

    Shapes:
        keys (B, F) int32 -> rows (B, F, dim) float32.
    """

    sparse = True

    def __init__(self, value_shape, default_value="normal", permit_filter_value: int = 1,
                 evict_filter_value: int | None = None, key_dtype=ms.int32):
        super().__init__()
        from mindspore.experimental import MapParameter
        resolve_default(default_value)
        self.dim = _row_width(value_shape)
        self.table = MapParameter(
            key_dtype=key_dtype, value_dtype=ms.float32, value_shape=(self.dim,),
            default_value=default_value, permit_filter_value=permit_filter_value,
            evict_filter_value=sys.maxsize if evict_filter_value is None else evict_filter_value)

    def construct(self, keys):
        return self.table.get(keys)


def bind_table_states(network: nn.Cell, optimizers) -> None:
    """Bind every hash table of ``network`` to its state in ``optimizers`` (new rows then
    restart it; a cache moves it with the rows)."""
    for _, cell in network.cells_and_names():
        if isinstance(cell, HashEmbedding):
            cell.bind_optimizer_states(optimizers)


# -- incremental export ------------------------------------------------------------------

@dataclass
class TableDelta:
    """Rows changed since the previous export of one index and its tables.

    Apply ``removed_keys`` first, then set ``keys`` to ``values[name]`` in each table;
    a ``full`` delta replaces the whole table. ``sequence`` numbers the exports from 1.
    """

    sequence: int
    full: bool
    removed_keys: np.ndarray
    keys: np.ndarray
    values: dict[str, np.ndarray] = field(default_factory=dict)

    def save(self, path: str | Path) -> None:
        """Write an ``.npz`` atomically (a reader never sees half a delta)."""
        path = Path(path)
        arrays = {"sequence": np.int64(self.sequence), "full": np.bool_(self.full),
                  "removed_keys": self.removed_keys, "keys": self.keys,
                  **{f"values/{name}": rows for name, rows in self.values.items()}}
        save_npz(path, arrays)

    @classmethod
    def load(cls, path: str | Path) -> TableDelta:
        """Read a delta written by :meth:`save`; a damaged file is an error naming it."""
        data = load_npz(path, "table delta", ("sequence", "full", "removed_keys", "keys"))
        return cls(sequence=int(data["sequence"]), full=bool(data["full"]),
                   removed_keys=data["removed_keys"], keys=data["keys"],
                   values={k.split("/", 1)[1]: rows for k, rows in data.items()
                           if k.startswith("values/")})


def _require_room(index: HashIndex, keys, removed, what: str) -> None:
    """Raise before any change when ``keys`` (after ``removed`` go) need more free slots
    than ``index`` has."""
    short = index.slots_needed(keys, removed)
    if short > 0:
        raise RuntimeError(f"{what}: the table is full (capacity {index.capacity:,}); "
                           f"{short:,} more rows would be needed, nothing was changed")


def export_delta(index: HashIndex, tables: dict[str, HashEmbedding],
                 full: bool = False) -> TableDelta:
    """Export the changes of ``index`` with the rows of each named table."""
    removed, keys, slots = index.take_changes()
    if full:
        keys, slots = index.items()
        removed = removed[:0]
    index.delta_sequence += 1
    return TableDelta(sequence=index.delta_sequence, full=full, removed_keys=removed,
                      keys=keys, values={name: t.read_slots(slots) for name, t in tables.items()})


def apply_delta(index: HashIndex, tables: dict[str, HashEmbedding], delta: TableDelta) -> None:
    """Bring ``index`` and ``tables`` to the exporter's state after ``delta``.

    Deltas must arrive in order (a full delta may start anywhere): a gap would lose
    rows silently, so it is an error.
    """
    if not delta.full and delta.sequence != index.delta_sequence + 1:
        raise ValueError(f"delta {delta.sequence} does not follow delta "
                         f"{index.delta_sequence}: apply every delta in order, or a full one")
    missing = sorted(set(tables) - set(delta.values))
    if missing:
        raise ValueError(f"delta {delta.sequence} has no rows for table(s) {', '.join(missing)}")
    for name, table in tables.items():
        rows = delta.values[name]
        if rows.shape != (len(delta.keys), table.dim):
            raise ValueError(f"delta {delta.sequence}: table {name!r} rows have shape "
                             f"{rows.shape}, expected ({len(delta.keys)}, {table.dim})")
    if delta.full:
        if len(delta.keys) > index.capacity:
            raise RuntimeError(f"delta {delta.sequence}: {len(delta.keys):,} rows do not fit "
                               f"the table (capacity {index.capacity:,})")
        index.clear()
    else:
        _require_room(index, delta.keys, delta.removed_keys, f"delta {delta.sequence}")
    index.erase(delta.removed_keys)
    slots, _ = index.insert(delta.keys)
    for name, table in tables.items():
        table.write_rows(slots, delta.values[name])
    index.take_changes()  # what was applied is not a change of this replica
    index.delta_sequence = delta.sequence
