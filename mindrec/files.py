"""Files written so that a reader, or a restart after a crash, finds the old content or
the whole new one, never part of it."""
from __future__ import annotations

import os
from pathlib import Path


def write_durably(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a fsynced temporary file beside it and a
    rename, then fsync the directory (the rename itself survives a power cut).

    Example::

        >>> import tempfile
        >>> target = Path(tempfile.mkdtemp()) / "state.json"
        >>> write_durably(target, b'{"step": 3}')
        >>> target.read_bytes(), sorted(p.name for p in target.parent.iterdir())
        (b'{"step": 3}', ['state.json'])
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
