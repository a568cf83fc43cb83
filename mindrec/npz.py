"""``.npz`` files written atomically and read with errors that name them."""
from __future__ import annotations

import os
import tempfile
import zipfile
import zlib
from pathlib import Path

import numpy as np


def save_npz(path: str | Path, arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` to ``path`` through a temporary file and a rename: a reader sees
    the old file or the whole new one, never half of it."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            np.savez(out, **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_npz(path: str | Path, what: str, names: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Every array of the ``.npz`` at ``path`` (no pickles); ``names`` must be among them.

    Raises:
        ValueError: ``"<path>: not a readable <what> (<why>)"`` for a missing, truncated
            or damaged file, or one without ``names``.
    """
    try:
        data = np.load(path, allow_pickle=False)
        if not isinstance(data, np.lib.npyio.NpzFile):
            raise ValueError("a single array, not an .npz archive")
        with data:
            arrays = {name: data[name] for name in data.files}
        missing = [name for name in names if name not in arrays]
        if missing:
            raise KeyError(f"no {', '.join(missing)}")
        return arrays
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise ValueError(f"{path}: not a readable {what} ({exc})") from exc
