"""Model versions of an online trainer: version files and the manifest that lists them.

A version is one ``.npz`` file (no pickles), ``v00000042.full.npz`` or
``v00000042.delta.npz``, holding:

* the hash tables' rows written since the previous version (a *delta*) or all of them
  (a *full* version), as :class:`~mindrec.embedding.hash.TableDelta` saves them:
  ``sequence``, ``full``, ``removed_keys``, ``keys`` and ``values/<table>``, each table
  named by its parameter's path in the network;
* every other parameter of the network, whole: ``dense/<path>`` (dtype kept: float32);
* ``schema``, ``version``, ``base`` (the version a delta applies to; -1 for a full one)
  and ``info`` (JSON text from the trainer: step, rows, event times, offsets...).

``manifest.json`` (schema ``mindrec-versions/1``) holds the run (``RunConfig.to_dict``),
the table capacity the network is built with, and the versions oldest first, each with
its kind, base, file name, size, sha256, rows written and removed, and info.

Durability: a version file is written under a temporary name, fsynced and renamed, and
the directory fsynced; then the manifest the same way. Readers trust the manifest only,
so they never see a half-written version. Numbering continues over trainer restarts: a
writer opening a directory goes on from its last version with a full one (a new
process's index tracks changes from its own start). Every ``full_every`` versions is
full. Once a full version is durable, the versions older than the previous full one are
deleted (files named by the manifest entries dropped, nothing else): the directory holds
at most two full versions and the deltas between them, so a reader lagging by less than
a full cycle still finds its next delta.
"""
from __future__ import annotations

import hashlib
import io
import json
import re
import zipfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from mindspore import Parameter, nn

from mindrec.config import RunConfig
from mindrec.embedding.hash import HashEmbedding, TableDelta, export_delta
from mindrec.embedding.hash_index import HashIndex
from mindrec.files import write_durably

SCHEMA = "mindrec-versions/1"
MANIFEST = "manifest.json"
FULL, DELTA = "full", "delta"
_FILE_NAME = re.compile(r"v(\d{8})\.(full|delta)\.npz")
_TEMP_NAME = re.compile(r"\.(manifest\.json|v\d{8}\.(full|delta)\.npz)\.tmp-\d+")
_MODEL_SECTIONS = ("model", "model_config", "embedding")  # what shapes the network


class VersionError(ValueError):
    """A manifest or version file that is missing, damaged or does not fit; the message
    names the file (and the version)."""


@dataclass(frozen=True)
class VersionEntry:
    """One version as the manifest lists it."""

    version: int
    kind: str  # FULL or DELTA
    base: int | None  # the version a delta applies to; None for a full one
    file: str
    sha256: str
    bytes: int
    rows: int  # table rows written (keys set)
    removed: int  # keys removed
    info: dict


@dataclass(frozen=True)
class Manifest:
    """The run, the table capacity and the versions of a directory, oldest first."""

    run: dict
    capacity: int
    versions: tuple[VersionEntry, ...]

    def latest_full(self) -> VersionEntry | None:
        """The newest full version, if any."""
        return next((e for e in reversed(self.versions) if e.kind == FULL), None)

    def model(self) -> dict:
        """What shapes the network: the model, its config, the embedding and capacity."""
        return {**{k: self.run[k] for k in _MODEL_SECTIONS}, "capacity": self.capacity}


@dataclass(frozen=True)
class PublishedVersion:
    """What :meth:`VersionWriter.publish` wrote."""

    version: int
    kind: str
    path: Path
    rows: int  # table rows written (keys set)
    removed: int  # keys removed
    bytes: int  # size of the version file


@dataclass
class LoadedVersion:
    """A version read back and verified: its file, entry, table rows and dense
    parameters."""

    path: Path
    entry: VersionEntry
    delta: TableDelta
    dense: dict[str, np.ndarray]


def network_parts(network: nn.Cell) -> tuple[HashIndex, dict[str, HashEmbedding],
                                             dict[str, Parameter]]:
    """The key index of ``network``, its hash tables and its other parameters, both by
    parameter path (``deep_embedding.table.store.lookup.embedding_table``)."""
    index = getattr(network, "hash_index", None)
    if not isinstance(index, HashIndex):
        raise ValueError("model versions hold CPU hash tables: build the network with "
                         "embedding.kind hash and no cache")
    cells = {id(cell.table): cell for _, cell in network.cells_and_names()
             if isinstance(cell, HashEmbedding)}
    tables, dense = {}, {}
    for name, param in network.parameters_and_names():
        if id(param) in cells:
            tables[name] = cells[id(param)]
        else:
            dense[name] = param
    strays = [name for name, table in tables.items() if table.index is not index]
    if strays:
        raise ValueError(f"hash tables {', '.join(strays)} do not use the network's "
                         "hash_index: one delta must cover every table")
    return index, tables, dense


class VersionWriter:
    """Publishes versions of a network into ``directory`` (created if needed).

    Args:
        directory: the version directory; one writer at a time.
        run (RunConfig): the run the network was built from (readers rebuild it).
        full_every (int): every this many versions is a full one.

    The writer must be the only one to export the changes of the network's index.

    Usage (it needs a network; tests/stream/test_versions.py builds one)::

        >>> writer = VersionWriter(out / "versions", run)
        >>> writer.publish(network, {"step": 100}).kind  # the first of a writer
        'full'
    """

    def __init__(self, directory: str | Path, run: RunConfig, full_every: int = 20):
        if full_every < 1:
            raise ValueError(f"full_every must be at least 1, got {full_every}")
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.run = run
        self.full_every = full_every
        self._manifest = read_manifest(self.directory)
        if self._manifest is not None:
            theirs = {k: self._manifest.run[k] for k in _MODEL_SECTIONS}
            ours = {k: run.to_dict()[k] for k in _MODEL_SECTIONS}
            if theirs != ours:
                raise ValueError(f"{self.directory / MANIFEST}: its versions are of another "
                                 f"model ({theirs}); publish this run ({ours}) elsewhere")
        for path in self.directory.iterdir():  # left by a writer killed mid-write
            if _TEMP_NAME.fullmatch(path.name):
                path.unlink()
        self._need_full = True  # this process's index tracks changes from its start

    @property
    def last_version(self) -> int:
        """The newest version in the directory (0 when there is none)."""
        return self._manifest.versions[-1].version if self._manifest else 0

    def publish(self, network: nn.Cell, info: dict) -> PublishedVersion:
        """Write the next version of ``network`` with the JSON-able ``info``, durably,
        and list it in the manifest; after a full one, prune (module docstring)."""
        info_text = json.dumps(info)  # not JSON-able: fail before the index changes
        index, tables, dense = network_parts(network)
        manifest = self._manifest
        if manifest is not None and manifest.capacity != index.capacity:
            raise ValueError(f"{self.directory / MANIFEST}: its tables hold "
                             f"{manifest.capacity:,} rows, this network's {index.capacity:,}")
        version = self.last_version + 1
        previous_full = manifest.latest_full() if manifest else None
        full = (self._need_full or previous_full is None
                or version - previous_full.version >= self.full_every)
        self._need_full = True  # until this version is durable, its rows live nowhere else
        delta = export_delta(index, tables, full)
        kind = FULL if full else DELTA
        base = None if full else version - 1
        arrays = {"schema": np.array(SCHEMA), "version": np.int64(version),
                  "base": np.int64(-1 if base is None else base), "info": np.array(info_text),
                  "sequence": np.int64(delta.sequence), "full": np.bool_(full),
                  "removed_keys": delta.removed_keys, "keys": delta.keys,
                  **{f"values/{name}": rows for name, rows in delta.values.items()},
                  **{f"dense/{name}": param.asnumpy() for name, param in dense.items()}}
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        data = buffer.getvalue()
        path = self.directory / f"v{version:08d}.{kind}.npz"
        write_durably(path, data)
        entry = VersionEntry(version=version, kind=kind, base=base, file=path.name,
                             sha256=hashlib.sha256(data).hexdigest(), bytes=len(data),
                             rows=len(delta.keys), removed=len(delta.removed_keys),
                             info=json.loads(info_text))
        kept = manifest.versions if manifest else ()
        dropped = ()
        if full and previous_full is not None:
            dropped = tuple(e for e in kept if e.version < previous_full.version)
            kept = kept[len(dropped):]
        listed = Manifest(run=self.run.to_dict(), capacity=index.capacity,
                          versions=(*kept, entry))
        write_durably(self.directory / MANIFEST, _manifest_json(listed).encode())
        self._manifest, self._need_full = listed, False
        for old in dropped:  # names checked against _FILE_NAME when the manifest was read
            (self.directory / old.file).unlink(missing_ok=True)
        return PublishedVersion(version=version, kind=kind, path=path, rows=entry.rows,
                                removed=entry.removed, bytes=entry.bytes)


class VersionReader:
    """Reads the versions a :class:`VersionWriter` publishes into ``directory``."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)

    def manifest(self) -> Manifest | None:
        """The manifest as it is now; None before the first version is published."""
        return read_manifest(self.directory)

    def versions(self) -> tuple[VersionEntry, ...]:
        """The versions listed now, oldest first."""
        manifest = self.manifest()
        return manifest.versions if manifest else ()

    def load(self, version: int | VersionEntry) -> LoadedVersion:
        """Read ``version`` (a number, or an entry of a manifest already read), checked
        against its size and sha256 in the manifest.

        Raises:
            VersionError: ``"<file>: version <N>: <why>"`` for a missing, truncated,
                damaged or wrong file, or a version the manifest does not list.
        """
        entry = version if isinstance(version, VersionEntry) else self._entry(version)
        path = self.directory / entry.file
        where = f"{path}: version {entry.version}"
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise VersionError(f"{where}: no such file (pruned or deleted)") from None
        if len(data) != entry.bytes:
            raise VersionError(f"{where}: {len(data):,} bytes where the manifest says "
                               f"{entry.bytes:,}: truncated or replaced")
        digest = hashlib.sha256(data).hexdigest()
        if digest != entry.sha256:
            raise VersionError(f"{where}: sha256 {digest[:16]}... where the manifest says "
                               f"{entry.sha256[:16]}...: damaged")
        return _parse(data, path, entry, where)

    def _entry(self, version: int) -> VersionEntry:
        for entry in self.versions():
            if entry.version == version:
                return entry
        raise VersionError(f"{self.directory / MANIFEST}: lists no version {version}")


def chain(versions: Sequence[VersionEntry], held: int | None) -> list[VersionEntry]:
    """The versions that bring a model holding version ``held`` (None: nothing) to the
    newest one reachable, in the order to apply them.

    That is the deltas after ``held``, or, when a full version is newer than ``held`` or
    the versions after ``held`` do not follow it (a gap), the newest full version and
    the deltas after it. Each delta must follow the one before (its base), so the chain
    stops at a gap. Empty when nothing newer than ``held`` is reachable. A store whose
    newest version is older than ``held`` was started again: its newest full counts.
    """
    if held is not None and versions and versions[-1].version < held:
        held = None
    newer = [e for e in versions if held is None or e.version > held]
    if not newer:
        return []
    fulls = [i for i, e in enumerate(newer) if e.kind == FULL]
    if fulls:
        return _following(newer[fulls[-1]:])
    if newer[0].base == held:
        return _following(newer)
    fulls = [i for i, e in enumerate(versions) if e.kind == FULL]
    restart = _following(list(versions[fulls[-1]:])) if fulls else []
    return restart if restart and restart[-1].version > held else []


def _following(entries: list[VersionEntry]) -> list[VersionEntry]:
    """``entries`` up to the first that does not apply to the one before it."""
    out = entries[:1]
    for entry in entries[1:]:
        if entry.base != out[-1].version:
            break
        out.append(entry)
    return out


def read_manifest(directory: Path) -> Manifest | None:
    """The manifest of ``directory``; None when there is none yet.

    Raises:
        VersionError: naming the manifest, when it is not a manifest of this schema.
    """
    path = Path(directory) / MANIFEST
    try:
        values = json.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        raise VersionError(f"{path}: not JSON ({exc}): damaged") from exc
    if not isinstance(values, dict) or values.get("schema") != SCHEMA:
        schema = values.get("schema") if isinstance(values, dict) else None
        raise VersionError(f"{path}: not a {SCHEMA} manifest (schema {schema!r})")
    try:
        entries = tuple(VersionEntry(**e) for e in values["versions"])
        manifest = Manifest(run=values["run"], capacity=int(values["capacity"]),
                            versions=entries)
    except (KeyError, TypeError) as exc:
        raise VersionError(f"{path}: lacks or garbles {exc}: damaged") from exc
    if not isinstance(manifest.run, dict) or not set(_MODEL_SECTIONS) <= set(manifest.run):
        raise VersionError(f"{path}: its run lacks {', '.join(_MODEL_SECTIONS)}: damaged")
    for entry in entries:
        match = _FILE_NAME.fullmatch(entry.file)
        if not match or int(match[1]) != entry.version or match[2] != entry.kind:
            raise VersionError(f"{path}: version {entry.version} ({entry.kind}) names the "
                               f"file {entry.file!r}: not one of ours")
    return manifest


def _manifest_json(manifest: Manifest) -> str:
    return json.dumps({"schema": SCHEMA, "run": manifest.run, "capacity": manifest.capacity,
                       "versions": [asdict(e) for e in manifest.versions]}, indent=1)


def _parse(data: bytes, path: Path, entry: VersionEntry, where: str) -> LoadedVersion:
    """The arrays of a version file whose bytes were checked against the manifest."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
        schema, version, base = str(arrays["schema"]), int(arrays["version"]), int(arrays["base"])
        delta = TableDelta(sequence=int(arrays["sequence"]), full=bool(arrays["full"]),
                           removed_keys=arrays["removed_keys"], keys=arrays["keys"],
                           values=_prefixed(arrays, "values/"))
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise VersionError(f"{where}: not a readable version file ({exc!r})") from exc
    if (schema, version, base, delta.full) != (SCHEMA, entry.version,
                                               -1 if entry.base is None else entry.base,
                                               entry.kind == FULL):
        raise VersionError(f"{where}: the file holds {schema} version {version} (base {base}, "
                           f"full {delta.full}), not what the manifest lists")
    return LoadedVersion(path=path, entry=entry, delta=delta, dense=_prefixed(arrays, "dense/"))


def _prefixed(arrays: dict[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    return {name[len(prefix):]: a for name, a in arrays.items() if name.startswith(prefix)}
