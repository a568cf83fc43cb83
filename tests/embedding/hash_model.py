"""A plain-Python model of the hash embedding semantics, written from the spec in
mindrec/embedding/hash_index.py's docstring, to check the compiled index against."""
from __future__ import annotations


class ModelTable:
    """Dict-based reference: keys -> rows (tuples), hit counts and last-hit steps."""

    def __init__(self, capacity: int, permit: int, evict: int | None, fill: float, dim: int):
        self.capacity, self.permit, self.evict = capacity, permit, evict
        self.default = (fill,) * dim
        self.rows: dict[int, tuple] = {}
        self.count: dict[int, int] = {}
        self.last: dict[int, int] = {}
        self.step = 0
        self.admitted = self.evicted = self.erased = self.rejected_full = 0

    def _expire(self) -> None:
        if self.evict is None:
            return
        for key in [k for k, s in self.last.items() if self.step - s > self.evict]:
            self.evicted += key in self.rows
            self._drop(key)

    def _drop(self, key: int) -> None:
        self.rows.pop(key, None)
        self.count.pop(key, None)
        self.last.pop(key, None)

    def hit(self, keys: list[int]) -> list[bool]:
        """One batch of a training step; returns, per key, whether it reads a row."""
        self._expire()
        out = []
        for key in keys:
            if key not in self.last:
                self.count[key] = 0
            if self.last.get(key) != self.step:
                self.count[key] = min(self.count[key] + 1, self.permit)
                self.last[key] = self.step
            if key not in self.rows and self.count[key] >= self.permit:
                if len(self.rows) < self.capacity:
                    self.rows[key] = self.default
                    self.admitted += 1
                else:
                    self.rejected_full += 1
            out.append(key in self.rows)
        return out

    def advance(self) -> None:
        self.step += 1

    def free_slots_needed(self, keys: list[int]) -> int:
        self._expire()
        return len({k for k in keys if k not in self.rows})

    def put(self, keys: list[int], rows: list[tuple]) -> None:
        self._expire()
        for key, row in zip(keys, rows):
            if key not in self.rows:
                self.admitted += 1
                self.count.setdefault(key, 0)
            self.rows[key] = row
            self.last[key] = self.step

    def erase(self, keys: list[int]) -> None:
        self._expire()
        for key in keys:
            if key in self.last:
                self.erased += key in self.rows
                self._drop(key)

    def get(self, key: int) -> tuple:
        self._expire()
        return self.rows.get(key, self.default)

    def live(self) -> dict[int, tuple]:
        self._expire()
        return dict(self.rows)

    @property
    def candidates(self) -> int:
        return len(self.last) - len(self.rows)
