"""The served model: the newest version of a version directory, answering predictions.

Two replicas of the network take turns. An update applies the new versions (the deltas
after the version held, or the newest full version and the deltas after it: see
:func:`~mindrec.stream.versions.chain`) to the standby replica one at a time, swaps it in
under a lock, then applies the same versions to the other replica: a prediction always
sees one whole version, never a partly applied one. A version that cannot be read, is
damaged or does not fit the model stops the update before it. A replica whose update
broke off (an exception half-way) holds no version: the next update rebuilds it from
the newest full version, and swaps it in only if that is newer than the one served.

MindSpore 2.10 runs one graph at a time per process (measured: a graph compiled in one
thread while another runs one fails with "Nested execution" and hangs the other), so
every MindSpore call here (predictions, row updates, compiles) takes the module's
engine lock. An update holds it for one version's rows, or one compile, at a time: a
prediction waits at most that long. Files are read, verified and checked outside it.

Predictions pad each request to a power of two rows (one compiled graph per size, at
most ``MAX_BATCH`` rows a call); the first request of a new size compiles its graph,
and the standby compiles the sizes in use before it is swapped in.
"""
from __future__ import annotations

import sys
import threading
import time

import numpy as np
from mindspore import Tensor

from mindrec.config import run_config_from_dict
from mindrec.data.criteo import NUM_FIELDS, encode_keys, parse_lines
from mindrec.embedding.hash import apply_delta
from mindrec.models.registry import build_model
from mindrec.stream.versions import (LoadedVersion, Manifest, VersionEntry, VersionError,
                                     VersionReader, chain, network_parts)
from mindrec.train.step import Predict, configure_runtime

MAX_BATCH = 4096  # rows per compiled prediction call; larger requests go in parts
_ENGINE = threading.Lock()  # one MindSpore graph at a time (module docstring)


class NotReady(RuntimeError):
    """No version has been loaded yet."""


def padded_size(rows: int) -> int:
    """Rows of the compiled call that predicts ``rows`` rows (1 <= rows <= MAX_BATCH)."""
    return min(MAX_BATCH, 1 << (rows - 1).bit_length())


class _Replica:
    """One network with its key index, and the version it holds (None: none, or an
    update of it broke off)."""

    def __init__(self, manifest: Manifest):
        self.network = build_model(run_config_from_dict(manifest.run), manifest.capacity)
        self.index, self.tables, self.dense = network_parts(self.network)
        self.predict_cell = Predict(self.network)
        self.predict_cell.set_train(False)
        self.entry: VersionEntry | None = None
        self.loaded_at: float | None = None  # wall time it was swapped in to serve
        self.sizes: set[int] = set()  # compiled call sizes

    @property
    def version(self) -> int | None:
        return None if self.entry is None else self.entry.version

    def check(self, loaded: LoadedVersion, sequence: int) -> None:
        """Raise VersionError unless ``loaded`` applies to this network once it holds
        the trainer's delta ``sequence``; what passes does not fail in :meth:`apply`."""
        delta = loaded.delta
        where = f"{loaded.path}: version {loaded.entry.version}"
        if not delta.full and delta.sequence != sequence + 1:
            raise VersionError(f"{where}: its rows are delta {delta.sequence} of the trainer's "
                               f"index, the model holds delta {sequence}")
        if len(delta.keys) > self.index.capacity:
            raise VersionError(f"{where}: {len(delta.keys):,} rows, the tables hold "
                               f"{self.index.capacity:,}")
        expected = {**{name: (len(delta.keys), t.dim) for name, t in self.tables.items()},
                    **{name: tuple(p.shape) for name, p in self.dense.items()}}
        given = {name: a.shape for name, a in (*delta.values.items(), *loaded.dense.items())}
        wrong = sorted(set(expected) ^ set(given)) + sorted(
            name for name in expected.keys() & given.keys() if expected[name] != given[name])
        if wrong:
            raise VersionError(f"{where}: parameters {', '.join(wrong[:4])}"
                               f"{' ...' if len(wrong) > 4 else ''} are missing, unknown or "
                               "of other shapes than the model's")

    def apply(self, loaded: LoadedVersion) -> None:
        """Bring this replica from the version before ``loaded`` to it (a full version:
        from any state). Call under the engine lock, after :meth:`check`."""
        self.entry = None  # an exception half-way leaves no version
        apply_delta(self.index, self.tables, loaded.delta)
        for name, array in loaded.dense.items():
            self.dense[name].set_data(Tensor(array))
        self.entry = loaded.entry

    def predict(self, keys: np.ndarray, vals: np.ndarray) -> np.ndarray:
        """Click probabilities (n,) of encoded rows. Call under the engine lock."""
        slots = self.index.lookup(keys)  # unknown keys read the default row
        out = np.empty(len(keys), np.float32)
        for start in range(0, len(keys), MAX_BATCH):
            part = slice(start, start + MAX_BATCH)
            n = len(slots[part])
            out[part] = self._call(padded_size(n), slots[part], vals[part])[:n]
        return out

    def compile(self, size: int) -> None:
        """Compile the call of ``size`` rows. Call under the engine lock."""
        self._call(size, np.zeros((0, NUM_FIELDS), np.int32),
                   np.zeros((0, NUM_FIELDS), np.float32))

    def _call(self, size: int, slots: np.ndarray, vals: np.ndarray) -> np.ndarray:
        padded_slots = np.zeros((size, NUM_FIELDS), np.int32)
        padded_vals = np.zeros((size, NUM_FIELDS), np.float32)
        padded_slots[:len(slots)], padded_vals[:len(vals)] = slots, vals
        self.sizes.add(size)
        return self.predict_cell(Tensor(padded_slots), Tensor(padded_vals)).asnumpy()[:, 0]


class ServedModel:
    """The newest version of a :class:`~mindrec.stream.versions.VersionWriter`'s
    directory, kept up to date by :meth:`update`.

    Args:
        directory: the version directory (it may hold no version yet).

    Usage (it needs a trained model's versions; tests/serve/test_serving.py makes some)::

        >>> model = ServedModel(out / "versions")
        >>> model.update()  # loads the newest full version and the deltas after it
        True
        >>> model.predict([raw_line])  # raw Criteo lines, label ignored
        array([0.23], dtype=float32)
    """

    def __init__(self, directory):
        self.reader = VersionReader(directory)
        self._active: _Replica | None = None
        self._standby: _Replica | None = None
        self._model: dict | None = None  # what the replicas were built for
        self.last_error: str | None = None  # of the last update, if it refused something

    def status(self) -> dict:
        """The version served (None before the first), its kind and info (as the trainer
        published it: steps, event times...), when it came in (``loaded_at``, Unix
        seconds) and the last update's error."""
        active = self._active  # one read: a swap cannot mix two versions' fields
        entry = None if active is None else active.entry
        return {"version": None if entry is None else entry.version,
                "kind": None if entry is None else entry.kind,
                "info": None if entry is None else entry.info,
                "loaded_at": None if active is None else active.loaded_at,
                "error": self.last_error}

    @property
    def version(self) -> int | None:
        """The version served; None before the first."""
        return None if self._active is None else self._active.version

    @property
    def network(self):
        """The network of the version served."""
        if self._active is None:
            raise NotReady(f"{self.reader.directory}: no version loaded yet")
        return self._active.network

    def update(self) -> bool:
        """Serve the newest version reachable; True when a newer one is now served.

        A version already served is not applied again. A version that cannot be read,
        is damaged or does not apply stops the update before it; the versions before it
        are served if newer, else the served version stays. The reason is kept in
        :attr:`last_error` (and printed once to stderr).
        """
        errors: list[str] = []
        try:
            updated = self._update(errors)
        except VersionError as exc:  # the manifest itself
            errors.append(str(exc))
            updated = False
        error = errors[-1] if errors else None
        if error is not None and error != self.last_error:
            print(f"serve: {error}", file=sys.stderr, flush=True)
        self.last_error = error
        return updated

    def predict(self, lines: list[bytes]) -> np.ndarray:
        """Click probabilities (float32, one per line) of raw Criteo lines (module
        docstring of :mod:`mindrec.serve.app` for their format).

        Raises:
            CriteoFormatError: a malformed line, named by its 1-based number.
            NotReady: before the first version is loaded.
        """
        return self.predict_versioned(lines)[1]

    def predict_versioned(self, lines: list[bytes]) -> tuple[int, np.ndarray]:
        """``(version, probabilities)``: :meth:`predict` and the version that answered."""
        keys, vals, _ = encode_keys(parse_lines(lines, source="request", on_bad_row="stop"))
        with _ENGINE:
            if self._active is None:
                raise NotReady(f"{self.reader.directory}: no version loaded yet")
            return self._active.version, self._active.predict(keys, vals)

    def _update(self, errors: list[str]) -> bool:
        manifest = self.reader.manifest()
        if manifest is None:
            return False
        if self._model is None:
            configure_runtime(manifest.run["train"]["seed"])
            self._active, self._standby = _Replica(manifest), _Replica(manifest)
            self._model = manifest.model()
        elif manifest.model() != self._model:
            raise VersionError(f"{self.reader.directory / 'manifest.json'}: the versions are "
                               "now of another model; start a new server for them")
        standby, held = self._standby, self._standby.version
        entries = chain(manifest.versions, held)
        if not entries and held is not None and manifest.versions[-1].version > held:
            errors.append(f"{self.reader.directory}: the versions after {held} do not follow "
                          "it and no full version is newer: waiting for one")
        loaded = self._load(entries, standby, errors)
        if not loaded:
            return False
        for item in loaded:
            with _ENGINE:
                standby.apply(item)
        if self.version is not None and standby.version <= self.version:
            return False  # a broken standby rebuilt (module docstring), nothing newer
        for size in sorted(self._active.sizes - standby.sizes):
            with _ENGINE:
                standby.compile(size)
        with _ENGINE:
            standby.loaded_at = time.time()
            self._active, self._standby = standby, self._active
        # Bring the other replica level: it holds `held` too (both do after an update),
        # or the chain starts with a full version; else (an update of it broke off) it
        # is rebuilt from a full version at the next update.
        other = self._standby
        if loaded[0].delta.full or other.version == held:
            for item in loaded:
                with _ENGINE:
                    other.apply(item)
        else:
            other.entry = None
        return True

    def _load(self, entries: list[VersionEntry], replica: _Replica,
              errors: list[str]) -> list[LoadedVersion]:
        """Read and check ``entries`` in order, up to the first that fails; only a
        chain that ends past the replica's version is worth applying."""
        loaded: list[LoadedVersion] = []
        sequence = replica.index.delta_sequence
        for entry in entries:
            try:
                item = self.reader.load(entry)
                replica.check(item, sequence)
            except VersionError as exc:
                errors.append(str(exc))
                break
            loaded.append(item)
            sequence = item.delta.sequence
        if loaded and replica.version is not None and loaded[-1].entry.version <= replica.version:
            return []
        return loaded
